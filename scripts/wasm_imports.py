#!/usr/bin/env python3
"""Lists the imports of a .wasm module as module.name lines (reads the import section; no dependencies)."""
import sys


def leb(buf, i):
    result = shift = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, i


def imports(path):
    buf = open(path, "rb").read()
    if buf[:4] != b"\0asm":
        raise SystemExit(f"{path}: not a wasm module")
    i = 8
    out = []
    while i < len(buf):
        sec, i = buf[i], i + 1
        size, i = leb(buf, i)
        end = i + size
        if sec == 2:
            count, i = leb(buf, i)
            for _ in range(count):
                n, i = leb(buf, i)
                mod = buf[i:i + n].decode()
                i += n
                n, i = leb(buf, i)
                name = buf[i:i + n].decode()
                i += n
                kind = buf[i]
                i += 1
                if kind == 0:
                    _, i = leb(buf, i)
                elif kind == 1:
                    i += 1
                    flags, i = leb(buf, i)
                    _, i = leb(buf, i)
                    if flags & 1:
                        _, i = leb(buf, i)
                elif kind == 2:
                    flags, i = leb(buf, i)
                    _, i = leb(buf, i)
                    if flags & 1:
                        _, i = leb(buf, i)
                elif kind == 3:
                    i += 2
                out.append(f"{mod}.{name}")
        i = end
    return out


if __name__ == "__main__":
    for line in imports(sys.argv[1]):
        print(line)
