"""pip install works: a fresh venv outside the checkout runs the walkthrough.

The checkout's files, as a fresh clone has them (``git ls-files``: no
guest/build, no build/, no in-place extension), are copied to a temporary
directory outside the checkout.  A new venv made from the base interpreter
then ``pip install``s that tree, which compiles pandagpm._gpm and the guest
binaries (the daemon and the bundled plugins, shipped as package data).
From a working directory outside the checkout, with no PYTHONPATH, the
product walkthrough (``examples/etc_count_walkthrough.py``) must print the
guest's own ``ls -A /etc | wc -l``.  A wheel built from an sdist of the
same tree is installed into a second venv and must find every guest
binary too.

No network: the build runs with ``--no-build-isolation`` and the build
tools (setuptools, wheel, packaging) come from the interpreter running
the tests, repacked as wheels and installed with ``--no-index``.  The
image cache (~/.cache/pandagpm) is shared, so nothing is rebuilt.

Marked e2e (it boots the guest); about a minute.
"""

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pandagpm import image

ROOT = Path(__file__).resolve().parents[1]

_MISSING = [t for t in ("musl-gcc", "qemu-system-x86_64", "make", "gcc")
            if shutil.which(t) is None]
if _MISSING:
    pytest.skip(f"pip install test needs {', '.join(_MISSING)}",
                allow_module_level=True)

pytestmark = pytest.mark.e2e

BUILD_TOOLS = ("setuptools", "wheel", "packaging")
GUEST_BINARIES = ("guest_daemon", "etc_count", "hello", "guest_shell", "procs",
                  "tcp_fwd", "files", "pty_shell")

WALKTHROUGH = '''
import pandagpm
print("pandagpm from", pandagpm.__file__, flush=True)
''' + (ROOT / "examples" / "etc_count_walkthrough.py").read_text()


def clean_env():
    """The environment of a new user: no PYTHONPATH, no virtualenv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME",
                        "PYTHONSTARTUP", "PYTHONSAFEPATH")}
    return env


def run(argv, cwd, timeout=900, env=None, check=True):
    r = subprocess.run([str(a) for a in argv], cwd=cwd, env=env or clean_env(),
                       capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} failed "
                             f"(exit {r.returncode}):\n{r.stdout[-4000:]}\n"
                             f"{r.stderr[-4000:]}")
    return r


def copy_checkout(dest):
    """Copy the files a clone has (tracked plus new, unignored ones)."""
    r = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached",
                        "--others", "--exclude-standard"],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("the checkout is not a git work tree")
    for rel in r.stdout.decode().split("\0"):
        src = ROOT / rel
        if rel and src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def wheel_of_installed(name, dest, stage):
    """Repack an installed distribution of this interpreter as a wheel."""
    dist = importlib.metadata.distribution(name)
    if not dist.read_text("WHEEL"):
        pytest.skip(f"{name} in the test interpreter was not installed "
                    "from a wheel, so it cannot be repacked")
    root = stage / f"stage-{name}"
    for f in dist.files or ():
        rel = str(f)
        src = Path(dist.locate_file(f))
        if rel.startswith("..") or "__pycache__" in rel or \
                rel.endswith(".pyc") or not src.is_file():
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, root / rel)
    run([sys.executable, "-m", "wheel", "pack", root, "-d", dest], stage)


def new_venv(path, cwd):
    base = getattr(sys, "_base_executable", sys.executable)
    run([base, "-m", "venv", path], cwd)
    return path / "bin" / "python"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("pip-install")
    assert ROOT not in work.resolve().parents
    for tool in BUILD_TOOLS:
        try:
            importlib.metadata.distribution(tool)
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"the test interpreter has no {tool} to build with")
    (work / "tools").mkdir()
    src = work / "src"
    copy_checkout(src)
    assert not (src / "guest" / "build").exists()
    return work


def install_build_tools(py, work):
    """Give a new venv the build tools it lacks, from this interpreter."""
    probe = ("import importlib.metadata as m, sys\n"
             "for t in sys.argv[1:]:\n"
             "    try: m.distribution(t)\n"
             "    except m.PackageNotFoundError: print(t)\n")
    missing = run([py, "-c", probe, *BUILD_TOOLS], work).stdout.split()
    tools = work / "tools"
    for tool in missing:
        if not list(tools.glob(f"{tool}-*.whl")):
            wheel_of_installed(tool, tools, work)
    if missing:
        run([py, "-m", "pip", "install", "-q", "--no-index", "--find-links",
             tools, *missing], work)


@pytest.fixture(scope="module")
def guest_etc_count():
    from pandagpm.qemu import QemuMachine
    with QemuMachine(image.get_image("x86_64", progress=False)) as m:
        return int(m.run_serial_cmd("ls -A /etc | wc -l"))


def test_missing_musl_is_a_clear_error(work):
    """Without the guest compiler (and nothing built) the build stops
    and says what to install."""
    src = work / "src-nocc"
    copy_checkout(src)
    env = clean_env()
    env["GUEST_CC"] = "pandagpm-no-such-musl-gcc"
    r = run([sys.executable, "setup.py", "-q", "build_py", "--build-lib",
             work / "nocc"], src, env=env, check=False)
    assert r.returncode != 0
    assert "apt-get install musl-tools" in r.stderr, r.stderr[-2000:]
    assert not (src / "guest" / "build" / "x86_64" / "guest_daemon").exists()


def test_pip_install_checkout_runs_the_walkthrough(work, guest_etc_count):
    py = new_venv(work / "venv", work)
    install_build_tools(py, work)
    run([py, "-m", "pip", "install", "--no-build-isolation", "--no-index",
         work / "src"], work)
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig."
                     "get_paths()['purelib'])"], work).stdout.strip())
    shipped = site / "pandagpm" / "guest_bin" / "x86_64"
    for name in GUEST_BINARIES:
        assert os.access(shipped / name, os.X_OK), name

    cwd = work / "elsewhere"
    cwd.mkdir()
    (cwd / "walkthrough.py").write_text(WALKTHROUGH)
    r = run([py, "walkthrough.py"], cwd, timeout=400)
    m = re.search(r"pandagpm from (\S+)", r.stdout)
    assert m and Path(m.group(1)).is_relative_to(work / "venv"), r.stdout
    m = re.search(r"Guest /etc file count: (\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert int(m.group(1)) == guest_etc_count

    # The image command line works from the installed package and shares
    # the user's image cache.
    r = run([py, "-m", "pandagpm.image", "info", "--path"], cwd)
    assert Path(r.stdout.strip()) == image.get_image("x86_64",
                                                     progress=False).path
    # The console script: the installed pandagpm command and its tools.
    exe = work / "venv" / "bin" / "pandagpm"
    r = run([exe, "--help"], cwd)
    assert "cp" in r.stdout and "exec" in r.stdout and "mount" in r.stdout
    r = run([exe, "exec", "--", "cat", "/etc/hostname"], cwd, timeout=300)
    assert r.stdout.strip()


def test_wheel_from_sdist_carries_the_guest_binaries(work):
    """The release route (what ``python -m build`` does): an sdist of the
    checkout, a wheel from the sdist, the wheel in another venv."""
    py = new_venv(work / "venv-build", work)
    install_build_tools(py, work)
    dist = work / "dist"
    run([py, "setup.py", "-q", "sdist", "-d", dist], work / "src")
    sdists = sorted(dist.glob("pandagpm-*.tar.gz"))
    assert len(sdists) == 1
    run([py, "-m", "pip", "wheel", "--no-build-isolation", "--no-index",
         "--no-deps", "-w", dist, sdists[0]], work)
    wheels = sorted(dist.glob("pandagpm-*.whl"))
    assert len(wheels) == 1

    py2 = new_venv(work / "venv-wheel", work)
    run([py2, "-m", "pip", "install", "-q", "--no-index", wheels[0]], work)
    cwd = work / "elsewhere-wheel"
    cwd.mkdir()
    probe = (
        "import pandagpm, pandagpm._paths as p, pandagpm._gpm as g\n"
        "import pandagpm.tools.forward, pandagpm.tools.ports\n"
        "p.register()\n"
        f"for n in {GUEST_BINARIES!r}:\n"
        "    print(n, g.find_plugin(n, 'x86_64')['path'])\n")
    r = run([py2, "-c", probe], cwd)
    paths = dict(line.split() for line in r.stdout.splitlines())
    for name in GUEST_BINARIES:
        assert Path(paths[name]).is_relative_to(work / "venv-wheel"), paths
        assert "/guest_bin/x86_64/" in paths[name]
    r = run([py2, "-m", "pandagpm.image", "kernelinfo", "--help"], cwd)
    assert "KALLSYMS" in r.stdout
