"""Tests of the ARM generic images (``aarch64`` and ``arm``).

Unit tests (no QEMU, no apt) cover what pandagpm.image_arm reads out of a
kernel: the busybox applet table, the export table (PREL32 and absolute),
vector_swi's code.  The e2e tests build each image (cached), boot it from
its ``root`` snapshot on stock QEMU, run a command on the serial console,
check that the doorbell page is outside the kernel's RAM, walk the task
list through the shared RAM file, and check the profile's current-task
recipe and syscall entry against a running program through QEMU's
gdbstub.
"""

import dataclasses
import gzip
import shutil
import struct
import subprocess
import time

import pytest

from pandagpm import image, image_arm, initramfs, qemu
from gdbremote import GdbRemote
from test_image import read_newc

ARM_ARCHES = ("aarch64", "arm")


# -- unit tests ----------------------------------------------------------------

def test_busybox_applets_from_a_foreign_binary(tmp_path):
    names = ["[", "[[", "ash", "cat", "ls", "sh"] + [
        f"z{i:03d}" for i in range(60)]
    blob = b"\x7fELF\x01\x01" + b"\0" * 12 + b"\x28\x00" + b"junk\0" + \
        b"\0".join(n.encode() for n in names) + b"\0\0more"
    bb = tmp_path / "busybox"
    bb.write_bytes(blob)
    assert initramfs._busybox_applets(bb, None) == sorted(names)
    bb.write_bytes(b"\x7fELF\x01\x01" + b"\0" * 12 + b"\x28\x00nothing")
    with pytest.raises(ValueError, match="applet table"):
        initramfs._busybox_applets(bb, None)


def test_ksymtab_prel32():
    # Two entries {value, name, namespace}, each field an offset from
    # itself, and the names in a string table after them.
    strings = b"\0init_task\0cpu_number\0"
    base = 64
    blob = bytearray(base + 24 + len(strings))
    s0 = base + 24
    blob[s0:] = strings
    for i, (name_off, value) in enumerate(((s0 + 1, 0x1000),
                                           (s0 + 11, 0x2000))):
        e = base + 12 * i
        struct.pack_into("<iii", blob, e, value - e, name_off - (e + 4), 0)
    found = image_arm._ksymtab(bytes(blob), ("init_task", "cpu_number",
                                             "absent"), True, lambda o: o)
    assert found == {"init_task": 0x1000, "cpu_number": 0x2000}


def test_ksymtab_absolute():
    base_va = 0xC0000000
    strings = b"\0__per_cpu_offset\0"
    blob = bytearray(32) + strings
    name_va = base_va + 32 + 1
    struct.pack_into("<III", blob, 8, 0xC1234560, name_va, 0)
    found = image_arm._ksymtab(bytes(blob), ("__per_cpu_offset",), False,
                               lambda o: base_va + o)
    assert found == {"__per_cpu_offset": 0xC1234560}


def _movw(rd, imm):
    return 0xE3000000 | ((imm >> 12) << 16) | (rd << 12) | (imm & 0xFFF)


def _movt(rd, imm):
    return 0xE3400000 | ((imm >> 12) << 16) | (rd << 12) | (imm & 0xFFF)


def test_arm_entry_task_from_reload_current():
    addr = 0xC132A04C
    code = [0xE24DD048, 0xE88D1FFF,
            _movw(10, addr & 0xFFFF), _movt(10, addr >> 16),
            0xEE1DCF90,                       # mrc p15,0,ip,c13,c0,4
            0xE79AA00C,                       # ldr r10, [r10, ip]
            0xEE0DAF70]                       # mcr p15,0,r10,c13,c0,3
    blob = struct.pack(f"<{len(code)}I", *code)
    assert image_arm._arm_entry_task(blob, 0) == addr
    assert image_arm._arm_entry_task(blob[:16], 0) is None


def test_arm_branch_target():
    # b . (to itself) is imm24 = -2.
    assert image_arm._arm_branch_target(0xEAFFFFFE, 0x1000) == 0x1000
    assert image_arm._arm_branch_target(0xEA000001, 0x1000) == 0x100C
    assert image_arm._arm_branch_target(0x1A000001, 0x1000) is None


def test_arch_table():
    for arch in ARM_ARCHES:
        spec = image.ARCHES[arch]
        assert spec.ram_base == 0x40000000
        assert spec.ram_base <= spec.doorbell_phys < \
            spec.ram_base + spec.ram_size
        assert "virt" in spec.machine_args
        # mem= keeps exactly the ring region and the last page out: the
        # rings right below the doorbell page, which ends RAM.
        kib = int(spec.append.split("mem=")[1].split("K")[0])
        assert kib * 1024 == spec.ring_phys - spec.ram_base
        assert spec.ring_phys + spec.ring_size == spec.doorbell_phys
        assert spec.ring_size >= (16 << 20)
        assert spec.doorbell_phys + 4096 == spec.ram_base + spec.ram_size
    assert image.ARCHES["x86_64"].ram_base == 0
    assert image.ARCHES["x86_64"].recipe_version == 0


def test_recipe_version_is_in_arm_keys_only(monkeypatch):
    pk = {"kernel": {"name": "k", "version": "1"}}
    x86 = image._image_key("x86_64", pk, "Q")
    arm = image._image_key("arm", pk, "Q")
    spec = image.ARCHES["arm"]
    monkeypatch.setitem(image.ARCHES, "arm",
                        dataclasses.replace(spec, recipe_version=2))
    assert image._image_key("arm", pk, "Q") != arm
    assert image._image_key("x86_64", pk, "Q") == x86


# -- the real images -------------------------------------------------------------

def _need(arch):
    spec = image.ARCHES[arch]
    if shutil.which(spec.qemu_binary) is None:
        pytest.skip(f"{spec.qemu_binary} is not installed "
                    "(scripts/install-system-deps.sh)")
    r = subprocess.run(["dpkg", "--print-foreign-architectures"],
                       capture_output=True, text=True)
    if spec.debian_arch not in r.stdout.split():
        pytest.skip(f"dpkg has no {spec.debian_arch} architecture "
                    "(scripts/install-system-deps.sh adds it)")


@pytest.fixture(scope="module", params=ARM_ARCHES)
def img(request):
    _need(request.param)
    return image.get_image(request.param, progress=True)


@pytest.fixture
def machine(img):
    with qemu.QemuMachine(img) as m:
        yield m


def _wait_comm(machine, pid, comm):
    """Wait (bounded) until process ``pid`` has exec'd ``comm``."""
    machine.run_serial_cmd(
        f"i=0; while [ \"$(cat /proc/{pid}/comm)\" != {comm} ] && "
        f"[ $i -lt 500 ]; do usleep 10000; i=$((i+1)); done", timeout=20)
    assert machine.run_serial_cmd(f"cat /proc/{pid}/comm") == comm


def _virt_to_phys(img):
    """Kernel virtual to physical, from the profile's layout facts."""
    k = img.profile["kernel"]
    po = int(k["phys_offset"], 16)
    if img.arch == "aarch64":
        voff = int(k["kimage_voffset"], 16)
        page_offset = int(k["page_offset"], 16)

        def v2p(v):
            if v & (1 << 47):                 # the kernel image
                return (v - voff) & (2**64 - 1)
            return (v & ~page_offset) + po     # the linear map
        return v2p
    page_offset = int(k["page_offset"], 16)
    return lambda v: v - page_offset + po


def _word(img):
    return (8, "<Q") if img.arch == "aarch64" else (4, "<I")


@pytest.mark.e2e
def test_profile_is_plausible(img):
    p = img.profile
    k = p["kernel"]
    assert p["arch"] in ARM_ARCHES
    assert k["release"] == k["uname_r"]
    assert k["release"].startswith("6.1.")
    assert p["qemu"]["ram_base"] == 0x40000000 == \
        qemu.QemuMachine(img).ram_base
    assert p["guest"]["doorbell_phys"] == 0x5FFFF000
    assert k["doorbell_in_system_ram"] is False
    entry = int(k["syscall_breakpoint"], 16)
    assert img.symbol("_stext") <= entry < img.symbol("_etext")
    t = k["offsets"]["task_struct"]
    assert t["tgid"] == t["pid"] + 4
    assert t["pid"] < t["comm"] < t["sizeof"]
    assert t["comm_size"] == 16 and t["thread_info"] == 0
    assert k["offsets"]["cred"]["uid_size"] == 4
    cur = k["current"]
    assert cur["percpu_symbol"] in k["symbols"]
    assert k["offsets_source"] == ("btf" if img.arch == "aarch64"
                                   else "headers")
    assert p["measured"]["boot_to_shell_seconds"] > 0
    info = subprocess.run(["qemu-img", "snapshot", "-l", str(img.disk)],
                          capture_output=True, text=True, check=True)
    assert " root " in info.stdout


@pytest.mark.e2e
def test_second_get_image_is_a_cache_hit(img):
    again = image.get_image(img.arch, progress=False)
    assert again.path == img.path
    assert image.cached_images(img.arch)[0].arch == img.arch


@pytest.mark.e2e
def test_root_snapshot_runs_a_command(img, machine):
    etc = {n.split("/")[1] for n in
           read_newc(gzip.decompress(img.initrd.read_bytes()))
           if n.startswith("etc/")}
    assert machine.run_serial_cmd("ls -A /etc | wc -l").strip() == \
        str(len(etc))
    assert machine.run_serial_cmd("uname -m") == \
        ("aarch64" if img.arch == "aarch64" else "armv7l")
    status, out = machine.run_serial_cmd_status("id -u user; false")
    assert (status, out) == (1, "1000")
    assert machine.revert("root") > 0
    assert machine.run_serial_cmd("echo again") == "again"


@pytest.mark.e2e
def test_doorbell_page_is_not_kernel_ram(img, machine):
    db = img.profile["guest"]["doorbell_phys"]
    iomem = machine.run_serial_cmd("cat /proc/iomem", check=True)
    ram = [tuple(int(x, 16) for x in line.split(" : ")[0].split("-"))
           for line in iomem.splitlines()
           if line.endswith(" : System RAM") and not line.startswith(" ")]
    assert ram and ram[0][0] == machine.ram_base
    assert all(e < db or s > db + 4095 for s, e in ram)
    # The page is in the RAM file, at its last page, and nothing (kernel,
    # firmware, QEMU's DTB) has written to it by the root snapshot.
    assert machine.read_phys(db, 4096) == bytes(4096)
    with pytest.raises(ValueError):
        machine.read_phys(machine.ram_base - 1, 1)


@pytest.mark.e2e
def test_task_list_through_ram(img, machine):
    pid = int(machine.run_serial_cmd(
        "sleep 1000 >/dev/null & echo $!", check=True))
    _wait_comm(machine, pid, "sleep")
    v2p = _virt_to_phys(img)
    size, fmt = _word(img)
    t = img.profile["kernel"]["offsets"]["task_struct"]
    k = img.profile["kernel"]

    def word(v):
        return struct.unpack(fmt, machine.read_phys(v2p(v), size))[0]

    init = int(k["symbols"]["init_task"], 16)
    head = init + t["tasks"]
    seen = {}
    node = word(head)
    for _ in range(1000):
        if node == head:
            break
        task = node - t["tasks"]
        p = struct.unpack("<i", machine.read_phys(v2p(task + t["pid"]),
                                                  4))[0]
        comm = machine.read_phys(v2p(task + t["comm"]), 16).split(b"\0")[0]
        seen[p] = comm
        node = word(node)
    assert seen.get(1) == b"init"
    assert seen.get(pid) == b"sleep"


def _spinner(machine):
    """Start a shell script that loops making system calls; its pid."""
    machine.run_serial_cmd(
        "printf '#!/bin/sh\\nwhile :; do echo x > /dev/null; done\\n' "
        "> /tmp/gpmspin; chmod 755 /tmp/gpmspin", check=True)
    pid = int(machine.run_serial_cmd("/tmp/gpmspin & echo $!", check=True))
    _wait_comm(machine, pid, "gpmspin")
    return pid


@pytest.mark.e2e
def test_current_task_recipe_through_the_gdbstub(img, machine):
    k = img.profile["kernel"]
    cur = k["current"]
    t = k["offsets"]["task_struct"]
    size, fmt = _word(img)
    mask = 2**(8 * size) - 1
    v2p = _virt_to_phys(img)
    spin_pid = _spinner(machine)
    kname = "__arm64_sys_dup3" if img.arch == "aarch64" else "sys_dup2"
    kfunc = int(machine.run_serial_cmd(
        f"awk '$3 == \"{kname}\" {{print $1}}' /proc/kallsyms", check=True),
        16)
    time.sleep(0.3)
    g = GdbRemote(machine.gdb_socket_path)
    try:
        g.cmd("?")
        regs = g.load_target()
        for name in (cur["percpu_base_register"], cur["kernel_register"]):
            assert name in regs, f"the gdbstub has no {name}"

        def task_pid_comm(task):
            p = struct.unpack("<i", machine.read_phys(v2p(task + t["pid"]),
                                                      4))[0]
            c = machine.read_phys(v2p(task + t["comm"]), 16).split(b"\0")[0]
            return p, c

        def percpu_current():
            base = g.read_reg(cur["percpu_base_register"])
            slot = (int(k["symbols"][cur["percpu_symbol"]], 16) + base) & mask
            return struct.unpack(fmt, machine.read_phys(v2p(slot), size))[0]

        def user_mode():
            psr = g.read_reg("cpsr")
            return (psr >> 2) & 3 == 0 if img.arch == "aarch64" else \
                psr & 0x1F == 0x10

        # 1. Stopped in user mode: the per-CPU rule names the spinner.
        hits = 0
        for _ in range(200):
            g.cont()
            time.sleep(0.02)
            g.stop()
            if user_mode():
                assert task_pid_comm(percpu_current()) == \
                    (spin_pid, b"gpmspin")
                hits += 1
                if hits == 3:
                    break
        assert hits == 3, "never stopped in the spinner's user mode"

        # 2. At the syscall entry breakpoint (kernel mode, entry code not
        #    run yet): the per-CPU rule; it is a system call.
        entry = int(k["syscall_breakpoint"], 16)
        g.set_bp(entry)
        found = False
        for _ in range(50):
            g.cont()
            g.reply()
            assert g.read_reg("pc") == entry
            assert not user_mode()
            pid, comm = task_pid_comm(percpu_current())
            if img.arch == "aarch64":
                if g.read_reg("ESR_EL1") >> 26 != 0x15:
                    continue                  # not an SVC
            if pid == spin_pid:
                assert comm == b"gpmspin"
                found = True
                break
        g.clear_bp(entry)
        assert found

        # 3. Deeper in the kernel: the register rule agrees.
        g.set_bp(kfunc)
        for _ in range(50):
            g.cont()
            g.reply()
            task = g.read_reg(cur["kernel_register"])
            assert task == percpu_current()
            if task_pid_comm(task) == (spin_pid, b"gpmspin"):
                break
        else:
            pytest.fail(f"{kname} never ran in the spinner")
        g.clear_bp(kfunc)
        assert g.cmd("D") == "OK"
    finally:
        g.close()
