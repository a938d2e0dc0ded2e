#!/usr/bin/env python3
"""Marks a glibc version need weak when every symbol that asks for it is a weak reference.

Used by tests/testbed/cargo on what it builds inside the sid root: Rust's std refers weakly to
pidfd_spawnp and pidfd_getpid (GLIBC_2.39) and checks at run time whether they exist, but the
linker records GLIBC_2.39 as a required version, so an older glibc's loader (bookworm: 2.36)
refuses the program before it starts. With the need marked weak (VER_FLG_WEAK, as binutils
marks it when all references are weak), that loader runs it and std falls back. A version that
any strong reference needs is left required: such a program does not run on an older glibc.

usage: weak-glibc.py ELF...   prints each version it marked weak; non-ELF files are skipped.
"""
import struct
import sys

SHT_DYNSYM, SHT_GNU_VERSYM, SHT_GNU_VERNEED = 11, 0x6FFFFFFF, 0x6FFFFFFE
VER_FLG_WEAK = 0x2
STB_WEAK = 2


def sections(data):
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    out = []
    for i in range(shnum):
        name, typ, _flags, _addr, off, size, link, _info, _align, entsize = struct.unpack_from(
            "<IIQQQQIIQQ", data, shoff + i * shentsize
        )
        out.append({"type": typ, "offset": off, "size": size, "link": link, "entsize": entsize})
    return out


def cstr(data, off):
    return data[off : data.index(b"\0", off)].decode("ascii", "replace")


def mark(path):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []  # not a 64-bit little-endian ELF file
    secs = sections(data)
    by_type = {s["type"]: s for s in secs}
    if not all(t in by_type for t in (SHT_DYNSYM, SHT_GNU_VERSYM, SHT_GNU_VERNEED)):
        return []
    dynsym, versym, verneed = by_type[SHT_DYNSYM], by_type[SHT_GNU_VERSYM], by_type[SHT_GNU_VERNEED]
    strtab = secs[verneed["link"]]["offset"]
    count = dynsym["size"] // 24
    # per version index: does any strong reference (or definition) use it?
    strong = set()
    for i in range(count):
        info = data[dynsym["offset"] + i * 24 + 4]
        (ver,) = struct.unpack_from("<H", data, versym["offset"] + i * 2)
        if info >> 4 != STB_WEAK:
            strong.add(ver & 0x7FFF)
    marked = []
    off = verneed["offset"]
    while True:
        _version, cnt, _file, aux, nxt = struct.unpack_from("<HHIII", data, off)
        a = off + aux
        for _ in range(cnt):
            _hash, flags, other, name, anext = struct.unpack_from("<IHHII", data, a)
            label = cstr(data, strtab + name)
            if label.startswith("GLIBC_") and other not in strong and not flags & VER_FLG_WEAK:
                struct.pack_into("<H", data, a + 4, flags | VER_FLG_WEAK)
                marked.append(label)
            if anext == 0:
                break
            a += anext
        if nxt == 0:
            break
        off += nxt
    if marked:
        with open(path, "r+b") as f:
            f.write(data)
    return marked


def main():
    for path in sys.argv[1:]:
        try:
            marked = mark(path)
        except (OSError, struct.error, ValueError) as e:
            print(f"weak-glibc: {path}: {e}", file=sys.stderr)
            return 1
        if marked:
            print(f"weak-glibc: {path}: {', '.join(marked)} marked weak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
