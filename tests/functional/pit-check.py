#!/usr/bin/env python3
"""pit-check.py — is a backup a point-in-time copy of disks that pit-writer was writing?

  pit-check.py pit LOG --sent NS --returned NS (--archive FILE [--vma VMA] | --image I=PATH...)
  pit-check.py final LOG --image I=PATH...
  pit-check.py selftest

LOG is a pit-writer log (tests/tools/pit-writer.c documents it): every request with its
generation, disk, range, type (write, write-zeroes, trim) and two CLOCK_MONOTONIC
timestamps, `send` (taken after the generation, before the request left the client) and
`ack` (when its reply arrived). --sent and --returned are the same clock's readings just
before the QMP `backup` command was sent and just after its reply was read. `pit` checks
the disks in an archive (extracted with `vma extract`; device names are the export names
of the log's URIs) or image files given with --image DISKINDEX=PATH; `final` checks the
live disk files after the writer stopped. Exit status 0 when the check holds, 1 with the
reason on stderr, 2 on usage errors. On success `pit` prints one line
    pit-check: ok disks=N blocks=B zero=Z rewritten=K window=LO..HI
where K counts blocks written after the cut (so a test can insist the backup really ran
while the disks changed) and LO..HI is the interval (ns) in which the cut can lie.

What is provable, and what is checked
-------------------------------------
Units. The log says how large a stamped unit is (pit-writer --unit: 4096 by default, or
512..2048 for requests that are not 4 KiB-aligned); "block" below and in messages means
one such unit, numbered from the start of the disk.

pit-writer never has two requests in flight that touch the same block, so the
requests on one block b form a sequence r1, r2, ... in which each was sent after the
previous one was acknowledged (the checker verifies this from the log). Before r1 the
block holds the prefill (generation 0). The server applies a request somewhere between
its send and its ack; we do not know where. So if the content of b at instant T is that
of r_i, then
        send(r_i) < T < ack(r_{i+1})            (send(prefill) = -inf, ack(none) = +inf)
and conversely, for any T in that open interval, "b holds r_i at T" is consistent with
every timestamp we have. A backup is correct (DESIGN.md section 3) iff there is ONE
instant T at which every block of every disk held what the archive holds, and T lies
inside the backup command (sent < T < returned): vmad freezes all disks at once while
handling the command. Hence the check:

  1. Every archived block is well-formed: zeros, or a stamp (repeated 32-byte records,
     the same in every copy, a valid check field, this run's id, its own disk and block
     number). A torn, misplaced or foreign block fails.
  2. Its content names the request(s) it can come from: a stamp of generation g > 0 must
     be a write request of generation g that covered the block; generation 0 is the
     prefill; zeros can come from any write-zeroes or trim request that covered it (the
     candidates form a set). Nothing else.
  3. Per block, the interval above (a union over the candidates for zeros), intersected
     with (sent, returned), is not empty. The messages name the two ways to miss it:
     "too old" (a later request on the block was acknowledged before the backup was
     sent: the archive lost an acknowledged write) and "too new" (the archived request
     was sent only after backup returned).
  4. The intersection over ALL blocks of all disks is not empty: one instant explains
     the whole archive (a consistent cut across disks). For stamped blocks this is
     max(send of archived request) < min(ack of the request after it); zeros add unions.
Nothing stronger is provable from the client side: two requests in flight together on
different blocks may be applied in either order, and an archive that shows either order
is correct; one that shows an order excluded by the timestamps is not.

`final` checks that every acknowledged request is on the disk: each block holds the last
request on it (stamp of its generation, or zeros for write-zeroes/trim) or the prefill if
none touched it. Trim is checked as zeros: vmad punches a hole (tests pass --no-trim to
the writer where the file system cannot punch holes).
"""
import argparse
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.parse

BLOCK = 4096
STAMP = 32
REC = struct.Struct("<QQQQIBBh")
assert REC.size == 40
WRITE, ZERO, TRIM = 1, 2, 3
TYPE_NAME = {WRITE: "write", ZERO: "write-zeroes", TRIM: "trim"}
NEG_INF, POS_INF = -math.inf, math.inf


class CheckFailed(Exception):
    pass


def stamp_check(run_id, disk, block, gen):
    """pit-writer.c's stamp_check()."""
    m = (1 << 64) - 1
    h = 0xcbf29ce484222325
    for v in (run_id, disk, block, gen):
        h ^= v
        h = (h * 0x100000001b3) & m
        h ^= h >> 29
    return (h ^ (h >> 32)) & 0xffffffff


def stamp_record(run_id, disk, block, gen):
    return b"PITW" + struct.pack("<III", run_id, disk, stamp_check(run_id, disk, block, gen)) \
        + struct.pack("<QQ", block, gen)


def stamp_block(run_id, disk, block, gen, length=BLOCK, unit=BLOCK):
    """The stamp of one unit (`block`: the unit's number), cut to length bytes."""
    return (stamp_record(run_id, disk, block, gen) * (unit // STAMP))[:length]


class Op:
    __slots__ = ("gen", "send", "ack", "offset", "length", "disk", "type", "status")

    def __init__(self, gen, send, ack, offset, length, disk, type_, status=0):
        self.gen, self.send, self.ack = gen, send, ack
        self.offset, self.length, self.disk, self.type, self.status = \
            offset, length, disk, type_, status

    def __repr__(self):
        return "gen %d (%s %d+%d, sent %d, acked %d)" % (
            self.gen, TYPE_NAME.get(self.type, "?"), self.offset, self.length, self.send,
            self.ack)


class Log:
    """A parsed pit-writer log with per-block request sequences."""

    def __init__(self, run_id, disks, ops, unit=BLOCK):
        if unit not in (512, 1024, 2048, 4096):
            raise CheckFailed("log: unit %r is not 512, 1024, 2048 or 4096" % unit)
        self.unit = U = unit
        self.run_id = run_id
        self.disks = disks          # [{"uri", "size", "name"}]
        self.ops = sorted(ops, key=lambda o: o.gen)
        self.by_gen = {}
        self.blocks = []            # per disk: per block: [Op...] in order
        for d in disks:
            self.blocks.append([[] for _ in range((d["size"] + U - 1) // U)])
        for o in self.ops:
            if o.status != 0:
                raise CheckFailed("request %r failed with errno %d: the writer saw an error"
                                  % (o, o.status))
            if o.disk >= len(disks):
                raise CheckFailed("log: request gen %d names disk %d of %d"
                                  % (o.gen, o.disk, len(disks)))
            size = disks[o.disk]["size"]
            if o.length == 0 or o.offset % U or o.offset + o.length > size or \
                    (o.length % U and o.offset + o.length != size):
                raise CheckFailed("log: request %r is not block-aligned inside disk %d"
                                  % (o, o.disk))
            if o.gen in self.by_gen or o.gen == 0:
                raise CheckFailed("log: generation %d twice" % o.gen)
            if o.ack < o.send:
                raise CheckFailed("log: request %r acknowledged before it was sent" % o)
            self.by_gen[o.gen] = o
            lst = self.blocks[o.disk]
            for b in range(o.offset // U, (o.offset + o.length + U - 1) // U):
                seq = lst[b]
                if seq and seq[-1].ack > o.send:
                    raise CheckFailed(
                        "log: disk %d block %d: %r was sent before %r was acknowledged "
                        "(the writer must never overlap requests on a block)"
                        % (o.disk, b, o, seq[-1]))
                seq.append(o)

    @classmethod
    def read(cls, path):
        with open(path, "rb") as f:
            data = f.read()
        nl = data.find(b"\n")
        if nl < 0:
            raise CheckFailed("log %s: no header line" % path)
        head = json.loads(data[:nl])
        body = data[nl + 1:]
        if len(body) % REC.size:
            raise CheckFailed("log %s: %d bytes of records is not a multiple of %d"
                              % (path, len(body), REC.size))
        ops = [Op(*r) for r in REC.iter_unpack(body)]
        disks = []
        for d in head["disks"]:
            name = urllib.parse.urlparse(d["uri"]).path.lstrip("/")
            disks.append({"uri": d["uri"], "size": d["size"], "name": name})
        return cls(head["run_id"], disks, ops, head.get("unit", BLOCK))

    def write(self, path):
        head = {"run_id": self.run_id, "seed": 0, "unit": self.unit,
                "disks": [{"uri": d["uri"], "size": d["size"]} for d in self.disks]}
        with open(path, "wb") as f:
            f.write(json.dumps(head).encode() + b"\n")
            for o in self.ops:
                f.write(REC.pack(o.gen, o.send, o.ack, o.offset, o.length, o.disk, o.type,
                                 o.status))


def describe(blk):
    if not blk.strip(b"\0"):
        return "zeros"
    if blk[:4] == b"PITW" and len(blk) >= STAMP:
        run, disk, chk, block, gen = struct.unpack("<IIIQQ", blk[4:STAMP])
        return "stamp run=%d disk=%d block=%d gen=%d" % (run, disk, block, gen)
    return "foreign data %r" % blk[:16]


def classify(log, d, b, blk):
    """The generation a block's content names: an int, or "zero"."""
    if not blk.strip(b"\0"):
        return "zero"
    where = "disk %d (%s) block %d" % (d, log.disks[d]["name"], b)
    if len(blk) < 4 or blk[:4] != b"PITW" or len(blk) < STAMP:
        raise CheckFailed("%s: not a pit-writer stamp: %s" % (where, describe(blk)))
    run, disk, chk, block, gen = struct.unpack("<IIIQQ", blk[4:STAMP])
    if blk != (blk[:STAMP] * (log.unit // STAMP))[:len(blk)]:
        first = next(i for i in range(STAMP, len(blk)) if blk[i] != blk[i % STAMP])
        raise CheckFailed("%s: torn block: the stamp %s changes at byte %d (%s there)"
                          % (where, describe(blk), first,
                             describe(blk[first - first % STAMP:][:STAMP])))
    if chk != stamp_check(run, disk, block, gen):
        raise CheckFailed("%s: stamp with a bad check field: %s" % (where, describe(blk)))
    if run != log.run_id:
        raise CheckFailed("%s: stamp of another run (%d, this run is %d)"
                          % (where, run, log.run_id))
    if disk != d or block != b:
        raise CheckFailed("%s: misplaced block: holds the stamp of disk %d block %d (gen %d)"
                          % (where, disk, block, gen))
    return gen


def candidates(log, d, b, what):
    """[(op or None for the prefill, lo, hi)]: the requests the content can come from
    and the open interval of instants at which the block held each."""
    seq = log.blocks[d][b]
    where = "disk %d (%s) block %d" % (d, log.disks[d]["name"], b)
    out = []
    if what == 0:
        out.append((None, NEG_INF, seq[0].ack if seq else POS_INF))
    elif what == "zero":
        for i, o in enumerate(seq):
            if o.type in (ZERO, TRIM):
                out.append((o, o.send, seq[i + 1].ack if i + 1 < len(seq) else POS_INF))
        if not out:
            raise CheckFailed("%s reads as zeros, but no write-zeroes or trim request "
                              "touched it (requests on it: %s)"
                              % (where, ", ".join("%d" % o.gen for o in seq) or "none"))
    else:
        for i, o in enumerate(seq):
            if o.gen == what:
                if o.type != WRITE:
                    raise CheckFailed("%s holds a stamp of gen %d, which was a %s"
                                      % (where, what, TYPE_NAME[o.type]))
                out.append((o, o.send, seq[i + 1].ack if i + 1 < len(seq) else POS_INF))
        if not out:
            o = log.by_gen.get(what)
            raise CheckFailed("%s holds gen %d, but %s" % (
                where, what, "no request has that generation" if o is None else
                "that request (%r on disk %d) did not cover it" % (o, o.disk)))
    return out


def fmt_t(t, base):
    if t in (NEG_INF, POS_INF):
        return str(t)
    return "%+.3f ms" % ((t - base) / 1e6)


def merge(ivs):
    """Sorted, disjoint open intervals covering the union of ivs (candidate intervals of
    one block overlap one another)."""
    out = []
    for lo, hi in sorted(ivs):
        if out and lo < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def intersect(fs, ivs):
    """Intersection of two sorted lists of disjoint open intervals."""
    out, i, j = [], 0, 0
    while i < len(fs) and j < len(ivs):
        lo, hi = max(fs[i][0], ivs[j][0]), min(fs[i][1], ivs[j][1])
        if lo < hi:
            out.append((lo, hi))
        if fs[i][1] < ivs[j][1]:
            i += 1
        else:
            j += 1
    return out


def check_pit(log, images, sent, returned):
    """images: per disk index, the bytes of the disk in the backup."""
    if not sent < returned:
        raise CheckFailed("usage: --sent %d is not before --returned %d" % (sent, returned))
    lo_max, lo_who = NEG_INF, None      # the latest "after" bound of a stamped block
    hi_min, hi_who = POS_INF, None      # the earliest "before" bound
    multi = []                          # (where, [intervals]) of zero blocks
    nblocks = nzero = rewritten = 0
    for d, disk in enumerate(log.disks):
        img = images[d]
        if len(img) != disk["size"]:
            raise CheckFailed("disk %d (%s): %d bytes in the backup, the disk has %d"
                              % (d, disk["name"], len(img), disk["size"]))
        for b, seq in enumerate(log.blocks[d]):
            blk = img[b * log.unit:(b + 1) * log.unit]
            what = classify(log, d, b, blk)
            cands = candidates(log, d, b, what)
            where = "disk %d (%s) block %d" % (d, disk["name"], b)
            nblocks += 1
            ivs = []
            for o, lo, hi in cands:
                lo2, hi2 = max(lo, sent), min(hi, returned)
                if lo2 < hi2:
                    ivs.append((lo2, hi2))
            if not ivs:
                o, lo, hi = cands[-1]
                name = "the prefill" if o is None else repr(o)
                if what == "zero":
                    raise CheckFailed(
                        "%s reads as zeros, but no write-zeroes/trim on it can be current "
                        "between backup sent and returned (last candidate %s, current "
                        "from %s to %s; backup %s..%s)"
                        % (where, name, fmt_t(lo, sent), fmt_t(hi, sent), fmt_t(sent, sent),
                           fmt_t(returned, sent)))
                if hi <= sent:
                    nxt = seq[seq.index(o) + 1] if o is not None else seq[0]
                    raise CheckFailed(
                        "%s: archive too old: it holds %s, but %r was acknowledged %.3f ms "
                        "before backup was sent (an acknowledged write is missing)"
                        % (where, name, nxt, (sent - nxt.ack) / 1e6))
                raise CheckFailed(
                    "%s: archive too new: it holds %r, sent %.3f ms after backup returned"
                    % (where, o, (o.send - returned) / 1e6))
            if what == "zero":
                nzero += 1
                multi.append((where, ivs))
            else:
                lo, hi = ivs[0]
                if lo > lo_max:
                    lo_max, lo_who = lo, (where, cands[0][0])
                if hi < hi_min:
                    hi_min, hi_who = hi, (where, cands[0][0], cands[0][2])
            # the content was replaced after the cut by a request the checker saw
            last = cands[-1][0]
            if (last is None and seq) or (last is not None and seq and seq[-1] is not last):
                rewritten += 1
    if not lo_max < hi_min:
        (w1, o1), (w2, o2, h2) = lo_who, hi_who
        raise CheckFailed(
            "no single instant explains the archive: %s holds %r (cut after %s), but %s "
            "holds %s, replaced by a request acknowledged at %s (cut before that); times "
            "relative to backup sent"
            % (w1, o1, fmt_t(lo_max, sent), w2, "the prefill" if o2 is None else repr(o2),
               fmt_t(hi_min, sent)))
    feasible = [(lo_max, hi_min)]
    for where, ivs in multi:
        nf = intersect(feasible, merge(ivs))
        if not nf:
            raise CheckFailed(
                "no single instant explains the archive: %s reads as zeros, which fits only "
                "%s, but the rest of the archive needs the cut in %s (relative to backup "
                "sent)" % (where, ", ".join("%s..%s" % (fmt_t(a, sent), fmt_t(b, sent))
                                            for a, b in ivs),
                           ", ".join("%s..%s" % (fmt_t(a, sent), fmt_t(b, sent))
                                     for a, b in feasible)))
        feasible = nf
    lo, hi = feasible[0][0], feasible[-1][1]
    return {"blocks": nblocks, "zero": nzero, "rewritten": rewritten,
            "window": (int(lo) if lo != NEG_INF else 0, int(hi) if hi != POS_INF else 0)}


def check_final(log, images):
    for d, disk in enumerate(log.disks):
        img = images[d]
        if len(img) != disk["size"]:
            raise CheckFailed("disk %d (%s): %d bytes, expected %d"
                              % (d, disk["name"], len(img), disk["size"]))
        for b, seq in enumerate(log.blocks[d]):
            blk = img[b * log.unit:(b + 1) * log.unit]
            last = seq[-1] if seq else None
            if last is None or last.type == WRITE:
                want = stamp_block(log.run_id, d, b, last.gen if last else 0, len(blk), log.unit)
            else:
                want = bytes(len(blk))
            if blk != want:
                raise CheckFailed(
                    "disk %d (%s) block %d: the disk holds %s, but the last acknowledged "
                    "request on it is %s" % (d, disk["name"], b, describe(blk),
                                             "the prefill" if last is None else repr(last)))


def read_images(log, specs):
    images = [None] * len(log.disks)
    for spec in specs:
        idx, _, path = spec.partition("=")
        if not idx.isdigit() or int(idx) >= len(log.disks) or not path:
            raise SystemExit("pit-check: bad --image '%s' (want DISKINDEX=PATH)" % spec)
        with open(path, "rb") as f:
            images[int(idx)] = f.read()
    missing = [str(i) for i, im in enumerate(images) if im is None]
    if missing:
        raise SystemExit("pit-check: no --image for disk(s) %s" % ", ".join(missing))
    return images


def extract(log, archive, vma):
    tmp = tempfile.mkdtemp(prefix="pit-check.")
    try:
        out = os.path.join(tmp, "x")
        p = subprocess.run([vma, "extract", archive, out], capture_output=True, text=True)
        if p.returncode != 0:
            raise CheckFailed("vma extract %s failed: %s" % (archive, (p.stderr or p.stdout).strip()))
        images = []
        for d in log.disks:
            path = os.path.join(out, "disk-%s.raw" % d["name"])
            if not os.path.exists(path):
                raise CheckFailed("the archive has no device %s (extracted: %s)"
                                  % (d["name"], " ".join(sorted(os.listdir(out)))))
            with open(path, "rb") as f:
                images.append(f.read())
        return images
    finally:
        shutil.rmtree(tmp)


# ---- self-test ---------------------------------------------------------------------------

def _expect(name, fn, want_fail, needle=None):
    try:
        fn()
    except CheckFailed as e:
        if not want_fail:
            raise AssertionError("selftest %s: unexpected failure: %s" % (name, e))
        if needle and needle not in str(e):
            raise AssertionError("selftest %s: failed for the wrong reason: %s" % (name, e))
        return
    if want_fail:
        raise AssertionError("selftest %s: the checker accepted a wrong backup" % name)


def state_at(log, t_of_block):
    """Disk images where block b holds the last request on it applied before
    t_of_block(d, b) (requests are applied at the midpoint of send and ack)."""
    images = []
    for d, disk in enumerate(log.disks):
        img = bytearray()
        for b, seq in enumerate(log.blocks[d]):
            n = min(log.unit, disk["size"] - b * log.unit)
            cur = None
            t = t_of_block(d, b)
            for o in seq:
                if (o.send + o.ack) / 2 < t:
                    cur = o
            if cur is None or cur.type == WRITE:
                img += stamp_block(log.run_id, d, b, cur.gen if cur else 0, n, log.unit)
            else:
                img += bytes(n)
        images.append(bytes(img))
    return images


def simulate(seed, sizes, nops=400, unit=BLOCK):
    """A random history like pit-writer's: no two requests on a block overlap in time."""
    rnd = random.Random(seed)
    disks = [{"uri": "nbd+unix:///d%d?socket=x" % i, "size": s, "name": "d%d" % i}
             for i, s in enumerate(sizes)]
    free_at = [[0] * ((s + unit - 1) // unit) for s in sizes]
    ops, t = [], 1000
    for gen in range(1, nops + 1):
        d = rnd.randrange(len(sizes))
        n = len(free_at[d])
        b0 = rnd.randrange(n)
        b1 = min(n, b0 + rnd.choice((1, 1, 2, 3, 17)))
        t += rnd.randrange(1, 30)
        send = max([t] + [free_at[d][b] + 1 for b in range(b0, b1)])
        ack = send + rnd.randrange(5, 200)
        for b in range(b0, b1):
            free_at[d][b] = ack
        typ = rnd.choice((WRITE, WRITE, WRITE, ZERO, TRIM))
        off = b0 * unit
        ops.append(Op(gen, send, ack, off, min(b1 * unit, sizes[d]) - off, d, typ))
    ops.sort(key=lambda o: o.send)
    for i, o in enumerate(ops):     # generations in send order, as pit-writer takes them
        o.gen = i + 1
    return Log(1234, disks, ops, unit), t


def selftest():
    sizes = [5 * BLOCK + 512, 16 * BLOCK]
    run = 77
    disks = [{"uri": "nbd+unix:///drive-a?socket=s", "size": sizes[0], "name": "drive-a"},
             {"uri": "nbd+unix:///drive-b?socket=s", "size": sizes[1], "name": "drive-b"}]
    # (gen, send, ack, offset, length, disk, type); backup sent at 1000, returned at 1100
    ops = [
        Op(1, 100, 200, 0, BLOCK, 0, WRITE),            # a0: acked before the backup
        Op(2, 150, 300, BLOCK, 2 * BLOCK, 0, WRITE),    # a1-a2
        Op(3, 900, 1050, 3 * BLOCK, BLOCK, 0, WRITE),   # a3: in flight across the backup
        Op(4, 1200, 1300, 0, BLOCK, 0, WRITE),          # a0: after the backup
        Op(5, 400, 500, 5 * BLOCK, 512, 0, WRITE),      # a5: the partial last block
        Op(6, 600, 700, 0, 4 * BLOCK, 1, ZERO),         # b0-b3 zeroed before
        Op(7, 1010, 1040, 2 * BLOCK, BLOCK, 1, WRITE),  # b2 during the backup command
        Op(8, 1500, 1600, 4 * BLOCK, BLOCK, 1, TRIM),   # b4 trimmed after
        Op(9, 1020, 1090, 8 * BLOCK, BLOCK, 1, WRITE),  # b8 during
    ]
    log = Log(run, disks, ops)
    S, R = 1000, 1100

    def img(spec_a, spec_b):
        out = []
        for d, spec in enumerate((spec_a, spec_b)):
            data = bytearray()
            for b in range((sizes[d] + BLOCK - 1) // BLOCK):
                n = min(BLOCK, sizes[d] - b * BLOCK)
                g = spec.get(b, 0)
                data += bytes(n) if g == "z" else stamp_block(run, d, b, g, n)
            out.append(bytes(data))
        return out

    good_a = {0: 1, 1: 2, 2: 2, 3: 0, 5: 5}
    good_b = {0: "z", 1: "z", 2: "z", 3: "z", 8: 0}
    pit = lambda a, b: check_pit(log, img(a, b), S, R)
    _expect("consistent archive", lambda: pit(good_a, good_b), False)
    # a3 = gen 3 (in flight across the cut) and b2 = gen 7 (sent during the command) fit
    _expect("in-flight writes either way", lambda: pit({**good_a, 3: 3},
                                                       {**good_b, 2: 7}), False)
    _expect("too old", lambda: pit({**good_a, 1: 0}, good_b), True, "too old")
    _expect("too new", lambda: pit({**good_a, 0: 4}, good_b), True, "too new")
    _expect("zeros not written", lambda: pit(good_a, {**good_b, 4: "z"}), True,
            "reads as zeros")
    _expect("zeros too old", lambda: pit(good_a, {**good_b, 0: 0}), True, "too old")
    _expect("unknown gen", lambda: pit({**good_a, 2: 3}, good_b), True,
            "did not cover it")
    # b2 = gen 7 (sent at 1010) needs the cut after 1010; b8 = prefill needs it before gen
    # 9's ack (1090): fine. Make gen 9 be acked at 1005 in a variant: then impossible.
    ops2 = [Op(o.gen, o.send, o.ack, o.offset, o.length, o.disk, o.type) for o in ops]
    ops2[8].send, ops2[8].ack = 1001, 1005
    log2 = Log(run, disks, ops2)
    _expect("no single instant",
            lambda: check_pit(log2, img(good_a, {**good_b, 2: 7}), S, R), True,
            "no single instant")
    _expect("consistent with gen 9 early",
            lambda: check_pit(log2, img(good_a, {**good_b, 8: 9}), S, R), False)
    # torn, misplaced, foreign run, garbage
    a = img(good_a, good_b)
    torn = bytearray(a[0])
    torn[BLOCK + 2048:2 * BLOCK] = stamp_block(run, 0, 1, 0)[2048:]
    _expect("torn", lambda: check_pit(log, [bytes(torn), a[1]], S, R), True, "torn")
    mis = bytearray(a[0])
    mis[0:BLOCK] = stamp_block(run, 0, 2, 2)
    _expect("misplaced", lambda: check_pit(log, [bytes(mis), a[1]], S, R), True, "misplaced")
    other = bytearray(a[0])
    other[0:BLOCK] = stamp_block(run + 1, 0, 0, 1)
    _expect("other run", lambda: check_pit(log, [bytes(other), a[1]], S, R), True,
            "another run")
    junk = bytearray(a[0])
    junk[BLOCK * 4:BLOCK * 4 + 1] = b"x"
    _expect("garbage", lambda: check_pit(log, [bytes(junk), a[1]], S, R), True, "not a pit")
    _expect("short image", lambda: check_pit(log, [a[0][:-512], a[1]], S, R), True, "bytes")
    # cross-disk: a0 from after the backup is too new even if disk b is fine
    # final state
    fin_a = {0: 4, 1: 2, 2: 2, 3: 3, 5: 5}
    fin_b = {0: "z", 1: "z", 2: 7, 3: "z", 4: "z", 8: 9}
    _expect("final ok", lambda: check_final(log, img(fin_a, fin_b)), False)
    _expect("final lost write", lambda: check_final(log, img({**fin_a, 3: 0}, fin_b)),
            True, "last acknowledged")
    _expect("final trim kept data",
            lambda: check_final(log, img(fin_a, {**fin_b, 4: 0})), True, "trim")
    # the writer's invariant is checked
    bad = [Op(1, 10, 100, 0, BLOCK, 0, WRITE), Op(2, 50, 120, 0, 2 * BLOCK, 0, WRITE)]
    _expect("overlap in log", lambda: Log(run, disks, bad), True, "never overlap")
    _expect("failed request", lambda: Log(run, disks, [Op(1, 1, 2, 0, BLOCK, 0, WRITE, 5)]),
            True, "errno")

    # Randomised: a true snapshot at a random instant always passes; a "fuzzy" copy
    # (each block read at its own instant across the whole history, like a plain copy of
    # a live disk) is caught nearly always.
    caught = 0
    trials = 40
    for seed in range(trials):
        slog, tend = simulate(seed, [9 * BLOCK + 512, 40 * BLOCK, 16 * BLOCK],
                              unit=(BLOCK, 512)[seed % 2])
        rnd = random.Random(seed)
        t = rnd.randrange(2000, tend - 2000)
        S2, R2 = t - rnd.randrange(1, 50), t + rnd.randrange(1, 50)
        _expect("random snapshot %d" % seed,
                lambda: check_pit(slog, state_at(slog, lambda d, b: t), S2, R2), False)
        # fuzzy: block b of disk d read at a time spread over the history
        nb = sum(len(x) for x in slog.blocks)
        idx = {}
        k = 0
        for d in range(len(slog.blocks)):
            for b in range(len(slog.blocks[d])):
                idx[d, b] = k
                k += 1
        span = tend - 2000
        fuzzy = state_at(slog, lambda d, b: 1000 + span * idx[d, b] // nb)
        try:
            check_pit(slog, fuzzy, 1000, tend)
        except CheckFailed:
            caught += 1
    if caught < trials * 0.9:
        raise AssertionError("selftest: only %d of %d fuzzy copies were caught"
                             % (caught, trials))
    print("pit-check: selftest ok (%d/%d fuzzy copies caught)" % (caught, trials))


def main():
    p = argparse.ArgumentParser(description="point-in-time check of a backup")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("pit")
    s.add_argument("log")
    s.add_argument("--sent", type=int, required=True)
    s.add_argument("--returned", type=int, required=True)
    s.add_argument("--archive")
    s.add_argument("--vma", default=os.environ.get("VMA", "vma"))
    s.add_argument("--image", action="append", default=[])
    s = sub.add_parser("final")
    s.add_argument("log")
    s.add_argument("--image", action="append", default=[])
    sub.add_parser("selftest")
    a = p.parse_args()
    try:
        if a.cmd == "selftest":
            selftest()
            return
        log = Log.read(a.log)
        if a.cmd == "pit":
            if bool(a.archive) == bool(a.image):
                p.error("give --archive or --image")
            images = extract(log, a.archive, a.vma) if a.archive else read_images(log, a.image)
            r = check_pit(log, images, a.sent, a.returned)
            print("pit-check: ok disks=%d blocks=%d zero=%d rewritten=%d window=%d..%d ops=%d"
                  % (len(log.disks), r["blocks"], r["zero"], r["rewritten"],
                     r["window"][0], r["window"][1], len(log.ops)))
        else:
            check_final(log, read_images(log, a.image))
            print("pit-check: final ok disks=%d ops=%d" % (len(log.disks), len(log.ops)))
    except CheckFailed as e:
        print("pit-check: FAIL: %s" % e, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
