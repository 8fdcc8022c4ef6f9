#!/usr/bin/env bash
# The guest's loop mode on a vmad export, as the live-backup tests use it: the guest
# rewrites a block range pass after pass (GUEST-GEN lines on its console) until the host
# writes the stop marker through a second NBD connection to the same export; after power
# off the whole range must hold the last announced pass, the marker block the marker, and
# every other block its original content.
#
# The server is vmad; see GUEST_NBD_SERVER in guest.bash.
. "$(dirname "$0")/guest.bash"

guest_prepare
sock=$T/nbd.sock

first=256 blocks=512 stop=16
img=$T/a.raw
truncate -s 64M "$img"
python3 - "$img" <<'EOF' || fail "prefill $img"
import random, sys
with open(sys.argv[1], "r+b") as f:
    f.write(random.Random(77).randbytes(8 << 20))
EOF
cp "$img" "$T/a.orig"

guest_server_start "$sock" drive-scsi0="$img" || fail "start the NBD server"
t0=$SECONDS
# seconds= is only a safety net: the stop marker must end the loop
guest_boot "$sock" drive-scsi0 loop first=$first blocks=$blocks seconds=600 stop=$stop
guest_wait_for "$GUEST_PID" '^GUEST-GEN 2$' || fail "guest did not complete two passes"
echo "two passes after $((SECONDS - t0)) s"
guest_stop_loop "$sock" drive-scsi0 $stop || fail "write the stop marker with qemu-io"
res=$(guest_wait "$GUEST_PID")
[ "$res" = "GUEST-RESULT: ok" ] || fail "loop: $res"
guest_server_stop
gens=$(guest_last_gen "$GUEST_PID")
end=$(tr -d '\r' <"$GUEST_LOG" | grep -a -o 'GUEST-LOOP-END .*')
echo "guest: $end after $((SECONDS - t0)) s"
[ "$end" = "GUEST-LOOP-END gens=$gens reason=stop" ] ||
    fail "expected the loop to end by the stop marker after GUEST-GEN $gens, got '$end'"

python3 "$GUEST_CHECK" loop "$img" --first $first --blocks $blocks --min-gen "$gens" --max-gen "$gens" ||
    fail "the range does not hold pass $gens"
python3 - "$img" "$T/a.orig" $first $blocks $stop <<'EOF' || fail "blocks outside the loop range"
import sys
img, orig = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
first, blocks, stop = (int(x) for x in sys.argv[3:6])
B = 4096
if img[stop * B:(stop + 1) * B] != b"S" * B:
    sys.exit("stop block %d does not hold the marker" % stop)
for lo, hi in ((0, stop * B), ((stop + 1) * B, first * B), ((first + blocks) * B, len(orig))):
    if img[lo:hi] != orig[lo:hi]:
        sys.exit("bytes %d..%d changed" % (lo, hi))
EOF
echo "PASS"
