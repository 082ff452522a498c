#!/usr/bin/env python3
"""austen-corpus.py DATA_DIR OUT_DIR — Jane Austen's six novels as plain text, from Debian's
r-cran-janeaustenr, without R.

The package keeps its data as an R lazy-load database (data/Rdata.rdx, data/Rdata.rdb). The
index (.rdx) is a gzip'd R serialization of a list whose "variables" entry maps each object's
name to [offset, length] in the .rdb. Each .rdb record is a 4-byte big-endian length and a zlib
stream of one serialized object: here a character vector, one element per line of the book.
R's serialization format (XDR, version 2 or 3) for that vector: "X\\n", three ints, for
version 3 the native encoding's name, then STRSXP (type 16) with its length and one CHARSXP
(type 9) per element: flags, byte length (-1 for NA), bytes; a symbol seen before is a
reference (type 255) to it. Only what these files use is read;
anything else is refused with the reason.

Writes OUT_DIR/<book>.txt (UTF-8, the vector's elements as lines) for the six books, and prints
each file's line count and SHA-256.
"""
import gzip
import hashlib
import os
import struct
import sys
import zlib

BOOKS = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey",
         "persuasion"]


class Reader:
    def __init__(self, data, what):
        self.d, self.i, self.what = data, 0, what
        self.refs = []                               # symbols read so far, for REFSXP

    def int(self):
        v = struct.unpack_from(">i", self.d, self.i)[0]
        self.i += 4
        return v

    def bytes(self, n):
        b = self.d[self.i:self.i + n]
        if len(b) != n:
            sys.exit(f"austen-corpus: {self.what}: truncated")
        self.i += n
        return b

    def header(self):
        if self.bytes(2) != b"X\n":
            sys.exit(f"austen-corpus: {self.what}: not an XDR serialization")
        version = self.int()
        self.int(), self.int()                       # writer's and minimal reader's R version
        if version == 3:
            self.bytes(self.int())                   # native encoding, e.g. "UTF-8"
        elif version != 2:
            sys.exit(f"austen-corpus: {self.what}: serialization version {version}")

    def item(self):
        """One object: a character vector, an integer vector, or a list with attributes."""
        flags = self.int()
        kind, has_attr = flags & 0xFF, bool(flags & (1 << 9))
        if kind == 254:                              # NILVALUE_SXP
            return None
        if kind == 9:                                # CHARSXP
            n = self.int()
            return None if n == -1 else self.bytes(n).decode("utf-8")
        if kind in (10, 13, 16, 19):                 # LGLSXP, INTSXP, STRSXP, VECSXP
            n = self.int()
            if kind in (10, 13):
                value = [self.int() for _ in range(n)]
            else:
                value = [self.item() for _ in range(n)]
        elif kind == 2:                              # LISTSXP (attribute pairlists)
            tag = self.item() if flags & (1 << 10) else None
            value = (tag, self.item(), self.item())
            return value
        elif kind == 1:                              # SYMSXP: remembered for later references
            self.refs.append(self.item())
            return self.refs[-1]
        elif kind == 255:                            # REFSXP: a symbol already read
            k = flags >> 8 or self.int()
            return self.refs[k - 1]
        else:
            sys.exit(f"austen-corpus: {self.what}: object type {kind} is not one this reader knows")
        attrs = {}
        if has_attr:
            node = self.item()
            while node:
                tag, val, node = node
                attrs[tag] = val
        if "names" in attrs:
            return dict(zip(attrs["names"], value))
        return value


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__.splitlines()[0])
    data, out = argv[1], argv[2]
    with open(os.path.join(data, "Rdata.rdx"), "rb") as f:
        rdx = Reader(gzip.decompress(f.read()), "Rdata.rdx")
    rdx.header()
    index = rdx.item()
    with open(os.path.join(data, "Rdata.rdb"), "rb") as f:
        rdb = f.read()
    os.makedirs(out, exist_ok=True)
    for book in BOOKS:
        if book not in index["variables"]:
            sys.exit(f"austen-corpus: no {book} in Rdata.rdx")
        off, n = index["variables"][book]
        rec = rdb[off:off + n]
        size = struct.unpack(">I", rec[:4])[0]
        raw = zlib.decompress(rec[4:])
        if len(raw) != size:
            sys.exit(f"austen-corpus: {book}: inflated to {len(raw)} bytes, the record says {size}")
        r = Reader(raw, book)
        r.header()
        lines = r.item()
        if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
            sys.exit(f"austen-corpus: {book}: not a character vector without NA")
        text = "".join(x + "\n" for x in lines).encode("utf-8")
        path = os.path.join(out, book + ".txt")
        with open(path + ".tmp", "wb") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
        print(f"{path}: {len(lines)} lines, sha256 {hashlib.sha256(text).hexdigest()}")


if __name__ == "__main__":
    main(sys.argv)
