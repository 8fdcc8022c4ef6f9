#!/usr/bin/env bash
# A real guest on vmad's NBD exports: QEMU (TCG) boots the test kernel with its virtio
# disks on vmad exports, the guest writes patterns with O_DIRECT, reads them back and
# powers off; then the host checks the image files byte for byte.
#
#   1. one 64 MiB disk, prefilled with a known pattern in its first 40 MiB: the guest's
#      regions land in the prefilled part, in the hole and on the last block; everything
#      it did not write must be unchanged.
#   2. two disks (vda 64 MiB, vdb 32 MiB, one server, two exports): each gets its own
#      pattern (the pattern names the disk, so a swapped or mixed-up disk fails).
#   3. a verify-only boot after the host corrupted one block of vdb must report a failure
#      naming /dev/vdb: the guest-side check can fail.
#
# The server is vmad; see GUEST_NBD_SERVER in guest.bash.
. "$(dirname "$0")/guest.bash"

guest_prepare
sock=$T/nbd.sock
host_check() {
    python3 "$GUEST_CHECK" "$@" || fail "host check: guest-check.py $*"
}
boot() {
    local t0=$SECONDS res
    guest_boot "$@" || fail "guest_boot $*"
    res=$(guest_wait "$GUEST_PID")
    echo "boot ($3): $res after $((SECONDS - t0)) s"
    RESULT=$res
}

# ---- 1: one disk ------------------------------------------------------------------
img=$T/a.raw
truncate -s 64M "$img"
python3 - "$img" <<'EOF' || fail "prefill $img"
import random, sys
with open(sys.argv[1], "r+b") as f:
    f.write(random.Random(4242).randbytes(40 << 20))
EOF
cp --sparse=always "$img" "$T/a.orig"
regions=0:1M,20M:3M,48M:2M,$(((64 << 20) - 4096)):4K

guest_server_start "$sock" drive-scsi0="$img" || fail "start the NBD server"
boot "$sock" drive-scsi0 write-verify seed=11 regions="$regions"
[ "$RESULT" = "GUEST-RESULT: ok" ] || fail "one disk: $RESULT"
guest_server_stop
host_check pattern "$img" --seed 11 --disk 0 --regions "$regions" --orig "$T/a.orig"
echo "one disk: image holds the guest's pattern, the rest is unchanged"

# ---- 2: two disks -----------------------------------------------------------------
rm -f "$img"
imga=$T/a2.raw imgb=$T/b2.raw
truncate -s 64M "$imga"
truncate -s 32M "$imgb"
regions=0:512K,8M:2M,$(((32 << 20) - 8192)):8K
guest_server_start "$sock" drive-scsi0="$imga" drive-scsi1="$imgb" || fail "start the NBD server"
boot "$sock" drive-scsi0,drive-scsi1 write-verify seed=12 regions="$regions"
[ "$RESULT" = "GUEST-RESULT: ok" ] || fail "two disks: $RESULT"
guest_server_stop
truncate -s 64M "$T/zero64" && truncate -s 32M "$T/zero32"
host_check pattern "$imga" --seed 12 --disk 0 --regions "$regions" --orig "$T/zero64"
host_check pattern "$imgb" --seed 12 --disk 1 --regions "$regions" --orig "$T/zero32"
echo "two disks: each image holds its own pattern, the rest is zero"

# ---- 3: the guest's check fails on corrupted data --------------------------------
# rewrite one block of vdb's second region with disk 0's pattern
host_check fill "$imgb" --seed 12 --disk 0 --regions $(((8 << 20) + 65536)):4K
guest_server_start "$sock" drive-scsi0="$imga" drive-scsi1="$imgb" || fail "start the NBD server"
boot "$sock" drive-scsi0,drive-scsi1 verify seed=12 regions="$regions" 2>/dev/null
case "$RESULT" in
"GUEST-RESULT: fail /dev/vdb at 8388608+2097152: data differs"*) ;;
*) fail "verify after corrupting vdb: expected a failure naming /dev/vdb, got: $RESULT" ;;
esac
guest_server_stop
echo "corrupted vdb: the guest reports it"
echo "PASS"
