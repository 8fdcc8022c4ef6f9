#!/usr/bin/env python3
"""mkvma.py — build VMA archives for the CLI tests, including hostile ones.

`vma create` refuses bad names and sizes, so tests that need an archive with a device
called "../evil" or a config called ".x" build it here, with valid checksums: big-endian
fields, little-endian blob lengths, MD5 over the header and over each 512-byte extent
header, up to 58 cluster entries per extent (as the deployed writer does).

Usage: mkvma.py SPEC.json OUT.vma

SPEC keys (all optional):
  uuid          32 hex digits                 (default: fixed test uuid)
  ctime         integer seconds               (default: 1700000000)
  configs       [[name, text], ...]
  devices       [{"name": str, "size": int, "file": path|null, "emit": bool,
                  "fill": int byte value for data when no file (default: none = zeros)}]
                dev_ids are assigned 1.. in list order; "emit": false leaves the device's
                clusters out of the stream (default: true)
  extent_uuid   32 hex digits: put this uuid into every extent instead
  raw_name_blobs  [[dev_index, bytes-as-latin1-string]] override a device name blob
                (no NUL added), to make names without terminator
  header_size_delta  int added to the computed header_size field (checksum still valid)
  blob_size_override int for blob_buffer_size
"""
import hashlib
import json
import struct
import sys

CLUSTER = 65536
BLOCK = 4096


def build(spec):
    uuid = bytes.fromhex(spec.get("uuid", "0123456789abcdef0123456789abcdef"))
    ext_uuid = bytes.fromhex(spec["extent_uuid"]) if "extent_uuid" in spec else uuid
    ctime = spec.get("ctime", 1700000000)
    configs = spec.get("configs", [])
    devices = spec.get("devices", [])
    raw_names = {i: s.encode("latin1") for i, s in spec.get("raw_name_blobs", [])}

    blob = bytearray(b"\0")  # offset 0 is never used

    def add_blob(data):
        off = len(blob)
        blob.extend(struct.pack("<H", len(data)))
        blob.extend(data)
        return off

    cfg_names, cfg_data = [], []
    for name, text in configs:
        cfg_names.append(add_blob(name.encode("utf-8") + b"\0"))
        cfg_data.append(add_blob(text.encode("utf-8")))
    dev_ptrs = []
    for i, d in enumerate(devices):
        raw = raw_names.get(i, d["name"].encode("utf-8") + b"\0")
        dev_ptrs.append(add_blob(raw))

    blob_size = spec.get("blob_size_override", len(blob))
    header_size = 12288 + ((len(blob) + 511) // 512) * 512
    hdr = bytearray(header_size)
    hdr[0:4] = b"VMA\0"
    struct.pack_into(">I", hdr, 4, 1)
    hdr[8:24] = uuid
    struct.pack_into(">q", hdr, 24, ctime)
    struct.pack_into(">III", hdr, 48, 12288, blob_size,
                     header_size + spec.get("header_size_delta", 0))
    for i, (n, dptr) in enumerate(zip(cfg_names, cfg_data)):
        struct.pack_into(">I", hdr, 2044 + 4 * i, n)
        struct.pack_into(">I", hdr, 3068 + 4 * i, dptr)
    for i, d in enumerate(devices):
        off = 4096 + 32 * (i + 1)
        struct.pack_into(">IIQ", hdr, off, dev_ptrs[i], 0, d["size"])
    hdr[12288:12288 + len(blob)] = blob
    hdr[32:48] = hashlib.md5(bytes(hdr)).digest()

    out = bytearray(hdr)
    entries = []  # (dev_id, cluster, bytes)
    for i, d in enumerate(devices):
        if not d.get("emit", True):
            continue
        size = d["size"]
        data = b""
        if d.get("file"):
            with open(d["file"], "rb") as f:
                data = f.read()
        elif d.get("fill") is not None:
            data = bytes([d["fill"]]) * size
        for c in range((size + CLUSTER - 1) // CLUSTER):
            chunk = data[c * CLUSTER:(c + 1) * CLUSTER]
            chunk = chunk + b"\0" * (CLUSTER - len(chunk))
            if c == (size - 1) // CLUSTER:  # bytes past the device size are zero
                keep = size - c * CLUSTER
                chunk = chunk[:keep] + b"\0" * (CLUSTER - keep)
            entries.append((i + 1, c, chunk))

    for start in range(0, max(len(entries), 1), 58):
        group = entries[start:start + 58]
        eh = bytearray(512)
        eh[0:4] = b"VMAE"
        eh[8:24] = ext_uuid
        payload = bytearray()
        count = 0
        for slot, (dev_id, c, chunk) in enumerate(group):
            mask = 0
            for j in range(16):
                blk = chunk[j * BLOCK:(j + 1) * BLOCK]
                if any(blk):
                    mask |= 1 << j
                    payload.extend(blk)
                    count += 1
            struct.pack_into(">Q", eh, 40 + 8 * slot, (mask << 48) | (dev_id << 32) | c)
        struct.pack_into(">H", eh, 6, count)
        eh[24:40] = hashlib.md5(bytes(eh)).digest()
        out.extend(eh)
        out.extend(payload)
    return bytes(out)


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    data = build(spec)
    with open(sys.argv[2], "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
