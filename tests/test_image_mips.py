"""Tests of the MIPS generic images (``mipsel`` and ``mips64el``).

Unit tests (no QEMU, no apt) cover what pandagpm.image_mips reads out of
a kernel: the address of a global from the code that loads it (as the
entry's SAVE_SOME and the TLB refill handler do, 32- and 64-bit, with the
SMP index), the 8-byte export table, and the recipe rows. The e2e tests
build each image (cached), boot it from its ``root`` snapshot on stock
QEMU (qemu-system-mipsel / mips64el -M malta), run commands, check the
doorbell page, and follow the profile's current-task and page-table
recipes through the shared RAM file to a running process.
"""

import gzip
import struct
import time

import pytest

from pandagpm import image, image_arm, image_mips, qemu
from test_image import read_newc
from test_image_arm import _need

MIPS_ARCHES = ("mipsel", "mips64el")


# -- unit tests ----------------------------------------------------------------

def test_global_from_the_entry_code_32():
    # handle_sys's SAVE_SOME (4kc-malta): mfc0 k0,context; lui k1,0x810f;
    # srl k0,k0,23; addu k1,k1,k0; move k0,sp; lw sp,9060(k1).
    words = [0x401A2000, 0x3C1B810F, 0x001AD5C2, 0x037AD821, 0x03A0D025,
             0x8F7D2364]
    assert image_mips._hi_lo_loads(words) == [0x810F2364]
    # A negative %lo: lui t1,0x8012; lw t2,-20804(t1).
    assert image_mips._hi_lo_loads([0x3C098012, 0x8D2AAEBC]) == [0x8011AEBC]
    # A load through another register is not the lui's.
    assert image_mips._hi_lo_loads([0x3C1B810F, 0x8F7D2364 ^ (1 << 21)]) == []
    assert image_mips._hi_lo_loads([0x03A0D025]) == []


def test_global_from_the_entry_code_64():
    # 5kc-malta: dmfc0 k0,xcontext; lui k1,0x8126; dsrl32 k0,k0,16;
    # daddu k1,k1,k0; move k0,sp; ld sp,17384(k1): ckseg0, sign-extended.
    words = [0x403AA000, 0x3C1B8126, 0x001AD43E, 0x037AD82D, 0x03A0D025,
             0xDF7D43E8]
    assert image_mips._hi_lo_loads(words, 64) == [0xFFFFFFFF812643E8]
    assert image_mips._hi_lo_loads(words, 32) == [0x812643E8]


def test_ksymtab_absolute_64():
    strings = b"\0init_task\0ebase\0"
    base = 0xFFFFFFFF80100000
    blob = bytearray(48 + len(strings))
    blob[48:] = strings
    struct.pack_into("<QQQ", blob, 0, 0xFFFFFFFF80E75340, base + 49, 0)
    struct.pack_into("<QQQ", blob, 24, 0xFFFFFFFF81264778, base + 59, 0)
    found = image_arm._ksymtab(bytes(blob), ("init_task", "ebase", "absent"),
                               False, lambda o: base + o, word=8)
    assert found == {"init_task": 0xFFFFFFFF80E75340,
                     "ebase": 0xFFFFFFFF81264778}


def test_arch_rows():
    for arch in MIPS_ARCHES:
        spec = image.ARCHES[arch]
        assert spec.ram_base == 0 and spec.ram_size == 256 << 20
        assert "malta" in spec.machine_args
        assert spec.offsets_from == "headers" and spec.foreign
        # The two mem= keep exactly the rings and the last page (the
        # doorbell) out; nokaslr: the profile's addresses stay.
        regions = []
        for arg in spec.append.split():
            if arg.startswith("mem="):
                size, at = arg[4:].split("@")
                regions.append((int(at, 0), int(size[:-1]) * 1024))
        assert regions == [(0, spec.ring_phys),
                           (spec.ring_phys + spec.ring_size,
                            spec.doorbell_phys - spec.ring_phys -
                            spec.ring_size)]
        assert spec.doorbell_phys + 4096 == spec.ram_size
        assert spec.ring_size == 16 << 20
        assert "nokaslr" in spec.append.split()
        assert "sleep=off" in " ".join(spec.machine_args)
        defs = image_mips.header_defines(arch)
        assert set(image_mips.WALKER[arch]) <= set(defs)
    assert image.ARCHES["mipsel"].qemu_binary == "qemu-system-mipsel"
    assert image.ARCHES["mips64el"].qemu_binary == "qemu-system-mips64el"
    assert "PMD_SHIFT" in image_mips.header_defines("mips64el")
    assert "PMD_SHIFT" not in image_mips.header_defines("mipsel")


# -- the real images -------------------------------------------------------------

@pytest.fixture(scope="module", params=MIPS_ARCHES)
def img(request):
    _need(request.param)
    return image.get_image(request.param, progress=True)


@pytest.fixture
def machine(img):
    with qemu.QemuMachine(img) as m:
        yield m


def _layout(img):
    """(word size, struct format, kernel pointer -> physical)."""
    if img.arch == "mips64el":
        def v2p(v):
            if v >> 62 == 2:
                return v & ((1 << 59) - 1)
            assert v >> 32 == 0xFFFFFFFF, hex(v)
            return v - image_mips.CKSEG0
        return 8, "<Q", v2p
    return 4, "<I", lambda v: v - image_mips.KSEG0


@pytest.mark.e2e
def test_profile_is_plausible(img):
    p = img.profile
    k = p["kernel"]
    assert k["release"] == k["uname_r"] and k["release"].startswith("6.1.")
    assert k["offsets_source"] == "headers"
    assert k["header_defines"]["PAGE_SHIFT"] == 12
    assert k["thread_size"] == (16384 if img.arch == "mips64el" else 8192)
    entry = k["syscall_entry"]["symbol"]
    assert img.symbol("_stext") <= img.symbol(entry) < img.symbol("_etext")
    assert img.symbol("_stext") <= img.symbol("handle_sys") < \
        img.symbol("_etext")
    assert "kernelsp" in k["symbols"] and "init_task" in k["symbols"]
    assert k["per_cpu_offset0"] == "0x0"
    assert len(k["mmu_inputs"]) == (3 if img.arch == "mips64el" else 1)
    assert int(k["mmu_inputs"][0], 16) < p["qemu"]["ram_size"]
    t = k["offsets"]["task_struct"]
    assert t["tgid"] == t["pid"] + 4 and t["comm_size"] == 16
    assert k["offsets"]["thread_info"]["task"] == 0
    assert p["guest"]["doorbell_phys"] == 0x0FFFF000
    # The snapshot loads in well under a second (docs/image.md: -icount).
    assert p["measured"]["loadvm_start_to_shell_seconds"] < 5


@pytest.mark.e2e
def test_root_snapshot_runs_a_command(img, machine):
    etc = {n.split("/")[1] for n in
           read_newc(gzip.decompress(img.initrd.read_bytes()))
           if n.startswith("etc/")}
    assert machine.run_serial_cmd("ls -A /etc | wc -l").strip() == \
        str(len(etc))
    assert machine.run_serial_cmd("uname -m") == \
        ("mips64" if img.arch == "mips64el" else "mips")
    status, out = machine.run_serial_cmd_status("id -u user; false")
    assert (status, out) == (1, "1000")
    assert machine.revert("root") < 5
    assert machine.run_serial_cmd("echo again") == "again"


@pytest.mark.e2e
def test_doorbell_page_is_not_kernel_ram(img, machine):
    db = img.profile["guest"]["doorbell_phys"]
    iomem = machine.run_serial_cmd("cat /proc/iomem", check=True)
    ram = [tuple(int(x, 16) for x in line.split(" : ")[0].split("-"))
           for line in iomem.splitlines()
           if line.endswith(" : System RAM") and not line.startswith(" ")]
    assert ram and ram[0][0] == 0
    assert all(e < db or s > db + 4095 for s, e in ram)
    assert machine.read_phys(db, 4096) == bytes(4096)
    rp, rs = img.profile["guest"]["ring_phys"], img.profile["guest"][
        "ring_size"]
    assert all(e < rp or s >= rp + rs for s, e in ram)


@pytest.mark.e2e
def test_recipes_reach_a_running_process(img, machine):
    """kernelsp's stack base names the running task; its mm's page
    directory (pgd_current on mipsel) maps its stack, which holds its
    argv: the page-table layout the host's walker assumes, on the real
    kernel."""
    size, fmt, v2p = _layout(img)
    k = img.profile["kernel"]
    t = k["offsets"]["task_struct"]
    pgd_off = k["offsets"]["mm_struct"]["pgd"]

    def word(v):
        return struct.unpack(fmt, machine.read_phys(v2p(v), size))[0]

    # A process that spins in user mode, so it is the running one.
    machine.run_serial_cmd(
        "printf '#!/bin/sh\\nwhile :; do :; done\\n' > /tmp/gpmspin; "
        "chmod 755 /tmp/gpmspin", check=True)
    pid = int(machine.run_serial_cmd("/tmp/gpmspin gpmarg & echo $!",
                                     check=True))
    seen = None
    # Polled from the host's side alone, up to about 10 s. A console
    # command per try would wake the shell each time, and the read right
    # after its answer then finds the shell still running (on a slow
    # host, try after try: how this test failed in CI).
    deadline = time.monotonic() + 10
    while seen is None and time.monotonic() < deadline:
        task = word(word(int(k["symbols"]["kernelsp"], 16)) &
                    ~(k["thread_size"] - 1))
        comm = machine.read_phys(v2p(task + t["comm"]), 16).split(b"\0")[0]
        # The name is set early in execve, the argv's place in the new
        # mm only later: a task caught in between is read again.
        mm = word(task + t["mm"]) if comm == b"gpmspin" else 0
        if mm and word(mm + k["offsets"]["mm_struct"]["arg_start"]):
            seen = task
        else:
            time.sleep(0.01)
    assert seen is not None, "the spinner never ran"
    assert struct.unpack("<i", machine.read_phys(
        v2p(seen + t["pid"]), 4))[0] == pid
    pgd = word(word(seen + t["mm"]) + pgd_off)
    if img.arch == "mipsel":
        # The TLB refill handler's variable holds the same directory.
        assert struct.unpack("<I", machine.read_phys(
            int(k["mmu_inputs"][0], 16), 4))[0] == pgd
    # Walk the directory for the spinner's argv (mm->arg_start).
    arg = word(word(seen + t["mm"]) + k["offsets"]["mm_struct"]["arg_start"])

    def walk():
        if img.arch == "mips64el":
            pmd = word(pgd + ((arg >> 30) & 1023) * 8)
            e = word(pmd + ((arg >> 21) & 511) * 8)
            pte = word(e + ((arg >> 12) & 511) * 8)
            return pte, (pte >> 14) << 12
        pt = word(pgd + (arg >> 22) * 4)
        pte = word(pt + ((arg >> 12) & 1023) * 4)
        return pte, (pte >> 12) << 12

    # Just after its execve a task's argv page may not be mapped yet (seen
    # on both arches, for well under 0.5 s): give it up to 5 s.
    deadline = time.monotonic() + 5
    pte, pa = walk()
    while not pte & 1 and time.monotonic() < deadline:
        time.sleep(0.05)
        pte, pa = walk()
    assert pte & 1, f"argv page {arg:#x} not present: {pte:#x}"
    data = machine.read_phys(pa + (arg & 0xFFF), 64)
    assert b"/tmp/gpmspin\0gpmarg\0" in data, data
    machine.run_serial_cmd(f"kill {pid}")
