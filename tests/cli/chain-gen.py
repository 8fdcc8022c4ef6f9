#!/usr/bin/env python3
# chain-gen.py DIR STEPS SEED: the disk states of a chain test (sourced by chain-lib.bash).
#
# Two disks of odd sizes (a partial last cluster, one not a multiple of 512). State 0 has
# random data, zero blocks and zero clusters; each step 1..STEPS makes random overlapping
# changes: random writes, zeroed ranges (whole clusters that held data become zero, and
# pieces of clusters), "trims" of the last partial cluster. Writes:
#   DIR/s<i>-<dev>.raw   the image of <dev> after step i
#   DIR/inc<i>-<dev>     clusters changed by step i (mkdelta's list: "1,5-7" or "none")
#   DIR/diff<i>-<dev>    clusters changed by steps 1..i
#   DIR/devs             one "<dev> <size>" per line
import os
import random
import sys

CL = 65536
DEVS = [("drive-scsi0", 23 * CL + 5 * 4096 + 1536), ("drive-virtio1", 9 * CL + 12345)]


def spans(clusters):
    if not clusters:
        return "none"
    out, c = [], sorted(clusters)
    start = prev = c[0]
    for x in c[1:] + [None]:
        if x is not None and x == prev + 1:
            prev = x
            continue
        out.append(str(start) if start == prev else "%d-%d" % (start, prev))
        if x is not None:
            start = prev = x
    return ",".join(out)


def touch(dirty, off, n):
    for c in range(off // CL, (off + n - 1) // CL + 1):
        dirty.add(c)


def main():
    d, steps, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rnd = random.Random(seed)
    with open(os.path.join(d, "devs"), "w") as f:
        for name, size in DEVS:
            f.write("%s %d\n" % (name, size))
    imgs = {}
    for name, size in DEVS:
        img = bytearray(rnd.randbytes(size))
        for b in range(0, size, 4096):          # zero blocks
            if rnd.random() < 0.25:
                img[b:b + 4096] = bytes(min(4096, size - b))
        for c in rnd.sample(range(size // CL), 3):  # zero clusters
            img[c * CL:(c + 1) * CL] = bytes(CL)
        imgs[name] = img
        open(os.path.join(d, "s0-%s.raw" % name), "wb").write(img)
    since_full = {name: set() for name, _ in DEVS}
    for i in range(1, steps + 1):
        for name, size in DEVS:
            img, dirty = imgs[name], set()
            for _ in range(rnd.randint(2, 5)):  # random writes, any alignment
                n = rnd.randint(1, 3 * CL)
                off = rnd.randrange(0, size - 1)
                n = min(n, size - off)
                img[off:off + n] = rnd.randbytes(n)
                touch(dirty, off, n)
            # a cluster that holds data becomes zero (a trim or write-zeroes)
            full = [c for c in range(size // CL) if any(img[c * CL:(c + 1) * CL])]
            c = rnd.choice(full)
            img[c * CL:(c + 1) * CL] = bytes(CL)
            dirty.add(c)
            # a piece of a cluster zeroed
            off = rnd.randrange(0, size - 8192)
            img[off:off + 8192] = bytes(8192)
            touch(dirty, off, 8192)
            if rnd.random() < 0.5:              # the partial last cluster trimmed
                last = (size - 1) // CL
                img[last * CL:size] = bytes(size - last * CL)
                dirty.add(last)
            # a write that changes nothing still marks its cluster (bitmaps do so)
            c = rnd.randrange(0, (size - 1) // CL + 1)
            dirty.add(c)
            since_full[name] |= dirty
            open(os.path.join(d, "s%d-%s.raw" % (i, name)), "wb").write(img)
            open(os.path.join(d, "inc%d-%s" % (i, name)), "w").write(spans(dirty))
            open(os.path.join(d, "diff%d-%s" % (i, name)), "w").write(spans(since_full[name]))


main()
