"""The generic image's initramfs: a busybox root with the users, the
/etc files and the /init script every architecture's image shares.

Used by :mod:`pandagpm.image`; written in the kernel's "newc" cpio format
without any outside tool.
"""

from __future__ import annotations

import gzip
import io
import json
import stat
from pathlib import Path

#: Guest user accounts (a root shell is what the console runs).
GUEST_USER = "user"
GUEST_UID = 1000
HOSTNAME = "pandagpm"


class Cpio:
    """Writer for the "newc" cpio format the kernel unpacks."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", uid: int = 0,
               gid: int = 0, rdev: tuple[int, int] = (0, 0)) -> None:
        nameb = name.encode() + b"\0"
        hdr = b"070701" + b"".join(b"%08X" % v for v in (
            self.ino, mode, uid, gid, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
            len(nameb), 0))
        self.ino += 1
        self.out.write(hdr + nameb)
        self.out.write(b"\0" * (-(110 + len(nameb)) % 4))
        self.out.write(data)
        self.out.write(b"\0" * (-len(data) % 4))

    def dir(self, name: str, perm: int = 0o755, uid: int = 0,
            gid: int = 0) -> None:
        self._entry(name, stat.S_IFDIR | perm, uid=uid, gid=gid)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int,
                perm: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        data = self.out.getvalue()
        return data + b"\0" * (-len(data) % 512)


INIT_SCRIPT = """#!/bin/sh
# pandagpm generic image: PID 1.  Mount the usual file systems, then keep
# a root shell running on the serial console forever.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=vt100
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
hostname -F /etc/hostname
dmesg -n 1
ip link set lo up 2>/dev/null
cd /root
echo "pandagpm-init: ready"
while true; do
    # The subshell is not a process group leader, so setsid does not
    # fork; cttyhack makes the console the controlling terminal.
    (cd /root && exec setsid cttyhack sh -l)
    sleep 1
done
"""

PROFILE_SCRIPT = """# pandagpm generic image
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export TERM=vt100
if [ "$(id -u)" = 0 ]; then PS1='\\u@\\h:\\w# '; else PS1='\\u@\\h:\\w$ '; fi
export PS1
# A wide terminal keeps the shell from redrawing long command lines.
stty cols 1000 rows 50 2>/dev/null
"""


def _etc_files(packages: dict,
               builder_version: int) -> dict[str, tuple[bytes, int]]:
    u, n = GUEST_USER, GUEST_UID
    files = {
        "etc/passwd": ("root:x:0:0:root:/root:/bin/sh\n"
                       "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
                       "bin:x:2:2:bin:/bin:/bin/false\n"
                       f"{u}:x:{n}:{n}:{u}:/home/{u}:/bin/sh\n"
                       "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
                       0o644),
        "etc/shadow": ("root::19000:0:99999:7:::\n"
                       "daemon:*:19000:0:99999:7:::\n"
                       "bin:*:19000:0:99999:7:::\n"
                       f"{u}::19000:0:99999:7:::\n"
                       "nobody:*:19000:0:99999:7:::\n", 0o640),
        "etc/group": ("root:x:0:\ndaemon:x:1:\nbin:x:2:\ntty:x:5:\n"
                      f"users:x:100:{u}\n{u}:x:{n}:\nnogroup:x:65534:\n",
                      0o644),
        "etc/hostname": (f"{HOSTNAME}\n", 0o644),
        "etc/hosts": (f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n"
                      "::1\tlocalhost ip6-localhost ip6-loopback\n", 0o644),
        "etc/shells": ("/bin/sh\n/bin/ash\n", 0o644),
        "etc/profile": (PROFILE_SCRIPT, 0o644),
        "etc/os-release": ('NAME="pandagpm generic"\nID=pandagpm\n'
                           f'VERSION_ID="{builder_version}"\n'
                           'PRETTY_NAME="pandagpm generic image (Debian '
                           'kernel, busybox)"\n', 0o644),
        "etc/issue": ("pandagpm generic image \\n \\l\n", 0o644),
        "etc/fstab": ("proc /proc proc defaults 0 0\n"
                      "sysfs /sys sysfs defaults 0 0\n"
                      "tmpfs /tmp tmpfs mode=1777 0 0\n", 0o644),
        "etc/resolv.conf": ("nameserver 127.0.0.1\n", 0o644),
        "etc/nsswitch.conf": ("passwd: files\ngroup: files\nhosts: files\n",
                              0o644),
        "etc/pandagpm-image": (json.dumps(packages, sort_keys=True) + "\n",
                               0o644),
    }
    return {k: (v.encode(), m) for k, (v, m) in files.items()}


_EM_X86_64 = 62


def _busybox_applets(busybox: Path, run) -> list[str]:
    """The applet names of a busybox binary.

    An x86_64 busybox is asked (``--list``); one of another architecture
    cannot run here, so its names are read from the binary's table: a
    run of NUL-terminated, sorted names that starts with ``[`` and ``[[``
    and ends with an empty name.
    """
    data = busybox.read_bytes()
    if data[:4] == b"\x7fELF" and data[18] == _EM_X86_64 and data[19] == 0:
        out = run([str(busybox), "--list"], "listing busybox applets")
        return sorted({a for a in out.split() if a and "/" not in a})
    i = data.find(b"\0[\0[[\0")
    if i < 0:
        raise ValueError(f"{busybox}: no busybox applet table found")
    names, j = [], i + 1
    while len(names) < 4096:
        k = data.find(b"\0", j, j + 64)
        if k <= j:
            break
        names.append(data[j:k].decode("ascii"))
        j = k + 1
    if len(names) < 50 or names != sorted(names):
        raise ValueError(f"{busybox}: the applet table looks wrong "
                         f"({len(names)} names)")
    return sorted({a for a in names if "/" not in a})


def build_initramfs(busybox: Path, packages: dict, run,
                    builder_version: int) -> bytes:
    """The gzipped initramfs: busybox and its applets, /etc, /init.

    ``run(argv, what)`` runs a command and returns its output (the image
    builder's, which raises ImageError on failure); ``builder_version``
    goes into /etc as the image builder's version.
    """
    c = Cpio()
    for d in ("bin", "dev", "etc", "home", "mnt", "proc", "run", "sys",
              "usr", "var", "var/log", "opt"):
        c.dir(d)
    c.dir("root", 0o700)
    c.dir("tmp", 0o1777)
    c.dir("var/tmp", 0o1777)
    c.dir(f"home/{GUEST_USER}", 0o755, GUEST_UID, GUEST_UID)
    c.symlink("sbin", "bin")
    c.symlink("usr/bin", "../bin")
    c.symlink("usr/sbin", "../bin")
    c.symlink("lib", "usr/lib")
    c.dir("usr/lib")
    c.chardev("dev/console", 5, 1, 0o600)
    c.chardev("dev/null", 1, 3, 0o666)
    c.chardev("dev/ttyS0", 4, 64, 0o620)
    c.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in _busybox_applets(busybox, run):
        if applet != "busybox":
            c.symlink(f"bin/{applet}", "busybox")
    for name, (data, mode) in _etc_files(packages, builder_version).items():
        c.file(name, data, mode)
    c.file("init", INIT_SCRIPT.encode(), 0o755)
    return gzip.compress(c.finish(), compresslevel=9, mtime=0)
