"""Tests of pandagpm.kernelinfo: osi_linux kernel profiles from BTF.

The unit tests build BTF by hand, so every expected value below is a
fact of the hand-made kernel, written out independently of the module's
own tables.  The tests marked e2e check the generic image's group against
the image profile (BTF offsets cross-checked at build time, addresses from
the guest's /proc/kallsyms), and then walk a live guest's kernel the way
osi_linux does, using nothing but the group, and compare with the guest's
own ``ps`` and ``/proc``.
"""

import json
import lzma
import struct

import pytest

from pandagpm import btf, image, kernelinfo
from pandagpm.kernelinfo import KernelInfoError


# -- a hand-made kernel ------------------------------------------------------

class BtfBuilder:
    """Writes little-endian BTF: ints, void pointers, arrays, structs."""

    def __init__(self):
        self.strtab = b"\0"
        self.recs = []
        self.long = self.int("long int", 8)
        self.char = self.int("char", 1)
        self.ptr = self._add(self._hdr(0, btf.KIND_PTR, 0, 0))

    def _name(self, name):
        if not name:
            return 0
        off = len(self.strtab)
        self.strtab += name.encode() + b"\0"
        return off

    @staticmethod
    def _hdr(name_off, kind, vlen, size_or_type):
        return struct.pack("<III", name_off, (kind << 24) | vlen,
                           size_or_type)

    def _add(self, rec):
        self.recs.append(rec)
        return len(self.recs)

    def int(self, name, size):
        return self._add(self._hdr(self._name(name), btf.KIND_INT, 0, size)
                         + struct.pack("<I", size * 8))

    def array(self, elem, n):
        return self._add(self._hdr(0, btf.KIND_ARRAY, 0, 0)
                         + struct.pack("<III", elem, self.long, n))

    def struct(self, name, size, members):
        """members: {name: byte offset} (a long) or {name: (offset, type)}."""
        body = b""
        for mname, spec in members.items():
            off, tid = spec if isinstance(spec, tuple) else (spec, self.long)
            body += struct.pack("<III", self._name(mname), tid, off * 8)
        return self._add(self._hdr(self._name(name), btf.KIND_STRUCT,
                                   len(members), size) + body)

    def blob(self):
        types = b"".join(self.recs)
        hdr = struct.pack("<HBBIIIII", btf.BTF_MAGIC, 1, 0, 24, 0,
                          len(types), len(types), len(self.strtab))
        return hdr + types + self.strtab


def make_kernel_btf(*, maple_tree=True, pcpu_hot=False, mount=True,
                    notifiers=True):
    """BTF of a small imaginary kernel shaped like 6.1 (no mm->mmap and no
    vma->vm_next unless ``maple_tree`` is False)."""
    b = BtfBuilder()
    comm = b.array(b.char, 16)
    b.struct("task_struct", 9792, {
        "stack": (32, b.ptr), "tasks": 2192, "mm": (2272, b.ptr),
        "pid": 2416, "tgid": 2420, "real_parent": (2432, b.ptr),
        "parent": (2440, b.ptr), "group_leader": (2480, b.ptr),
        "thread_group": 2592, "start_time": 2776,
        "real_cred": (2952, b.ptr), "cred": (2960, b.ptr),
        "comm": (2976, comm), "files": (3048, b.ptr)})
    b.struct("cred", 176, {"uid": 8, "gid": 12, "euid": 24, "egid": 28})
    mm = {"pgd": 72, "start_brk": 288, "brk": 296, "start_stack": 304,
          "arg_start": 312}
    vma = {"vm_start": 0, "vm_end": 8, "vm_mm": 16, "vm_flags": 32,
           "vm_file": 112}
    if not maple_tree:
        mm["mmap"] = 0
        vma["vm_next"] = 40
    if notifiers:
        mm["notifier_subscriptions"] = (952, b.ptr)
    b.struct("mm_struct", 1096, mm)
    b.struct("vm_area_struct", 152, vma)
    path = b.struct("path", 16, {"mnt": (0, b.ptr), "dentry": (8, b.ptr)})
    b.struct("file", 232, {"f_path": (16, path), "f_pos": 104})
    b.struct("files_struct", 704, {"fdt": (32, b.ptr), "fdtab": 40})
    b.struct("fdtable", 56, {"max_fds": 0, "fd": (8, b.ptr)})
    qstr = b.struct("qstr", 16, {"hash_len": 0, "name": (8, b.ptr)})
    b.struct("dentry", 192, {"d_parent": (24, b.ptr), "d_name": (32, qstr),
                             "d_iname": 56, "d_op": (96, b.ptr)})
    b.struct("dentry_operations", 128, {"d_dname": (72, b.ptr)})
    if mount:
        vfsmount = b.struct("vfsmount", 32, {"mnt_root": (0, b.ptr)})
        b.struct("mount", 320, {"mnt_parent": (16, b.ptr),
                                "mnt_mountpoint": (24, b.ptr),
                                "mnt": (32, vfsmount)})
    else:
        # Before Linux 3.3 these were all members of struct vfsmount.
        b.struct("vfsmount", 128, {"mnt_parent": (16, b.ptr),
                                   "mnt_mountpoint": (24, b.ptr),
                                   "mnt_root": (32, b.ptr)})
    if pcpu_hot:
        b.struct("pcpu_hot", 64, {"current_task": (0, b.ptr), "cpu": 16})
    return btf.BTF.from_bytes(b.blob()), b.blob()


SYMS = {"init_task": 0xFFFFFFFF82A1AA40, "__per_cpu_offset": 0xFFFFFFFF8241CB60,
        "current_task": 0x1FB80, "finish_task_switch.isra.0": 0xFFFFFFFF810D1234}
BANNER = ("Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) "
          "(gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils "
          "for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 "
          "(2026-11-26)")

# What osi_linux must read for the hand-made kernel, key by key.
EXPECTED = {
    "name": "6.1.0-57-amd64|#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 "
            "(2026-11-26)|x86_64",
    "version.a": 6, "version.b": 1, "version.c": 192,
    "task.per_cpu_offsets_addr": 0xFFFFFFFF8241CB60,
    "task.per_cpu_offset_0_addr": 0xFFFF88801F400000,
    "task.current_task_addr": 0x1FB80,
    "task.init_addr": 0xFFFFFFFF82A1AA40,
    "task.size": 9792, "task.tasks_offset": 2192, "task.pid_offset": 2416,
    "task.tgid_offset": 2420, "task.group_leader_offset": 2480,
    "task.thread_group_offset": 2592, "task.real_parent_offset": 2432,
    "task.parent_offset": 2440, "task.mm_offset": 2272,
    "task.stack_offset": 32, "task.real_cred_offset": 2952,
    "task.cred_offset": 2960, "task.comm_offset": 2976,
    "task.comm_size": 16, "task.files_offset": 3048,
    "task.start_time_offset": 2776,
    "cred.uid_offset": 8, "cred.gid_offset": 12, "cred.euid_offset": 24,
    "cred.egid_offset": 28,
    # No mm->mmap in 6.1: a pointer that is NULL, so no VMA walk.
    "mm.mmap_offset": 952,
    "mm.size": 1096, "mm.pgd_offset": 72, "mm.arg_start_offset": 312,
    "mm.start_brk_offset": 288, "mm.brk_offset": 296,
    "mm.start_stack_offset": 304,
    "vma.size": 152, "vma.vm_mm_offset": 16, "vma.vm_start_offset": 0,
    "vma.vm_end_offset": 8, "vma.vm_flags_offset": 32,
    "vma.vm_file_offset": 112,
    "fs.f_path_dentry_offset": 24, "fs.f_path_mnt_offset": 16,
    "fs.f_pos_offset": 104, "fs.fdt_offset": 32, "fs.fdtab_offset": 40,
    "fs.fd_offset": 8,
    "qstr.size": 16, "qstr.name_offset": 8,
    "path.d_name_offset": 32, "path.d_iname_offset": 56,
    "path.d_parent_offset": 24, "path.d_op_offset": 96,
    "path.d_dname_offset": 72, "path.mnt_root_offset": 0,
    # struct mount members, relative to its embedded vfsmount (at 32).
    "path.mnt_parent_offset": -16, "path.mnt_mountpoint_offset": -8,
}


def make_ki(**kw):
    b, _blob = make_kernel_btf(**{k: kw.pop(k) for k in
                                  ("maple_tree", "pcpu_hot", "mount",
                                   "notifiers")
                                  if k in kw})
    release, uts, version = kernelinfo.parse_banner(BANNER)
    args = dict(arch="x86_64", release=release, uts_version=uts,
                version=version, per_cpu_offset0=0xFFFF88801F400000)
    symbols = kw.pop("symbols", SYMS)
    args.update(kw)
    return kernelinfo.from_btf(b, symbols, **args)


def test_every_field_osi_linux_reads():
    ki = make_ki()
    assert ki.fields == EXPECTED
    assert set(kernelinfo.REQUIRED_KEYS) <= set(ki.fields)
    assert ki.group == "pandagpm-x86_64-6.1.0-57-amd64:64"
    assert ki.os_string == "linux-64-pandagpm-x86_64-6.1.0-57-amd64"


def test_conf_text_reads_back_as_glib_would():
    ki = make_ki()
    text = ki.to_conf()
    assert text.startswith("[pandagpm-x86_64-6.1.0-57-amd64:64]\n")
    groups = kernelinfo.parse_conf(text)
    assert list(groups) == [ki.group]
    got = groups[ki.group]
    assert got["name"] == EXPECTED["name"]
    # Every number is plain decimal (GLib's integer readers take nothing
    # else); addresses are repeated in hex on comment lines.
    for key, value in EXPECTED.items():
        if key != "name":
            assert got[key] == str(value), key
    assert "#task.init_addr = 0xffffffff82a1aa40" in text.splitlines()
    # The missing optional keys are explained, not set; odd values too.
    assert "vma.vm_next_offset" not in got
    lines = text.splitlines()
    assert any(line.startswith("# no vma.vm_next_offset: ") for line in lines)
    assert any(line.startswith("# mm.mmap_offset: ") and
               "notifier_subscriptions" in line for line in lines)
    assert any(line.startswith("# task.per_cpu_offset_0_addr: as the "
                               "booted guest had it; ") for line in lines)


def test_no_null_pointer_for_the_vma_walk():
    ki = make_ki(notifiers=False)
    assert "mm.mmap_offset" not in ki.fields
    assert "# no mm.mmap_offset: " in ki.to_conf()


def test_pre_maple_tree_kernel_gets_the_vma_list():
    ki = make_ki(maple_tree=False)
    assert ki["mm.mmap_offset"] == 0
    assert "mm.mmap_offset" not in ki.remarks
    assert ki["vma.vm_next_offset"] == 40


def test_switch_task_hook_is_optional():
    assert "task.switch_task_hook_addr" not in make_ki().fields
    ki = make_ki(switch_task_hook=True)
    assert ki["task.switch_task_hook_addr"] == 0xFFFFFFFF810D1234
    with pytest.raises(KernelInfoError, match="finish_task_switch"):
        make_ki(switch_task_hook=True, symbols={
            k: v for k, v in SYMS.items() if "finish" not in k})


def test_current_task_in_pcpu_hot():
    """Linux 6.2+ moved current_task into struct pcpu_hot."""
    syms = {k: v for k, v in SYMS.items() if k != "current_task"}
    syms["pcpu_hot"] = 0x32000
    ki = make_ki(pcpu_hot=True, symbols=syms)
    assert ki["task.current_task_addr"] == 0x32000
    with pytest.raises(KernelInfoError, match="current_task nor pcpu_hot"):
        make_ki(symbols={k: v for k, v in SYMS.items()
                         if k != "current_task"})


def test_old_kernel_without_struct_mount():
    ki = make_ki(mount=False)
    assert ki["path.mnt_parent_offset"] == 16
    assert ki["path.mnt_mountpoint_offset"] == 24
    assert ki["path.mnt_root_offset"] == 32


def test_other_arches_use_init_task():
    ki = make_ki(arch="aarch64")
    assert ki["task.per_cpu_offsets_addr"] == 0
    assert ki["task.current_task_addr"] == SYMS["init_task"]
    assert ki.group.endswith(":64") and ki["name"].endswith("|aarch64")
    assert make_ki(arch="i386").os_string.startswith("linux-32-")
    with pytest.raises(KernelInfoError, match="no kernelinfo rules"):
        make_ki(arch="pdp11")


def test_missing_symbol_or_member_is_named():
    with pytest.raises(KernelInfoError, match="lacks init_task"):
        make_ki(symbols={k: v for k, v in SYMS.items() if k != "init_task"})
    b = BtfBuilder()
    b.struct("task_struct", 100, {"pid": 4})
    with pytest.raises(KernelInfoError, match="task.tasks_offset"):
        kernelinfo.from_btf(btf.BTF.from_bytes(b.blob()), SYMS,
                            arch="x86_64", release="6.1.0", uts_version="#1")


def test_group_names():
    assert kernelinfo.default_group("x86_64", "5.15.0-91-generic") == \
        "pandagpm-x86_64-5.15.0-91-generic:64"
    # PANDA splits -os at the first two separators; the rest is the
    # variant, and osi_linux's default group is "<variant>:<bits>".
    assert kernelinfo.os_string_for("ubuntu:4.4.0-98-generic:32", 32) == \
        "linux-32-ubuntu:4.4.0-98-generic"
    assert kernelinfo.os_string_for("mine", 64) == "linux-64-mine"
    assert make_ki(group="mine").group == "mine"
    for bad in ("a[b]", "two\nlines", " x", ""):
        with pytest.raises(KernelInfoError, match="group name"):
            make_ki(group=bad)


def test_name_survives_glib_unescaping():
    ki = make_ki(uts_version="#1 back\\slash\ttab")
    got = kernelinfo.parse_conf(ki.to_conf())[ki.group]["name"]
    assert got == "6.1.0-57-amd64|#1 back\\slash\ttab|x86_64"


def test_parse_kallsyms():
    text = ("ffffffff81000000 T _text\n"
            "0000000000000000 A fixed_percpu_data\n"
            "000000000001fb80 D current_task\n"
            "ffffffff82a1aa40 D init_task\n"
            "ffffffff82a1aa99 D init_task\n"
            "ffffffffc0001000 t helper\t[e1000]\n"
            "garbage line\n")
    syms = kernelinfo.parse_kallsyms(text)
    assert syms["current_task"] == 0x1FB80
    assert syms["init_task"] == 0xFFFFFFFF82A1AA40  # the first one wins
    assert "helper" not in syms
    with pytest.raises(KernelInfoError, match="kptr_restrict"):
        kernelinfo.parse_kallsyms("0000000000000000 T _text\n"
                                  "0000000000000000 D init_task\n")
    with pytest.raises(KernelInfoError, match="no symbols"):
        kernelinfo.parse_kallsyms("root:x:0:0::/root:/bin/sh\n")


def test_parse_banner_versions():
    assert kernelinfo.parse_banner(BANNER)[2] == (6, 1, 192)
    ubuntu = ("Linux version 5.4.0-42-generic (buildd@lgw01-amd64-023) "
              "(gcc version 7.5.0 (Ubuntu 7.5.0-3ubuntu1~18.04)) "
              "#46~18.04.1-Ubuntu SMP Fri Jul 10 07:21:24 UTC 2020 "
              "(Ubuntu 5.4.0-42.46~18.04.1-generic 5.4.44)")
    release, uts, ver = kernelinfo.parse_banner(ubuntu)
    assert release == "5.4.0-42-generic"
    assert uts.startswith("#46~18.04.1-Ubuntu SMP")
    assert ver == (5, 4, 44)  # what PANDA's own group for it says
    plain = "Linux version 6.6.300 (me@host) (gcc 13) #7 SMP Mon Jan 1"
    assert kernelinfo.parse_banner(plain) == (
        "6.6.300", "#7 SMP Mon Jan 1", (6, 6, 255))  # capped, as the kernel
    with pytest.raises(KernelInfoError, match="banner"):
        kernelinfo.parse_banner("Windows 95")


def minimal_elf(sections):
    """A 64-bit little-endian x86-64 ELF with the given {name: bytes}."""
    names = b"\0.shstrtab\0"
    name_off = {}
    for n in sections:
        name_off[n] = len(names)
        names += n.encode() + b"\0"
    body = bytearray(64)
    body[:16] = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    struct.pack_into("<H", body, 18, 62)  # EM_X86_64
    placed = []
    for n, data in list(sections.items()) + [(".shstrtab", names)]:
        placed.append((n, len(body), len(data)))
        body += data
    body += b"\0" * (-len(body) % 8)
    shoff = len(body)
    sh = [struct.pack("<IIQQQQIIQQ", *([0] * 10))]
    for n, off, size in placed:
        nm = 1 if n == ".shstrtab" else name_off[n]
        sh.append(struct.pack("<IIQQQQIIQQ", nm, 1, 0, 0, off, size, 0, 0,
                              1, 0))
    body += b"".join(sh)
    struct.pack_into("<Q", body, 0x28, shoff)
    struct.pack_into("<HHH", body, 0x3A, 64, len(sh), len(sh) - 1)
    return bytes(body)


@pytest.fixture
def kernel_files(tmp_path):
    _b, blob = make_kernel_btf()
    elf = minimal_elf({".rodata": b"\0" + BANNER.encode() + b"\n\0",
                       ".BTF": blob})
    (tmp_path / "vmlinux").write_bytes(elf)
    # A fake bzImage: the xz-compressed vmlinux somewhere inside.
    (tmp_path / "vmlinuz").write_bytes(
        b"MZ" + b"\0" * 600 + lzma.compress(elf, format=lzma.FORMAT_XZ))
    (tmp_path / "btf").write_bytes(blob)
    (tmp_path / "kallsyms").write_text("".join(
        f"{v:016x} D {k}\n" for k, v in SYMS.items()))
    (tmp_path / "version").write_text(BANNER + "\n")
    return tmp_path


@pytest.mark.parametrize("kernel", ["vmlinux", "vmlinuz"])
def test_from_files(kernel_files, kernel):
    ki = kernelinfo.from_files(kernel_files / kernel,
                               kernel_files / "kallsyms",
                               per_cpu_offset0=0xFFFF88801F400000)
    assert ki.fields == EXPECTED
    assert ki.arch == "x86_64"


def test_from_raw_btf_needs_the_banner(kernel_files):
    with pytest.raises(KernelInfoError, match="/proc/version"):
        kernelinfo.from_files(kernel_files / "btf", kernel_files / "kallsyms")
    ki = kernelinfo.from_files(kernel_files / "btf", kernel_files / "kallsyms",
                               banner=BANNER)
    assert ki["task.pid_offset"] == 2416
    # Unknown __per_cpu_offset[0]: osi_linux reads it through the table.
    assert ki["task.per_cpu_offset_0_addr"] == 0
    assert ki["task.per_cpu_offsets_addr"] == 0xFFFFFFFF8241CB60
    assert ki.remarks["task.per_cpu_offset_0_addr"].startswith("unknown; ")


def test_command_line(kernel_files, capsys):
    rc = image.main(["kernelinfo", str(kernel_files / "vmlinuz"),
                     str(kernel_files / "kallsyms"), "--group", "mykernel",
                     "--per-cpu-offset0", "0xffff88801f400000"])
    out, err = capsys.readouterr()
    assert rc == 0
    got = kernelinfo.parse_conf(out)["mykernel"]
    assert {k: v for k, v in got.items()} == {
        k: str(v) for k, v in EXPECTED.items()}
    assert "-os: linux-64-mykernel" in err
    out_file = kernel_files / "k.conf"
    assert image.main(["kernelinfo", str(kernel_files / "btf"),
                       str(kernel_files / "kallsyms"), "--banner",
                       str(kernel_files / "version"), "--kernel-version",
                       "6.1.7", "-o", str(out_file)]) == 0
    got = kernelinfo.parse_conf(out_file.read_text())
    got = got["pandagpm-x86_64-6.1.0-57-amd64:64"]
    assert got["version.c"] == "7"
    assert got["task.per_cpu_offsets_addr"] == str(0xFFFFFFFF8241CB60)
    capsys.readouterr()
    assert image.main(["kernelinfo", str(kernel_files / "version"),
                       str(kernel_files / "kallsyms")]) == 1
    assert "error:" in capsys.readouterr().err


# -- the generic image (e2e: the first call builds and boots it) ----------

@pytest.fixture(scope="module")
def img():
    return image.get_image("x86_64", progress=True)


@pytest.fixture(scope="module")
def ki(img):
    return img.kernelinfo()


@pytest.mark.e2e
def test_image_group_matches_the_profile(img, ki):
    """The group against what the image build measured: BTF offsets that
    read init_task.comm as swapper/0 through guest RAM, and addresses from
    the guest's /proc/kallsyms."""
    k = img.profile["kernel"]
    t = k["offsets"]["task_struct"]
    for key, member in (("pid", "pid"), ("tgid", "tgid"), ("comm", "comm"),
                        ("mm", "mm"), ("cred", "cred"),
                        ("real_cred", "real_cred"), ("tasks", "tasks"),
                        ("real_parent", "real_parent"), ("parent", "parent"),
                        ("group_leader", "group_leader")):
        assert ki[f"task.{key}_offset"] == t[member], key
    assert ki["task.size"] == t["sizeof"]
    assert ki["task.comm_size"] == t["comm_size"]
    c = k["offsets"]["cred"]
    for key in ("uid", "gid", "euid", "egid"):
        assert ki[f"cred.{key}_offset"] == c[key]
    m = k["offsets"]["mm_struct"]
    assert ki["mm.pgd_offset"] == m["pgd"]
    assert ki["mm.arg_start_offset"] == m["arg_start"]
    assert ki["mm.start_stack_offset"] == m["start_stack"]
    assert ki["task.init_addr"] == img.symbol("init_task")
    assert ki["task.per_cpu_offsets_addr"] == img.symbol("__per_cpu_offset")
    assert ki["task.current_task_addr"] == img.symbol("current_task")
    assert ki["task.per_cpu_offset_0_addr"] == int(k["per_cpu_offset0"], 16)
    # uname -r and /proc/version, as the guest printed them.
    release, version, machine = ki["name"].split("|")
    assert release == k["uname_r"]
    assert k["version"].endswith(version)
    assert machine == "x86_64"
    assert (ki["version.a"], ki["version.b"]) == (6, 1)
    assert f"Debian 6.1.{ki['version.c']}-" in version


@pytest.mark.e2e
def test_image_exposes_file_group_and_os(img, ki):
    path = img.kernelinfo_path
    assert path.is_file()
    groups = kernelinfo.parse_conf(path.read_text())
    assert groups == kernelinfo.parse_conf(ki.to_conf())
    assert img.kernelinfo_group in groups
    assert img.kernelinfo_group == f"pandagpm-x86_64-{ki['name'].split('|')[0]}:64"
    # What PANDA's -os switch accepts for a 64-bit Linux, and osi_linux's
    # default group for it.
    assert img.os_string == "linux-64-" + img.kernelinfo_group[:-3]
    assert img.osi_linux_args() == {"kconf_file": str(path),
                                    "kconf_group": img.kernelinfo_group}


@pytest.mark.e2e
def test_image_built_without_kernelinfo_gets_one(img, tmp_path, monkeypatch):
    monkeypatch.setenv("PANDAGPM_CACHE", str(tmp_path / "cache"))
    old = tmp_path / "old-image"
    old.mkdir()
    profile = dict(img.profile)
    profile.pop("osi_linux", None)
    (old / "profile.json").write_text(json.dumps(profile))
    (old / "vmlinuz").symlink_to(img.kernel)
    old_img = image.ImageInfo.load(old)
    assert old_img.kernelinfo_group == img.kernelinfo_group
    assert old_img.os_string == img.os_string
    path = old_img.kernelinfo_path
    assert path == old / image.KERNELINFO_FILE
    assert kernelinfo.parse_conf(path.read_text()) == \
        kernelinfo.parse_conf(img.kernelinfo_path.read_text())
    assert old_img.kernelinfo_path == path  # made once
    # A file made by an older pandagpm.kernelinfo is made again.
    path.write_text(f"[{img.kernelinfo_group}]\ntask.pid_offset = 1\n")
    assert kernelinfo.is_current(old_img.kernelinfo_path.read_text())


@pytest.mark.e2e
def test_info_command_shows_it(img, capsys):
    assert image.main(["info"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["osi_linux"]["kconf_group"] == img.kernelinfo_group
    assert shown["osi_linux"]["os"] == img.os_string
    assert image.main(["info", "--kernelinfo"]) == 0
    assert f"[{img.kernelinfo_group}]" in capsys.readouterr().out


@pytest.mark.e2e
def test_command_line_on_the_real_kernel(img, ki, tmp_path, capsys):
    """A user's view: the image's vmlinuz and a kallsyms file holding the
    addresses the guest printed give the image's own group."""
    ks = tmp_path / "kallsyms"
    ks.write_text("".join(f"{v[2:]:>016} T {n}\n" for n, v in
                          img.profile["kernel"]["symbols"].items()))
    assert image.main(["kernelinfo", str(img.kernel), str(ks),
                       "--per-cpu-offset0",
                       img.profile["kernel"]["per_cpu_offset0"]]) == 0
    got = kernelinfo.parse_conf(capsys.readouterr().out)
    assert got[img.kernelinfo_group] == \
        kernelinfo.parse_conf(ki.to_conf())[img.kernelinfo_group]


# -- a live guest, walked as osi_linux walks it ------------------------------

class GuestKernel:
    """Reads a paused guest's kernel memory through the shared RAM file,
    knowing only the kernelinfo group and the kernel's virtual layout."""

    def __init__(self, machine, img, ki):
        self.m = machine
        self.ki = ki
        k = img.profile["kernel"]
        self.page_offset = int(k["page_offset_base"], 16)
        self.kmap = int(k["start_kernel_map"], 16)

    def phys(self, virt):
        return virt - self.kmap if virt >= self.kmap else \
            virt - self.page_offset

    def read(self, virt, n):
        return self.m.read_phys(self.phys(virt), n)

    def u64(self, virt):
        return struct.unpack("<Q", self.read(virt, 8))[0]

    def s32(self, virt):
        return struct.unpack("<i", self.read(virt, 4))[0]

    def user_read(self, pgd, virt, n):
        """Read user memory through the process's page tables (4-level)."""
        table = self.phys(pgd)
        for shift in (39, 30, 21, 12):
            entry = struct.unpack("<Q", self.m.read_phys(
                table + ((virt >> shift) & 0x1FF) * 8, 8))[0]
            assert entry & 1, f"{virt:#x} is not mapped"
            frame = entry & 0x000FFFFFFFFFF000
            if shift in (30, 21) and entry & 0x80:  # a huge page
                return self.m.read_phys(
                    (frame & ~((1 << shift) - 1)) + (virt & ((1 << shift) - 1)),
                    n)
            table = frame
        return self.m.read_phys(table + (virt & 0xFFF), n)

    def qstr_name(self, dentry):
        ki = self.ki
        name = self.u64(dentry + ki["path.d_name_offset"]
                        + ki["qstr.name_offset"])
        return self.read(name, 64).split(b"\0")[0].decode()

    def processes(self):
        """{pid: task} over init_task's task list, as osi_linux's
        process list does."""
        ki = self.ki
        init = ki["task.init_addr"]
        found, t = {}, init
        for _ in range(2000):
            found[self.s32(t + ki["task.pid_offset"])] = t
            t = self.u64(t + ki["task.tasks_offset"]) - ki["task.tasks_offset"]
            if t == init:
                return found
        raise AssertionError("the task list does not come back to init_task")

    def describe(self, t):
        ki = self.ki
        comm = self.read(t + ki["task.comm_offset"], ki["task.comm_size"])
        parent = self.u64(t + ki["task.real_parent_offset"])
        cred = self.u64(t + ki["task.cred_offset"])
        return {"ppid": self.s32(parent + ki["task.tgid_offset"]),
                "comm": comm.split(b"\0")[0].decode(),
                "euid": self.s32(cred + ki["cred.euid_offset"])}


@pytest.mark.e2e
def test_live_guest_matches_ps(img, ki):
    """The guest's ps, /proc and argv against a walk that uses only the
    kernelinfo group: every task, parent, name and uid; the current task;
    the shell's stdin through files/fdtable/file/dentry/mount; a process's
    argv through mm.pgd and mm.arg_start."""
    from pandagpm.qemu import QemuMachine

    with QemuMachine(img) as m:
        m.run_serial_cmd("su user -c 'exec sleep 100 1' </dev/null "
                         ">/dev/null 2>&1 &")
        sleeper = int(m.run_serial_cmd("sleep 0.3; pidof sleep"))
        shell = int(m.run_serial_cmd("echo $$"))
        ps = m.run_serial_cmd("ps -o pid,ppid,user,comm")
        m.qmp("stop")
        try:
            g = GuestKernel(m, img, ki)
            procs = g.processes()
            seen = {pid: g.describe(t) for pid, t in procs.items()}
            # The current task, the way osi_linux finds it on x86_64:
            # __per_cpu_offset[0], read at its first query, + current_task.
            base = g.u64(ki["task.per_cpu_offsets_addr"])
            assert base == ki["task.per_cpu_offset_0_addr"]
            current = g.u64(base + ki["task.current_task_addr"])
            sh = procs[shell]
            fdt = g.u64(g.u64(sh + ki["task.files_offset"])
                        + ki["fs.fdt_offset"])
            file0 = g.u64(g.u64(fdt + ki["fs.fd_offset"]))
            dentry = g.u64(file0 + ki["fs.f_path_dentry_offset"])
            vfsmnt = g.u64(file0 + ki["fs.f_path_mnt_offset"])
            stdin = g.qstr_name(dentry)
            parent_dir = g.u64(dentry + ki["path.d_parent_offset"])
            mnt_root = g.u64(vfsmnt + ki["path.mnt_root_offset"])
            mountpoint = g.qstr_name(g.u64(
                vfsmnt + ki["path.mnt_mountpoint_offset"]))
            iname = g.read(dentry + ki["path.d_iname_offset"], 32)
            st = procs[sleeper]
            mm = g.u64(st + ki["task.mm_offset"])
            pgd = g.u64(mm + ki["mm.pgd_offset"])
            argv = g.user_read(pgd, g.u64(mm + ki["mm.arg_start_offset"]),
                               16)
            stack = g.u64(st + ki["task.stack_offset"])
            leader = g.u64(st + ki["task.group_leader_offset"])
            tg = st + ki["task.thread_group_offset"]
            tg_next = g.u64(tg)
            start_times = [g.u64(procs[p] + ki["task.start_time_offset"])
                           for p in (1, sleeper)]
        finally:
            m.qmp("cont")

    rows = [line.split() for line in ps.splitlines()[1:]]
    want = {int(r[0]): {"ppid": int(r[1]), "user": r[2], "comm": r[3]}
            for r in rows if r[3] != "ps"}
    assert len(want) > 20
    for pid, w in want.items():
        if w["comm"].startswith("kworker"):
            continue  # kernel workers come and go
        assert pid in seen, f"ps shows {pid} {w}, the walk does not"
        assert seen[pid]["comm"] == w["comm"][:15], pid
        assert seen[pid]["ppid"] == w["ppid"], pid
        assert seen[pid]["euid"] == (1000 if w["user"] == "user" else 0), pid
    assert seen[0]["comm"] == "swapper/0"
    assert seen[sleeper] == {"ppid": seen[sleeper]["ppid"], "comm": "sleep",
                             "euid": 1000}
    assert current in procs.values()
    # The shell's stdin is /dev/ttyS0, on the devtmpfs mounted at /dev.
    assert stdin == "ttyS0"
    assert iname.split(b"\0")[0] == b"ttyS0"
    assert parent_dir == mnt_root
    assert mountpoint == "dev"
    assert argv.startswith(b"sleep\x00100\x001\x00")
    assert stack % 0x4000 == 0 and stack >= 0xFFFF800000000000
    assert leader == st and tg_next == tg  # one thread, its own leader
    assert start_times[0] < start_times[1]
