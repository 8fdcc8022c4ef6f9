"""Helpers of the change-bitmap / incremental backup tests (tests/functional/*bitmap*,
incremental-*): a small VMA reader that returns an archive's clusters (so a delta archive
can be applied to the state of its base without `vma extract --base`), guest I/O through
qemu-io over vmad's NBD export, and backup control over QMP."""
import hashlib
import os
import random
import shutil
import struct
import subprocess
import time

CLUSTER = 65536
BLOCK = 4096


def read_vma(path):
    """(uuid hex, {config name: bytes}, {dev name: size}, {dev name: {cluster: bytes}})"""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"VMA\0", "not a VMA archive"
    uuid = data[8:24]
    blob_off, blob_size, header_size = struct.unpack(">III", data[48:60])
    md5 = bytearray(data[:header_size])
    md5[32:48] = b"\0" * 16
    assert hashlib.md5(md5).digest() == data[32:48], "header checksum"

    def blob(ptr):
        p = blob_off + ptr
        (n,) = struct.unpack("<H", data[p:p + 2])
        return data[p + 2:p + 2 + n]

    configs = {}
    for i in range(256):
        (np_, dp) = (struct.unpack(">I", data[2044 + 4 * i:2048 + 4 * i])[0],
                     struct.unpack(">I", data[3068 + 4 * i:3072 + 4 * i])[0])
        if np_ and dp:
            configs[blob(np_).rstrip(b"\0").decode()] = blob(dp)
    devs, names = {}, {}
    for i in range(1, 256):
        e = 4096 + 32 * i
        ptr, _, size = struct.unpack(">IIQ", data[e:e + 16])
        if size:
            names[i] = blob(ptr).rstrip(b"\0").decode()
            devs[names[i]] = size
    clusters = {n: {} for n in devs}
    pos = header_size
    while pos < len(data):
        h = data[pos:pos + 512]
        assert h[:4] == b"VMAE" and h[8:24] == uuid, "extent header"
        (count,) = struct.unpack(">H", h[6:8])
        pos += 512
        for s in range(59):
            (info,) = struct.unpack(">Q", h[40 + 8 * s:48 + 8 * s])
            dev = (info >> 32) & 0xff
            if dev == 0:
                continue
            mask, cl = info >> 48, info & 0xffffffff
            buf = bytearray(CLUSTER)
            for j in range(16):
                if mask & (1 << j):
                    buf[j * BLOCK:(j + 1) * BLOCK] = data[pos:pos + BLOCK]
                    pos += BLOCK
            assert cl not in clusters[names[dev]], "duplicate cluster"
            clusters[names[dev]][cl] = bytes(buf)
    return uuid.hex(), configs, devs, clusters


def uuid_str(hexs):
    return "%s-%s-%s-%s-%s" % (hexs[:8], hexs[8:12], hexs[12:16], hexs[16:20], hexs[20:])


def chain_info(configs):
    text = configs.get("vmabackup-chain.conf")
    if text is None:
        return None
    return dict(line.split(": ", 1) for line in text.decode().splitlines() if line)


def apply_archive(state, archive, base_uuid=None):
    """state: {dev: bytearray} of the base (None for a full archive). Returns the new
    state and the archive's uuid text; checks the chain entry's base."""
    uuid, configs, devs, clusters = read_vma(archive)
    info = chain_info(configs)
    if base_uuid is None:
        assert info is None, "a full archive with a chain entry"
        state = {n: bytearray(size) for n, size in devs.items()}
        for n, size in devs.items():
            assert len(clusters[n]) == (size + CLUSTER - 1) // CLUSTER, "full archive incomplete"
    else:
        assert info is not None, "%s: no chain entry" % archive
        assert info["format"] == "1", info
        assert info["base"] == uuid_str(base_uuid), (info, base_uuid)
        state = {n: bytearray(b) for n, b in state.items()}
        for n, size in devs.items():
            assert len(state[n]) == size, "size changed"
    for n, cls in clusters.items():
        size = devs[n]
        for c, buf in cls.items():
            end = min(size, (c + 1) * CLUSTER)
            state[n][c * CLUSTER:end] = buf[:end - c * CLUSTER]
    return state, uuid, info, {n: len(c) for n, c in clusters.items()}


def snapshot(paths):
    out = {}
    for n, p in paths.items():
        with open(p, "rb") as f:
            out[n] = f.read()
    return out


def qemu_io(uri, *cmds):
    args = ["qemu-io", "-f", "raw"]
    for c in cmds:
        args += ["-c", c]
    p = subprocess.run(args + [uri], capture_output=True, text=True, timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "failed" not in out and "error" not in out.lower(), out
    return out


def random_io(rng, size, n=12):
    """qemu-io commands: overlapping writes, zeroes and discards (trims) at random."""
    cmds = []
    for _ in range(n):
        kind = rng.choice(["write", "write", "zero", "trim"])
        off = rng.randrange(0, size - 512) // 512 * 512
        ln = min(size - off, rng.choice([512, 4096, 65536, 200000, 700000]) // 512 * 512 or 512)
        if kind == "write":
            cmds.append("write -P %d %d %d" % (rng.randrange(1, 255), off, ln))
        elif kind == "zero":
            cmds.append("write -z %d %d" % (off, ln))
        else:
            cmds.append("discard %d %d" % (off, ln))
    return cmds


def start_backup(q, args):
    r = q.cmd("backup", args)
    assert "return" in r, r
    return r["return"]["UUID"]


def wait_backup(q, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        st = q.ok("query-backup")
        if st.get("status") in ("done", "error"):
            return st
        time.sleep(0.02)
    raise AssertionError("backup did not end")


def bitmaps(q, node):
    for b in q.ok("query-block"):
        if b["device"] == node:
            return {x["name"]: x for x in b["inserted"].get("dirty-bitmaps", [])}
    raise AssertionError("no node " + node)


def numbered_backup(q, d, bitmap):
    """A backup from bitmap into the next bN.vma of directory d (N: the archives there).
    Returns the error's desc if backup refused it, else read_vma of the archive."""
    n = len([f for f in os.listdir(d) if f.endswith(".vma")])
    out = "%s/b%d.vma" % (d, n)
    r = q.cmd("backup", {"backup-file": out, "bitmap": bitmap})
    if "error" in r:
        return r["error"]["desc"]
    st = wait_backup(q)
    assert st["status"] == "done", st
    return read_vma(out)


def step_session(d, node="drive-scsi0", bitmap="p0"):
    """One step of a persistence test against the vmad of directory d (qmp.sock,
    nbd.sock; the step's name in $STEP): (STEP, q negotiated, the NBD URI of node, a
    numbered_backup of bitmap into d)."""
    from qmp import QMP
    q = QMP(d + "/qmp.sock", timeout=60)
    q.negotiate()
    uri = "nbd+unix:///%s?socket=%s/nbd.sock" % (node, d)
    return os.environ["STEP"], q, uri, lambda: numbered_backup(q, d, bitmap)
