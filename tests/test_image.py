"""Tests of pandagpm.image: the initramfs writer, the cache key, the
kernel extraction, and (marked e2e, since a first build boots QEMU) the
real image, its profile and the kernel's BTF."""

import gzip
import json
import lzma
import os
import shutil
import subprocess
import time

import pytest

from pandagpm import btf, image


# -- unit tests (no QEMU, no apt) --------------------------------------------

def read_newc(data):
    """Parse a newc cpio archive into {name: (mode, uid, body, rdev)}."""
    out = {}
    pos = 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        f = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16)
             for i in range(13)]
        namesize, filesize = f[11], f[6]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        body = data[pos:pos + filesize]
        pos += filesize
        pos += -pos % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (f[1], f[2], body, (f[9], f[10]))


def test_cpio_writer_roundtrip(tmp_path):
    c = image._Cpio()
    c.dir("etc")
    c.file("etc/hello", b"hello\n", 0o640)
    c.symlink("bin/sh", "busybox")
    c.chardev("dev/console", 5, 1)
    data = c.finish()
    assert len(data) % 512 == 0
    entries = read_newc(data)
    assert entries["etc/hello"][2] == b"hello\n"
    assert entries["etc/hello"][0] == 0o100640
    assert entries["bin/sh"][2] == b"busybox"
    assert entries["dev/console"][3] == (5, 1)
    if shutil.which("cpio"):
        r = subprocess.run(["cpio", "-it", "--quiet"], input=data,
                           capture_output=True, check=True)
        assert r.stdout.decode().split() == ["etc", "etc/hello", "bin/sh",
                                             "dev/console"]


def test_cache_dir_override(monkeypatch, tmp_path):
    monkeypatch.setenv("PANDAGPM_CACHE", str(tmp_path / "c"))
    assert image.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PANDAGPM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert image.cache_dir() == tmp_path / "x" / "pandagpm"


def test_key_depends_on_every_input():
    pk = {"kernel": {"name": "k", "version": "1"},
          "busybox": {"name": "b", "version": "1"}}
    k = image._image_key("x86_64", pk, "QEMU 10")
    assert k == image._image_key("x86_64", json.loads(json.dumps(pk)),
                                 "QEMU 10")
    pk2 = json.loads(json.dumps(pk))
    pk2["kernel"]["version"] = "2"
    assert image._image_key("x86_64", pk2, "QEMU 10") != k
    assert image._image_key("x86_64", pk, "QEMU 11") != k
    assert image._image_key("i386", pk, "QEMU 10") != k


def test_unknown_arch():
    with pytest.raises(image.ImageError, match="no generic image for arch"):
        image.get_image("pdp11")


def test_extract_vmlinux_finds_the_xz_stream():
    fake_elf = b"\x7fELF" + os.urandom(1000)
    blob = (b"MZ" + b"\0" * 500 + b"\xfd7zXZ\x00 not really"
            + lzma.compress(fake_elf, format=lzma.FORMAT_XZ) + b"trailer")
    assert image.extract_vmlinux(blob) == fake_elf
    with pytest.raises(image.ImageError, match="no compressed vmlinux"):
        image.extract_vmlinux(b"MZ" + b"\0" * 100)


@pytest.mark.skipif(shutil.which("zstd") is None, reason="no zstd tool")
def test_extract_vmlinux_zstd():
    fake_elf = b"\x7fELF" + os.urandom(1000)
    packed = subprocess.run(["zstd", "-q", "-c"], input=fake_elf,
                            capture_output=True, check=True).stdout
    blob = b"MZ" + b"\0" * 500 + b"(\xb5/\xfd junk" + packed + b"trailer"
    assert image.extract_vmlinux(blob) == fake_elf


# -- the real image (e2e: the first call builds and boots it) ----------------

@pytest.fixture(scope="module")
def img():
    return image.get_image("x86_64", progress=True)


@pytest.mark.e2e
def test_second_get_image_is_a_fast_cache_hit(img):
    t = time.monotonic()
    again = image.get_image("x86_64", progress=False)
    elapsed = time.monotonic() - t
    assert again.path == img.path
    assert elapsed < 1.0, f"cache hit took {elapsed:.2f} s"
    assert img.kernel.is_file() and img.initrd.is_file()
    assert img.disk.is_file()
    assert image.cached_images("x86_64")[0].path.exists()


@pytest.mark.e2e
def test_profile_is_plausible(img):
    p = img.profile
    assert p["arch"] == "x86_64"
    assert p["kernel"]["release"].startswith("6.1.")
    assert p["kernel"]["uname_r"] == p["kernel"]["release"]
    entry = img.symbol("entry_SYSCALL_64")
    assert img.symbol("_stext") <= entry < img.symbol("_etext")
    # current_task is a per-CPU variable: an offset into the per-CPU area.
    assert 0 < img.symbol("current_task") < 0x100000
    assert int(p["kernel"]["per_cpu_offset0"], 16) >= int(
        p["kernel"]["page_offset_base"], 16)
    t = p["kernel"]["offsets"]["task_struct"]
    assert t["tgid"] == t["pid"] + 4
    assert t["pid"] < t["comm"] < t["sizeof"]
    assert t["comm_size"] == 16
    assert p["kernel"]["offsets"]["cred"]["euid"] > \
        p["kernel"]["offsets"]["cred"]["uid"]
    q = p["qemu"]
    assert "nokaslr" in q["append"]
    assert q["ram_size"] == 512 * 1024 * 1024
    assert p["measured"]["boot_to_shell_seconds"] > 0
    # The disk holds the snapshot.
    info = subprocess.run(["qemu-img", "snapshot", "-l", str(img.disk)],
                          capture_output=True, text=True, check=True)
    assert " root " in info.stdout


@pytest.mark.e2e
def test_btf_of_the_real_kernel_matches_the_profile(img, tmp_path):
    vmlinux = tmp_path / "vmlinux"
    vmlinux.write_bytes(image.extract_vmlinux(img.kernel.read_bytes()))
    b = btf.load(vmlinux)
    assert len(b) > 10000
    for member in ("pid", "tgid", "comm", "mm", "cred", "real_parent"):
        assert b.member_offset("task_struct", member) == \
            img.offset("task_struct", member)
    assert b.member_offset("cred", "uid.val") == img.offset("cred", "uid")
    assert b.member_size("task_struct", "pid") == 4
    assert b.member_size("task_struct", "mm") == 8


@pytest.mark.e2e
def test_initramfs_contents(img):
    entries = read_newc(gzip.decompress(img.initrd.read_bytes()))
    assert entries["init"][0] & 0o111
    assert b"cttyhack" in entries["init"][2]
    passwd = entries["etc/passwd"][2].decode()
    assert "root:x:0:0:" in passwd and "user:x:1000:1000:" in passwd
    assert entries["bin/sh"][2] == b"busybox"
    assert entries["dev/console"][3] == (5, 1)
