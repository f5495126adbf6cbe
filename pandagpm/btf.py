"""Minimal reader for the Linux kernel's BTF type information.

BTF ("BPF Type Format") is the compact type description that kernels built
with ``CONFIG_DEBUG_INFO_BTF`` carry in the ``.BTF`` section of ``vmlinux``
(and expose at ``/sys/kernel/btf/vmlinux``).  pandagpm only needs structure
member offsets (``task_struct.pid``, ``cred.uid`` ...), so this module reads
the header, the type section and the string section, and answers
"where is member X of struct Y" questions.  It follows typedefs and
qualifiers and looks through anonymous struct/union members.

Public API:

* :class:`BTF` -- parsed type information; build it with
  :meth:`BTF.from_bytes`, :meth:`BTF.from_elf` or :func:`load`.
* :meth:`BTF.member_offset` -- byte offset of a (dotted) member path.
* :func:`elf_section` -- the bytes of a named section of an ELF file.
* :exc:`BTFError` -- raised for malformed input and failed look-ups.

The format is documented in the kernel tree at
``Documentation/bpf/btf.rst``.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field

__all__ = ["BTF", "BTFError", "Member", "Type", "elf_section",
           "elf_section_from_bytes", "load"]

BTF_MAGIC = 0xEB9F

# Type kinds, numbered as in include/uapi/linux/btf.h.
KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_FWD = 7
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_VAR = 14
KIND_DATASEC = 15
KIND_FLOAT = 16
KIND_DECL_TAG = 17
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19

KIND_NAMES = {
    0: "void", KIND_INT: "int", KIND_PTR: "ptr", KIND_ARRAY: "array",
    KIND_STRUCT: "struct", KIND_UNION: "union", KIND_ENUM: "enum",
    KIND_FWD: "fwd", KIND_TYPEDEF: "typedef", KIND_VOLATILE: "volatile",
    KIND_CONST: "const", KIND_RESTRICT: "restrict", KIND_FUNC: "func",
    KIND_FUNC_PROTO: "func_proto", KIND_VAR: "var", KIND_DATASEC: "datasec",
    KIND_FLOAT: "float", KIND_DECL_TAG: "decl_tag",
    KIND_TYPE_TAG: "type_tag", KIND_ENUM64: "enum64",
}

# Kinds that only wrap another type and can be looked through.
_MODIFIERS = {KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT,
              KIND_TYPE_TAG}


class BTFError(Exception):
    """Malformed BTF data, or a type or member that does not exist."""


@dataclass(frozen=True)
class Member:
    """One member of a struct or union.

    ``bit_offset`` counts from the start of the enclosing type;
    ``bitfield_size`` is 0 for ordinary (non-bitfield) members.
    """

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0


@dataclass
class Type:
    """One BTF type record.

    ``size_or_type`` is the byte size for ints, structs, unions, enums and
    floats, and the referenced type id for pointers, typedefs, qualifiers,
    functions and variables.  ``members`` is filled for structs and
    unions; ``nelems``/``elem_type`` for arrays.
    """

    id: int
    kind: int
    name: str
    size_or_type: int
    vlen: int
    kind_flag: bool
    members: list[Member] = field(default_factory=list)
    elem_type: int = 0
    nelems: int = 0
    #: For a datasec: ``(var type id, byte offset, byte size)`` per variable.
    secinfo: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, f"kind{self.kind}")


class BTF:
    """Parsed BTF: a list of types indexed by type id (id 0 is void)."""

    def __init__(self, types: list[Type | None], byteorder: str):
        self.types = types
        self.byteorder = byteorder
        self._by_name: dict[tuple[int, str], list[int]] | None = None

    # -- construction ------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes) -> "BTF":
        """Parse a raw BTF blob (the ``.BTF`` section or the sysfs file)."""
        if len(data) < 24:
            raise BTFError("BTF data is too short for a header")
        if struct.unpack_from("<H", data, 0)[0] == BTF_MAGIC:
            bo = "<"
        elif struct.unpack_from(">H", data, 0)[0] == BTF_MAGIC:
            bo = ">"
        else:
            raise BTFError("bad BTF magic %r" % data[:2])
        (_magic, version, _flags, hdr_len, type_off, type_len, str_off,
         str_len) = struct.unpack_from(bo + "HBBIIIII", data, 0)
        if version != 1:
            raise BTFError(f"unsupported BTF version {version}")
        base = hdr_len
        if (base + type_off + type_len > len(data)
                or base + str_off + str_len > len(data)):
            raise BTFError("BTF sections run past the end of the data")
        strings = data[base + str_off:base + str_off + str_len]
        tdata = data[base + type_off:base + type_off + type_len]
        return cls(_parse_types(tdata, strings, bo),
                   "little" if bo == "<" else "big")

    @classmethod
    def from_elf(cls, path: str | os.PathLike) -> "BTF":
        """Parse the ``.BTF`` section of an ELF file such as vmlinux."""
        return cls.from_bytes(elf_section(path, ".BTF"))

    # -- look-ups ----------------------------------------------------------

    def __len__(self) -> int:
        return len(self.types) - 1

    def __getitem__(self, type_id: int) -> Type:
        if type_id <= 0 or type_id >= len(self.types):
            raise BTFError(f"no BTF type with id {type_id}")
        return self.types[type_id]  # type: ignore[return-value]

    def find(self, name: str, kind: int = KIND_STRUCT) -> Type:
        """Return the type called ``name`` of the given kind.

        When several types share the name (a forward declaration and the
        definition, say), the one with the most members wins.
        """
        if self._by_name is None:
            index: dict[tuple[int, str], list[int]] = {}
            for t in self.types[1:]:
                if t is not None and t.name:
                    index.setdefault((t.kind, t.name), []).append(t.id)
            self._by_name = index
        ids = self._by_name.get((kind, name))
        if not ids:
            raise BTFError(
                f"no {KIND_NAMES.get(kind, kind)} named {name!r} in BTF")
        return max((self[i] for i in ids), key=lambda t: t.vlen)

    def resolve(self, type_id: int) -> Type | None:
        """Follow typedefs and qualifiers; return None for void."""
        seen = 0
        while type_id:
            t = self[type_id]
            if t.kind not in _MODIFIERS:
                return t
            type_id = t.size_or_type
            seen += 1
            if seen > 64:
                raise BTFError("typedef loop in BTF")
        return None

    def sizeof(self, type_id: int) -> int:
        """Byte size of a type (following typedefs, qualifiers, arrays)."""
        t = self.resolve(type_id)
        if t is None:
            raise BTFError("void has no size")
        if t.kind in (KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM,
                      KIND_ENUM64, KIND_FLOAT, KIND_DATASEC):
            return t.size_or_type
        if t.kind == KIND_PTR:
            return 8 if self._pointer_size() == 8 else 4
        if t.kind == KIND_ARRAY:
            return t.nelems * self.sizeof(t.elem_type)
        raise BTFError(f"type {t.id} ({t.kind_name}) has no size")

    def _pointer_size(self) -> int:
        # BTF does not record the pointer size; "long" tells it.
        try:
            return self.find("long int", KIND_INT).size_or_type
        except BTFError:
            return 8

    def member(self, struct_name: str, path: str,
               kind: int = KIND_STRUCT) -> tuple[int, Member]:
        """Find a member by (possibly dotted) path, e.g. ``"uid.val"``.

        Returns ``(bit_offset, member)`` where the bit offset counts from
        the start of ``struct_name``.  Anonymous struct/union members are
        searched transparently, as C does.
        """
        t = self.find(struct_name, kind)
        offset = 0
        member = None
        for part in path.split("."):
            if t is None or t.kind not in (KIND_STRUCT, KIND_UNION):
                raise BTFError(
                    f"{struct_name}.{path}: {part!r} is not inside a struct")
            found = self._find_member(t, part)
            if found is None:
                raise BTFError(f"struct {t.name or '<anon>'} has no member "
                               f"{part!r} (looking up {struct_name}.{path})")
            delta, member = found
            offset += delta
            t = self.resolve(member.type_id)
        assert member is not None
        return offset, member

    def _find_member(self, t: Type, name: str) -> tuple[int, Member] | None:
        for m in t.members:
            if m.name == name:
                return m.bit_offset, m
        for m in t.members:
            if m.name:
                continue
            inner = self.resolve(m.type_id)
            if inner is not None and inner.kind in (KIND_STRUCT, KIND_UNION):
                found = self._find_member(inner, name)
                if found is not None:
                    return m.bit_offset + found[0], found[1]
        return None

    def var_offset(self, section: str, var: str) -> int:
        """Byte offset of variable ``var`` in data section ``section``
        (e.g. a per-CPU variable in ``.data..percpu``)."""
        for t in self.types:
            if t is None or t.kind != KIND_DATASEC or t.name != section:
                continue
            for type_id, off, _size in t.secinfo:
                v = self.types[type_id] if 0 < type_id < len(self.types) \
                    else None
                if v is not None and v.kind == KIND_VAR and v.name == var:
                    return off
            raise BTFError(f"no variable {var} in section {section}")
        raise BTFError(f"no data section {section}")

    def member_offset(self, struct_name: str, path: str) -> int:
        """Byte offset of ``struct_name.path``; raises for bitfields."""
        bits, m = self.member(struct_name, path)
        if m.bitfield_size or bits % 8:
            raise BTFError(f"{struct_name}.{path} is a bitfield")
        return bits // 8

    def member_size(self, struct_name: str, path: str) -> int:
        """Byte size of the member ``struct_name.path``."""
        _bits, m = self.member(struct_name, path)
        return self.sizeof(m.type_id)


def _parse_types(tdata: bytes, strings: bytes, bo: str) -> list[Type | None]:
    def name_at(off: int) -> str:
        if off >= len(strings):
            raise BTFError(f"string offset {off} is out of range")
        end = strings.find(b"\0", off)
        return strings[off:end if end >= 0 else len(strings)].decode(
            "utf-8", "replace")

    u32x3 = struct.Struct(bo + "III")
    types: list[Type | None] = [None]
    pos = 0
    n = len(tdata)
    while pos < n:
        if pos + 12 > n:
            raise BTFError("truncated BTF type record")
        name_off, info, size_or_type = u32x3.unpack_from(tdata, pos)
        pos += 12
        vlen = info & 0xFFFF
        kind = (info >> 24) & 0x1F
        kind_flag = bool(info >> 31)
        t = Type(len(types), kind, name_at(name_off), size_or_type, vlen,
                 kind_flag)
        if kind in (KIND_INT, KIND_VAR, KIND_DECL_TAG):
            pos += 4
        elif kind == KIND_ARRAY:
            t.elem_type, _index_type, t.nelems = u32x3.unpack_from(tdata, pos)
            pos += 12
        elif kind in (KIND_STRUCT, KIND_UNION):
            for _ in range(vlen):
                m_name, m_type, m_off = u32x3.unpack_from(tdata, pos)
                pos += 12
                if kind_flag:
                    t.members.append(Member(name_at(m_name), m_type,
                                            m_off & 0xFFFFFF, m_off >> 24))
                else:
                    t.members.append(Member(name_at(m_name), m_type, m_off))
        elif kind == KIND_ENUM or kind == KIND_FUNC_PROTO:
            pos += 8 * vlen
        elif kind == KIND_DATASEC:
            for _ in range(vlen):
                t.secinfo.append(u32x3.unpack_from(tdata, pos))
                pos += 12
        elif kind == KIND_ENUM64:
            pos += 12 * vlen
        elif kind in (KIND_PTR, KIND_FWD, KIND_TYPEDEF, KIND_VOLATILE,
                      KIND_CONST, KIND_RESTRICT, KIND_FUNC, KIND_FLOAT,
                      KIND_TYPE_TAG):
            pass
        else:
            raise BTFError(f"unknown BTF kind {kind} at type {t.id}")
        types.append(t)
    if pos != n:
        raise BTFError("BTF type section has trailing bytes")
    return types


def elf_section(path: str | os.PathLike, name: str) -> bytes:
    """Return the contents of section ``name`` of the ELF file at ``path``.

    Handles 32- and 64-bit, little- and big-endian files.  Raises
    :exc:`BTFError` when the file is not ELF or has no such section.
    """
    with open(path, "rb") as f:
        return _elf_section(f, name, path)


def elf_section_from_bytes(data: bytes, name: str) -> bytes:
    """:func:`elf_section` for an ELF file already in memory."""
    return _elf_section(io.BytesIO(data), name, "<memory>")


def _elf_section(f, name: str, path) -> bytes:
    ident = f.read(16)
    if ident[:4] != b"\x7fELF":
        raise BTFError(f"{path} is not an ELF file")
    is64 = ident[4] == 2
    bo = "<" if ident[5] == 1 else ">"
    if is64:
        f.seek(0x28)
        shoff, = struct.unpack(bo + "Q", f.read(8))
        f.seek(0x3A)
        shentsize, shnum, shstrndx = struct.unpack(bo + "HHH", f.read(6))
        sh_fmt = bo + "IIQQQQIIQQ"
    else:
        f.seek(0x20)
        shoff, = struct.unpack(bo + "I", f.read(4))
        f.seek(0x2E)
        shentsize, shnum, shstrndx = struct.unpack(bo + "HHH", f.read(6))
        sh_fmt = bo + "IIIIIIIIII"
    f.seek(shoff)
    raw = f.read(shentsize * shnum)
    headers = [struct.unpack_from(sh_fmt, raw, i * shentsize)
               for i in range(shnum)]
    if shstrndx >= shnum:
        raise BTFError(f"{path} has no section name table")
    # Fields: name, type, flags, addr, offset, size, ...
    str_hdr = headers[shstrndx]
    f.seek(str_hdr[4])
    names = f.read(str_hdr[5])
    wanted = name.encode()
    for h in headers:
        end = names.find(b"\0", h[0])
        if names[h[0]:end] == wanted:
            f.seek(h[4])
            return f.read(h[5])
    raise BTFError(f"{path} has no {name} section")


def load(path: str | os.PathLike) -> BTF:
    """Load BTF from an ELF file (vmlinux) or a raw BTF blob."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"\x7fELF":
        return BTF.from_elf(path)
    with open(path, "rb") as f:
        return BTF.from_bytes(f.read())
