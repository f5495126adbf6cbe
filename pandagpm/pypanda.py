"""pandagpm's generic images under real PANDA, for pypanda scripts.

PANDA's own generic images (``pandare.Panda(generic="x86_64")``) are
downloaded from the internet on first use. pandagpm's images are built
from Debian packages (:mod:`pandagpm.image`), so this module offers the
same one-line start on them::

    from pandagpm.pypanda import Panda      # instead of: from pandare import Panda

    panda = Panda(generic="x86_64")          # a ready pandare.Panda
    ...
    panda.run()

:func:`Panda` returns a real ``pandare.Panda`` configured for the image:
its machine arguments (QEMU 2.9 spelling), kernel, initrd and command line,
512 MiB of RAM, a qcow2 holding a ``root`` snapshot that PANDA itself saved
(QEMU 2.9 cannot load QEMU 10's snapshots), the serial console with
``unansi=False`` (busybox's shell sends ESC[6n, which pandare's ANSI filter
refuses), the ``-os`` string and the osi_linux kernel profile made from the
kernel's BTF, and, unless ``osi=False``, the syscalls2, osi and osi_linux
plugins loaded in the order that works. Any other ``generic`` name is
handed to pandare unchanged (PANDA's own images, where a network exists).

Where PANDA is: ``$PANDA_PATH`` (a PANDA source tree with ``build/``
inside), else the tree recorded by ``make panda`` in the checkout's
``.panda-path`` (or, for another target, one of the trees listed in
``.panda-paths``), else the tree the installed pandare belongs to.
:func:`find_panda` says which, and raises :class:`PandaNotFound` with what
to do when there is none.

Command line (each with ``--help`` and ``--arch``):
``python -m pandagpm.pypanda info [--binary]`` (where PANDA is, what the
image needs), ``python -m pandagpm.pypanda args [--snapshot FILE]`` (the
``panda-system-*`` arguments for the image, shell-quoted) and
``python -m pandagpm.pypanda snapshot [--force]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import image as _image

__all__ = ["Panda", "PandaInstall", "PandaNotFound", "command_args",
           "copy_to_guest", "find_panda", "machine_args", "panda_snapshot", "osi_setup"]

#: The prompt of the image's root shell on the serial console.
PROMPT = rb"root@pandagpm:[^#]*# "

_ROOT = Path(__file__).resolve().parents[1]


class PandaNotFound(RuntimeError):
    """No usable PANDA build was found."""


@dataclasses.dataclass(frozen=True)
class PandaInstall:
    """A PANDA source tree with its build directory.

    ``tree`` holds ``panda/`` and ``build/``; ``where`` says how it was
    found (for messages).
    """

    tree: Path
    where: str

    @property
    def build(self) -> Path:
        return self.tree / "build"

    def target_dir(self, arch: str) -> Path:
        return self.build / f"{arch}-softmmu"

    def system_binary(self, arch: str) -> Path:
        return self.target_dir(arch) / f"panda-system-{arch}"

    def libpanda(self, arch: str) -> Path:
        return self.target_dir(arch) / f"libpanda-{arch}.so"

    def plugin_dir(self, arch: str) -> Path:
        return self.target_dir(arch) / "panda" / "plugins"

    def bios_dir(self) -> Path:
        return self.build / "pc-bios"

    @property
    def commit(self) -> str:
        for f in (self.tree / "PANDA_COMMIT", self.tree.parent / "COMMIT"):
            if f.is_file():
                return f.read_text().strip()
        return "unknown"

    def has_target(self, arch: str) -> bool:
        return self.libpanda(arch).is_file() and self.system_binary(arch).is_file()


def _candidates():
    env = os.environ.get("PANDA_PATH")
    if env:
        yield Path(env), "$PANDA_PATH"
    rec = _ROOT / ".panda-path"
    if rec.is_file():
        yield Path(rec.read_text().strip()), str(rec)
    # Every tree ``make panda`` used, one per line: targets built at
    # different times live in different trees (scripts/provision-panda.sh).
    recs = _ROOT / ".panda-paths"
    if recs.is_file():
        for line in recs.read_text().splitlines():
            if line.strip():
                yield Path(line.strip()), str(recs)
    try:
        import importlib.util
        spec = importlib.util.find_spec("pandare")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        # pandare lives in <tree>/panda/python/core/pandare.
        p = Path(spec.origin).resolve().parent
        if len(p.parents) > 3:
            yield p.parents[3], "the installed pandare"


def find_panda(arch: str = "x86_64") -> PandaInstall:
    """The PANDA build to use for ``arch``; raises :class:`PandaNotFound`."""
    looked = []
    for tree, where in _candidates():
        inst = PandaInstall(tree.resolve(), where)
        if inst.has_target(arch):
            return inst
        looked.append(f"{tree} ({where}): no {inst.libpanda(arch).name}")
    hint = ("build it with `make panda` (PANDA_SRC=<tarball or tree>, "
            f"PANDA_TARGETS={arch}-softmmu) or set PANDA_PATH to a PANDA "
            "tree with build/ inside")
    raise PandaNotFound(f"no PANDA build for {arch}"
                        + (": " + "; ".join(looked) if looked else "")
                        + f"; {hint}")


def machine_args(img: "_image.ImageInfo") -> list[str]:
    """The image's QEMU 10 machine arguments in QEMU 2.9's spelling.

    QEMU 2.9 (PANDA) has no ``-accel`` (TCG is its only accelerator
    here) and no ``-nic``. ``-icount`` is left out: 2.9 refuses
    ``shift=auto,sleep=off`` (the mipsel image's), and with
    ``shift=auto`` its MIPS target aborts at boot ("Bad icount read").
    The rest is the same. RAM size is left out: pandare passes ``-m``
    itself.
    """
    src = list(img.profile["qemu"]["machine_args"])
    out = []
    i = 0
    while i < len(src):
        a = src[i]
        if a in ("-accel", "-m", "-icount") and i + 1 < len(src):
            i += 2
            continue
        if a == "-nic" and i + 1 < len(src):
            if src[i + 1] == "none":
                out += ["-net", "none"]
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def _ram_arg(img) -> str:
    return f"{img.profile['qemu']['ram_size'] // (1024 * 1024)}M"


def _boot_args(img, qcow: Path) -> list[str]:
    return machine_args(img) + [
        "-kernel", str(img.kernel), "-initrd", str(img.initrd),
        "-append", img.profile["qemu"]["append"],
        "-drive", f"if=none,id=gpmsnap,format=qcow2,file={qcow}",
    ]


def _say(progress, msg):
    if progress:
        print(f"[pypanda] {msg}", file=sys.stderr, flush=True)


def _connect(path: str, proc: subprocess.Popen, deadline: float) -> socket.socket:
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            if proc.poll() is not None:
                raise PandaNotFound(f"PANDA exited with status {proc.returncode} "
                                    "before its sockets opened")
            if time.monotonic() > deadline:
                raise TimeoutError(f"PANDA did not open {path} in time")
            time.sleep(0.1)


def _read_until(s: socket.socket, pattern: bytes, deadline: float,
                proc: subprocess.Popen, nudge: bytes | None = None) -> bytes:
    import re
    buf = b""
    rx = re.compile(pattern)
    last_nudge = time.monotonic()
    while not rx.search(buf):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {pattern!r} from PANDA in time; got "
                               f"{buf[-300:]!r}")
        if proc.poll() is not None:
            raise RuntimeError(f"PANDA exited with status {proc.returncode}; "
                               f"last output {buf[-300:]!r}")
        if nudge is not None and time.monotonic() - last_nudge > 5:
            s.sendall(nudge)
            last_nudge = time.monotonic()
        s.settimeout(min(left, 1.0))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            raise RuntimeError(f"PANDA closed the socket; last output "
                               f"{buf[-300:]!r}")
        buf += chunk
    return buf


def panda_snapshot(arch: str = "x86_64", *, install: PandaInstall | None = None,
                   progress: bool = True, force: bool = False,
                   timeout: float = 600.0) -> Path:
    """The qcow2 with a ``root`` snapshot that PANDA saved, built once.

    Cached beside the image as ``panda-<commit12>.qcow2``: PANDA boots the
    image to its root shell and runs ``savevm root``. A build takes about
    half a minute; later calls return the cached file at once.
    """
    img = _image.get_image(arch, progress=progress)
    inst = install or find_panda(arch)
    qcow = Path(img.path) / f"panda-{inst.commit[:12]}.qcow2"
    if qcow.is_file() and not force:
        return qcow
    lock = Path(img.path) / ".panda-snapshot.lock"
    with open(lock, "w") as lf:
        fcntl.flock(lf, fcntl.LOCK_EX)
        if qcow.is_file() and not force:
            return qcow
        _say(progress, f"saving a PANDA root snapshot of the {arch} image "
                       f"(PANDA {inst.commit[:12]}; about 30 s)")
        start = time.monotonic()
        run = Path(tempfile.mkdtemp(prefix="pandagpm-snap-"))
        tmp = Path(img.path) / f".{qcow.name}.tmp"
        proc = None
        try:
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2",
                            "-o", "compat=1.1", str(tmp), "64M"], check=True)
            ser, mon = str(run / "serial.sock"), str(run / "monitor.sock")
            argv = [str(inst.system_binary(arch)), "-L", str(inst.bios_dir()),
                    *_boot_args(img, tmp), "-m", _ram_arg(img),
                    "-serial", f"unix:{ser},server,nowait",
                    "-monitor", f"unix:{mon},server,nowait"]
            log = open(run / "panda.log", "wb")
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            s = _connect(ser, proc, deadline)
            m = _connect(mon, proc, deadline)
            _read_until(m, rb"\(qemu\) ", deadline, proc)
            _read_until(s, PROMPT, deadline, proc, nudge=b"\n")
            # Let the shell settle so the snapshot is a quiet prompt.
            s.sendall(b"\n")
            _read_until(s, PROMPT, deadline, proc)
            m.sendall(b"savevm root\n")
            out = _read_until(m, rb"\(qemu\) ", deadline, proc)
            if b"rror" in out:
                raise RuntimeError(f"savevm failed: {out!r}")
            m.sendall(b"quit\n")
            proc.wait(timeout=60)
            s.close()
            m.close()
            os.replace(tmp, qcow)
        except BaseException:
            tail = ""
            if (run / "panda.log").exists():
                tail = (run / "panda.log").read_text(errors="replace")[-2000:]
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            tmp.unlink(missing_ok=True)
            if tail:
                print(f"[pypanda] PANDA's output:\n{tail}", file=sys.stderr)
            raise
        finally:
            shutil.rmtree(run, ignore_errors=True)
        _say(progress, f"snapshot saved in {time.monotonic() - start:.1f} s: {qcow}")
    return qcow


def osi_setup(img) -> tuple[str, dict[str, str]]:
    """The ``-os`` string and osi_linux's arguments for the image.

    Returns ``(os_version, osi_linux_args)``; the kernel profile comes
    from the image's BTF (:mod:`pandagpm.kernelinfo`).
    """
    return img.os_string, {"kconf_file": str(img.kernelinfo_path),
                           "kconf_group": img.kernelinfo_group}


def _private_copy(qcow: Path) -> Path:
    """A copy of @qcow in a temporary directory removed at exit."""
    import atexit
    d = Path(tempfile.mkdtemp(prefix="pandagpm-panda-"))
    atexit.register(shutil.rmtree, d, True)
    dst = d / qcow.name
    shutil.copyfile(qcow, dst)
    return dst


def Panda(generic: str | None = "x86_64", *, osi: bool = True,
          loadvm: bool = True, progress: bool = True, extra_args=None,
          serial_kwargs=None, **kwargs):
    """A ready ``pandare.Panda`` on pandagpm's generic image ``generic``.

    ``osi=True`` loads syscalls2, osi and osi_linux (with the image's
    BTF-made kernel profile; an image without one, e.g. arm's, raises
    ``pandagpm.image.ImageError``: pass ``osi=False``) in the order that
    works; ``loadvm=True``
    starts PANDA in the ``root`` snapshot (``revert_sync("root")`` returns
    there). Other keyword arguments go to ``pandare.Panda``. A ``generic``
    that is not one of pandagpm's images goes to pandare unchanged.
    Raises :class:`PandaNotFound` if there is no PANDA build.
    """
    if generic not in _image.ARCHES:
        from pandare import Panda as _Panda
        return _Panda(generic=generic, extra_args=extra_args,
                      serial_kwargs=serial_kwargs, **kwargs)
    arch = generic
    inst = find_panda(arch)
    img = _image.get_image(arch, progress=progress)
    qcow = panda_snapshot(arch, install=inst, progress=progress)
    # The kernel profile is made only when OSI is wanted: an image whose
    # kernel has none (the arm image: no BTF) still runs with osi=False.
    if osi:
        os_version, osi_args = osi_setup(img)
    else:
        os_version, osi_args = img.os_string, None
    # PANDA writes to the qcow2 it loads from: each Panda works on its own
    # copy, so runs in parallel never share one and the cache stays intact.
    qcow = _private_copy(qcow)
    args = _boot_args(img, qcow)
    if loadvm:
        args += ["-loadvm", "root"]
    if isinstance(extra_args, str):
        import shlex
        extra_args = shlex.split(extra_args)
    args += list(extra_args or ())
    skw = {"unansi": False}
    skw.update(serial_kwargs or {})
    from pandare import Panda as _Panda
    # pandare would look for the BIOS files and PANDA_DIR (where libpanda
    # finds plugins that other plugins require) in the tree it was
    # installed from, which need not hold this arch's build: name ours.
    os.environ["PANDA_DIR"] = f"{inst.build}/"
    panda = _Panda(arch=arch, mem=_ram_arg(img), expect_prompt=PROMPT,
                   serial_kwargs=skw, os_version=os_version,
                   extra_args=args, libpanda_path=str(inst.libpanda(arch)),
                   biospath=str(inst.bios_dir()),
                   plugin_path=str(inst.plugin_dir(arch)), **kwargs)
    panda.pandagpm_image = img
    if osi:
        panda.load_plugin("syscalls2")
        panda.load_plugin("osi", args={"disable-autoload": "true"})
        panda.load_plugin("osi_linux", args=osi_args)
    return panda


def command_args(arch: str = "x86_64", *, install: PandaInstall | None = None,
                 snapshot: str | os.PathLike | None = None) -> list[str]:
    """Arguments for ``panda-system-<arch>`` on pandagpm's image.

    The BIOS directory, machine, kernel, initrd, command line and RAM,
    the ``-os`` string and osi_linux's kernel profile (two ``-panda-arg``
    options: one with a comma does not split); with ``snapshot`` also
    the qcow2 holding PANDA's ``root`` snapshot and ``-loadvm root``.
    Serial console, monitor and ``-panda`` plugins are the caller's.
    """
    inst = install or find_panda(arch)
    img = _image.get_image(arch, progress=False)
    os_version, osi = osi_setup(img)
    qcow = None
    if snapshot:
        qcow = Path(snapshot)
        shutil.copyfile(panda_snapshot(arch, install=inst), qcow)
    args = ["-L", str(inst.bios_dir())] + machine_args(img) + [
        "-m", _ram_arg(img), "-kernel", str(img.kernel),
        "-initrd", str(img.initrd), "-append", img.profile["qemu"]["append"],
        "-os", os_version,
        "-panda-arg", f"osi_linux:kconf_file={osi['kconf_file']}",
        "-panda-arg", f"osi_linux:kconf_group={osi['kconf_group']}"]
    if qcow is not None:
        args += ["-drive", f"if=none,id=gpmsnap,format=qcow2,file={qcow}",
                 "-loadvm", "root"]
    return args


def copy_to_guest(panda, local: str | os.PathLike, guest_path: str,
                  mode: int = 0o755, chunk: int = 768) -> None:
    """Copy a small host file into the guest through the serial console.

    pandare's own ``copy_to_guest`` needs a CD drive, which pandagpm's
    image has none of. This sends the file gzipped and base64-encoded in
    ``chunk``-character ``echo`` lines (each one ``run_serial_cmd``; the
    whole line stays under the 1,024 characters busybox's line editor
    keeps, or its end is cut off), then
    decodes it with busybox's ``base64 -d | gunzip``, applies ``mode`` and
    checks the guest's MD5 sum (``RuntimeError`` if it differs).
    Blocking: call it from a ``@panda.queue_blocking`` function. Slow (a
    few tens of KiB/s): meant for test programs, not data.
    """
    import base64
    import gzip
    import shlex
    import hashlib
    with open(local, "rb") as f:
        data = f.read()
    b64 = base64.b64encode(gzip.compress(data, 9, mtime=0)).decode()
    q = shlex.quote(guest_path)
    stage = shlex.quote(guest_path + ".b64")
    if chunk + len(stage) + 16 >= 1024:
        raise ValueError(f"chunk {chunk} and path {guest_path!r} make "
                         "console lines of 1,024 characters or more")
    panda.run_serial_cmd(f"rm -f {stage}")
    for i in range(0, len(b64), chunk):
        panda.run_serial_cmd(f"echo '{b64[i:i + chunk]}' >> {stage}")
    panda.run_serial_cmd(f"base64 -d {stage} | gunzip > {q}; rm -f {stage}; "
                         f"chmod {mode:o} {q}")
    got = panda.run_serial_cmd(f"md5sum {q}").split()
    want = hashlib.md5(data).hexdigest()
    if want not in got:
        raise RuntimeError(f"copy_to_guest: {guest_path} in the guest does "
                           f"not match {local} (md5 {want}; the guest says "
                           f"{' '.join(got)[:120]!r})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pandagpm.pypanda",
        description="pandagpm's generic images under real PANDA.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("info", help="where PANDA is and what the image needs")
    p.add_argument("--arch", default="x86_64")
    p.add_argument("--binary", action="store_true",
                   help="print only the panda-system binary's path")
    p = sub.add_parser(
        "args", help="print the image's PANDA arguments, shell-quoted")
    p.add_argument("--arch", default="x86_64")
    p.add_argument("--snapshot", metavar="FILE",
                   help="copy the qcow2 holding PANDA's root snapshot to "
                        "FILE (PANDA writes to what it loads) and add it "
                        "with -loadvm root")
    p = sub.add_parser("snapshot", help="save (or show) PANDA's root snapshot")
    p.add_argument("--arch", default="x86_64")
    p.add_argument("--force", action="store_true", help="save it again")
    a = ap.parse_args(argv)
    try:
        inst = find_panda(a.arch)
    except PandaNotFound as err:
        print(f"pandagpm.pypanda: {err}", file=sys.stderr)
        return 1
    if a.cmd == "info" and a.binary:
        print(inst.system_binary(a.arch))
        return 0
    if a.cmd == "args":
        import shlex
        print(" ".join(shlex.quote(x) for x in command_args(
            a.arch, install=inst, snapshot=a.snapshot)))
        return 0
    if a.cmd == "info":
        img = _image.get_image(a.arch)
        os_version, osi_args = osi_setup(img)
        print(f"PANDA tree:  {inst.tree} (from {inst.where})")
        print(f"commit:      {inst.commit}")
        print(f"libpanda:    {inst.libpanda(a.arch)}")
        print(f"plugins:     {inst.plugin_dir(a.arch)}")
        print(f"-os:         {os_version}")
        print(f"osi_linux:   {osi_args}")
        print(f"boot:        {' '.join(_boot_args(img, Path('<qcow2>')))}")
        return 0
    print(panda_snapshot(a.arch, install=inst, force=a.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
