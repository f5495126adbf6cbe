"""Unit tests of pandagpm.btf on a hand-made BTF blob (no kernel needed).

The real kernel's BTF is checked in test_image.py.
"""

import struct

import pytest

from pandagpm import btf


def make_blob(bo="<"):
    """A BTF blob describing, in C terms:

        typedef int pid_t;
        struct inner { int a; int b; };
        struct outer {
            const pid_t pid;               // bits 0..31
            union { struct inner x; };     // anonymous, at byte 8
            int flags:3;                   // bitfield at bit 160
            int comm[4];                   // at byte 24
        };
        struct outer *p;
    """
    names = [b"", b"int", b"pid_t", b"inner", b"a", b"b", b"x", b"outer",
             b"pid", b"flags", b"comm"]
    strtab = b""
    off = {}
    for n in names:
        off[n] = len(strtab)
        strtab += n + b"\0"

    def info(kind, vlen=0, kflag=0):
        return (kflag << 31) | (kind << 24) | vlen

    t = b""
    # 1: int, 4 bytes, 32 bits
    t += struct.pack(bo + "III", off[b"int"], info(btf.KIND_INT), 4)
    t += struct.pack(bo + "I", 32)
    # 2: typedef pid_t -> 1
    t += struct.pack(bo + "III", off[b"pid_t"], info(btf.KIND_TYPEDEF), 1)
    # 3: const -> 2
    t += struct.pack(bo + "III", 0, info(btf.KIND_CONST), 2)
    # 4: struct inner
    t += struct.pack(bo + "III", off[b"inner"], info(btf.KIND_STRUCT, 2), 8)
    t += struct.pack(bo + "III", off[b"a"], 1, 0)
    t += struct.pack(bo + "III", off[b"b"], 1, 32)
    # 5: anonymous union { struct inner x; }
    t += struct.pack(bo + "III", 0, info(btf.KIND_UNION, 1), 8)
    t += struct.pack(bo + "III", off[b"x"], 4, 0)
    # 6: struct outer, kind_flag set (bitfield encoding)
    t += struct.pack(bo + "III", off[b"outer"],
                     info(btf.KIND_STRUCT, 4, 1), 40)
    t += struct.pack(bo + "III", off[b"pid"], 3, 0)
    t += struct.pack(bo + "III", 0, 5, 64)
    t += struct.pack(bo + "III", off[b"flags"], 1, (3 << 24) | 160)
    t += struct.pack(bo + "III", off[b"comm"], 7, 192)
    # 7: int[4]
    t += struct.pack(bo + "III", 0, info(btf.KIND_ARRAY), 0)
    t += struct.pack(bo + "III", 1, 1, 4)
    # 8: pointer to outer
    t += struct.pack(bo + "III", 0, info(btf.KIND_PTR), 6)
    # 9: a forward declaration of outer, which find() must not prefer
    t += struct.pack(bo + "III", off[b"outer"], info(btf.KIND_FWD), 0)

    hdr = struct.pack(bo + "HBBIIIII", btf.BTF_MAGIC, 1, 0, 24, 0, len(t),
                      len(t), len(strtab))
    return hdr + t + strtab


@pytest.mark.parametrize("bo", ["<", ">"])
def test_offsets(bo):
    b = btf.BTF.from_bytes(make_blob(bo))
    assert len(b) == 9
    assert b.byteorder == ("little" if bo == "<" else "big")
    assert b.member_offset("outer", "pid") == 0
    # Members of anonymous unions are found as C finds them.
    assert b.member_offset("outer", "x") == 8
    assert b.member_offset("outer", "x.b") == 12
    assert b.member_offset("inner", "b") == 4
    assert b.member_offset("outer", "comm") == 24
    assert b.member_size("outer", "comm") == 16
    # typedef and const are looked through.
    assert b.member_size("outer", "pid") == 4
    assert b.resolve(3).name == "int"
    assert b.sizeof(6) == 40
    assert b.sizeof(8) == 8


def test_bitfield_and_missing_members():
    b = btf.BTF.from_bytes(make_blob())
    bits, m = b.member("outer", "flags")
    assert (bits, m.bitfield_size) == (160, 3)
    with pytest.raises(btf.BTFError, match="bitfield"):
        b.member_offset("outer", "flags")
    with pytest.raises(btf.BTFError, match="no member 'nope'"):
        b.member_offset("outer", "nope")
    with pytest.raises(btf.BTFError, match="no struct named"):
        b.find("missing")
    with pytest.raises(btf.BTFError, match="not inside a struct"):
        b.member_offset("outer", "pid.deeper")


def test_malformed():
    blob = make_blob()
    with pytest.raises(btf.BTFError, match="magic"):
        btf.BTF.from_bytes(b"\0" * 40)
    with pytest.raises(btf.BTFError):
        btf.BTF.from_bytes(blob[:30])
    with pytest.raises(btf.BTFError):
        btf.BTF.from_bytes(blob[:-5])  # the string section is cut


def test_elf_section(tmp_path):
    """elf_section() finds a section by name in a minimal 64-bit ELF."""
    payload = make_blob()
    shstr = b"\0.shstrtab\0.BTF\0"
    data_off = 64
    shstr_off = data_off + len(payload)
    shoff = (shstr_off + len(shstr) + 7) & ~7
    ehdr = bytearray(64)
    ehdr[:16] = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    struct.pack_into("<Q", ehdr, 0x28, shoff)
    struct.pack_into("<HHH", ehdr, 0x3A, 64, 3, 1)
    sh = [struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
          struct.pack("<IIQQQQIIQQ", 1, 3, 0, 0, shstr_off, len(shstr),
                      0, 0, 1, 0),
          struct.pack("<IIQQQQIIQQ", 11, 1, 0, 0, data_off, len(payload),
                      0, 0, 1, 0)]
    body = bytes(ehdr) + payload + shstr
    body += b"\0" * (shoff - len(body)) + b"".join(sh)
    path = tmp_path / "mini.elf"
    path.write_bytes(body)
    assert btf.elf_section(path, ".BTF") == payload
    assert btf.load(path).member_offset("outer", "comm") == 24
    with pytest.raises(btf.BTFError, match="no .nope section"):
        btf.elf_section(path, ".nope")
    raw = tmp_path / "raw.btf"
    raw.write_bytes(payload)
    assert len(btf.load(raw)) == 9
