#!/usr/bin/env python3
"""guest-check.py — host-side checks of disk images the test guest wrote.

An independent implementation of the patterns documented in scripts/guest-initrd.sh (the
guest builds them with busybox printf; this file recomputes them), so a test compares
what the image file holds with what the guest was asked to write.

  guest-check.py pattern IMG --seed N --disk D --regions OFF:LEN[,...] [--orig FILE]
      Every block of every region holds the write-verify pattern of (seed, disk, offset);
      with --orig, every byte outside the regions equals FILE (same size as IMG).
  guest-check.py fill IMG --seed N --disk D --regions OFF:LEN[,...]
      Write that pattern into IMG (to corrupt or prepare images in tests).
  guest-check.py loop IMG --first BLK --blocks N [--min-gen K] [--max-gen M] [--orig FILE]
      Every block of the loop range holds "gen=G blk=B" for its own block number B (or,
      as generation 0, its content in --orig / all zeros), with K <= G <= M, and the range
      is one pass in progress: a prefix at generation G+1 followed by the rest at G.
      Prints "gens LOW HIGH" on success.

Exit status 0 when the check holds, 1 with one line on stderr saying where it does not,
2 on usage errors.
"""
import argparse
import re
import sys

BLOCK = 4096
UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def size(text):
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", text)
    if not m:
        raise argparse.ArgumentTypeError("bad size '%s'" % text)
    value = int(m.group(1)) * UNITS[m.group(2).lower()]
    if value % BLOCK:
        raise argparse.ArgumentTypeError("'%s' is not a multiple of 4096" % text)
    return value


def regions(text):
    out = []
    for item in text.split(","):
        if ":" not in item:
            raise argparse.ArgumentTypeError("bad region '%s' (want OFF:LEN)" % item)
        off, length = item.split(":", 1)
        out.append((size(off), size(length)))
    return out


def record(text):
    """One 4 KiB block: text left-justified, space padded to 4095 bytes, then a newline."""
    data = ("%-4095s\n" % text).encode()
    assert len(data) == BLOCK
    return data


def pattern_block(seed, disk, off):
    return record("vmabackup-guest seed=%d disk=%d off=%d" % (seed, disk, off))


def fail(msg):
    print("guest-check: " + msg, file=sys.stderr)
    sys.exit(1)


def read_image(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        fail("read %s: %s" % (path, e.strerror))


def describe(block):
    text = block[:64].split(b"\n")[0].rstrip(b" ")
    if not block.strip(b"\0"):
        return "zeros"
    return repr(text[:60])


def cmd_pattern(a):
    img = read_image(a.image)
    orig = read_image(a.orig) if a.orig else None
    if orig is not None and len(orig) != len(img):
        fail("%s is %d bytes, original %s is %d" % (a.image, len(img), a.orig, len(orig)))
    covered = []
    for off, length in a.regions:
        if off + length > len(img):
            fail("region %d+%d beyond the end of %s (%d bytes)" % (off, length, a.image, len(img)))
        for o in range(off, off + length, BLOCK):
            want = pattern_block(a.seed, a.disk, o)
            if img[o:o + BLOCK] != want:
                fail("%s at %d: expected the seed=%d disk=%d pattern, found %s"
                     % (a.image, o, a.seed, a.disk, describe(img[o:o + BLOCK])))
        covered.append((off, off + length))
    if orig is not None:
        pos = 0
        for start, end in sorted(covered) + [(len(img), len(img))]:
            if start > pos and img[pos:start] != orig[pos:start]:
                first = next(i for i in range(pos, start) if img[i] != orig[i])
                fail("%s at %d: outside the written regions, differs from %s"
                     % (a.image, first, a.orig))
            pos = max(pos, end)


def cmd_fill(a):
    try:
        with open(a.image, "r+b") as f:
            for off, length in a.regions:
                f.seek(off)
                f.write(b"".join(pattern_block(a.seed, a.disk, o)
                                 for o in range(off, off + length, BLOCK)))
    except OSError as e:
        fail("write %s: %s" % (a.image, e.strerror))


LOOP_RE = re.compile(rb"gen=(\d+) blk=(\d+)")


def cmd_loop(a):
    img = read_image(a.image)
    orig = read_image(a.orig) if a.orig else None
    end = (a.first + a.blocks) * BLOCK
    if end > len(img):
        fail("loop range %d+%d beyond the end of %s" % (a.first, a.blocks, a.image))
    gens = []
    for b in range(a.first, a.first + a.blocks):
        blk = img[b * BLOCK:(b + 1) * BLOCK]
        base = orig[b * BLOCK:(b + 1) * BLOCK] if orig is not None else bytes(BLOCK)
        if blk == base:
            gens.append(0)
            continue
        m = LOOP_RE.match(blk)
        if not m or int(m.group(2)) != b or blk != record(m.group(0).decode()):
            fail("%s block %d: not a loop record for block %d: %s" % (a.image, b, b, describe(blk)))
        gens.append(int(m.group(1)))
    low, high = min(gens), max(gens)
    if high - low > 1:
        fail("%s: generations %d..%d in one range (more than one pass apart)" % (a.image, low, high))
    if high != low:
        # newer pass must be a prefix
        first_low = gens.index(low)
        if any(g != low for g in gens[first_low:]):
            b = a.first + first_low + next(i for i, g in enumerate(gens[first_low:]) if g != low)
            fail("%s block %d: gen %d after an older block: not one ascending pass"
                 % (a.image, b, high))
    if a.min_gen is not None and low < a.min_gen:
        fail("%s: oldest generation %d < %d" % (a.image, low, a.min_gen))
    if a.max_gen is not None and high > a.max_gen:
        fail("%s: newest generation %d > %d" % (a.image, high, a.max_gen))
    print("gens %d %d" % (low, high))


def main():
    p = argparse.ArgumentParser(description="check images written by the test guest")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("pattern", "fill"):
        s = sub.add_parser(name)
        s.add_argument("image")
        s.add_argument("--seed", type=int, required=True)
        s.add_argument("--disk", type=int, required=True)
        s.add_argument("--regions", type=regions, required=True)
        if name == "pattern":
            s.add_argument("--orig")
    s = sub.add_parser("loop")
    s.add_argument("image")
    s.add_argument("--first", type=int, required=True)
    s.add_argument("--blocks", type=int, required=True)
    s.add_argument("--min-gen", type=int)
    s.add_argument("--max-gen", type=int)
    s.add_argument("--orig")
    a = p.parse_args()
    {"pattern": cmd_pattern, "fill": cmd_fill, "loop": cmd_loop}[a.cmd](a)


if __name__ == "__main__":
    main()
