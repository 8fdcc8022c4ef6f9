#!/usr/bin/env bash
# `vma extract -r FIFO`, Proxmox's restore path, into two targets that hold old data: the
# listing is printed before the map is read; write-zeros 0 keeps the old bytes in zero
# blocks, 1 writes zeros; a target up to 4 MiB larger than its device is fine and keeps
# its bytes past the device's end; DIR gets the config, no raw files.
. "$(dirname "$0")/restore-map.bash"

# same_data_ff TARGET SOURCE: data blocks equal, the source's zero blocks still 0xff
same_data_ff() {
    python3 - "$1" "$2" <<'EOF'
import sys
t = open(sys.argv[1], "rb").read()
s = open(sys.argv[2], "rb").read()
for i in range(0, len(s), 4096):
    sb, tb = s[i:i + 4096], t[i:i + 4096]
    want = b"\xff" * len(sb) if not any(sb) else sb
    if tb != want:
        sys.exit("block %d: not as expected" % (i // 4096))
EOF
}

fill_ff "$T/t0" 1048576
fill_ff "$T/t1" $((200000 + 4096)) # up to 4 MiB larger is fine
run_map "$T/r1" "0:drive-scsi0=$T/t0
1:drive-scsi1=$T/t1
"
[ "$rc" -eq 0 ] || fail "restore map: exit $rc: $err"
[ "$out" = "$("$VMA" list "$T/src.vma")" ] || fail "listing before the map: $out"
same_data_ff "$T/t0" "$I/a.raw" || fail "write-zeros 0: zero blocks were written"
cmp -n 200000 "$T/t1" "$I/b.raw" || fail "drive-scsi1 data differs"
[ "$(tail -c 4096 "$T/t1" | tr -d '\377' | wc -c)" -eq 0 ] || fail "bytes past the device size changed"
cmp "$T/r1/qemu-server.conf" "$I/qemu-server.conf" || fail "config not written"
[ -z "$(find "$T/r1" -name '*.raw')" ] || fail "-r created raw files in DIR"

fill_ff "$T/t2" 1048576
fill_ff "$T/t3" 200000
run_map "$T/r2" "1:drive-scsi0=$T/t2
0:drive-scsi1=$T/t3
"
[ "$rc" -eq 0 ] || fail "restore map 2: $err"
cmp "$T/t2" "$I/a.raw" || fail "write-zeros 1: zero blocks not zeroed"
exit 0
