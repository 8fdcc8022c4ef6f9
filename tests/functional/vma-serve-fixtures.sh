#!/bin/bash
# vma serve of the Proxmox fixtures (archives written by the deployed tool): every disk
# is an export named after its device, reads equal the source images, block status
# shows the zero blocks as holes, VM state streams are no exports, and SIGTERM ends the
# server cleanly (socket removed; the default private socket directory too).
. "$(dirname "$0")/lib.bash"
. "$SRCDIR/tests/functional/vma-serve-lib.bash"
need_tools qemu-img nbdinfo nbdcopy python3
D=$SRCDIR/tests/data

check_export() {    # URI SOURCE
    qemu-img compare -f raw -F raw "$2" "$1" >/dev/null || fail "$1 differs from $2"
    nbdcopy "$1" "$T/copy.raw" || fail "nbdcopy $1"
    cmp "$T/copy.raw" "$2" || fail "nbdcopy of $1 differs from $2"
    zero_map "$2" "$(stat -c %s "$2")" >"$T/want.map"
    nbd_map "$1" >"$T/got.map"
    diff "$T/want.map" "$T/got.map" || fail "nbdinfo --map of $1 is not the zero map of $2"
}

start_serve "$D/ref-2dev.vma"
printf '%s\n' "nbd+unix:///drive-scsi0?socket=$SERVE_SOCK" \
    "nbd+unix:///drive-efidisk0?socket=$SERVE_SOCK" | diff - "$T/uris" || fail "URIs"
nbdinfo --list --json "nbd+unix://?socket=$SERVE_SOCK" |
    python3 -c 'import json,sys; print(" ".join(e["export-name"] for e in json.load(sys.stdin)["exports"]))' \
    >"$T/names"
[ "$(cat "$T/names")" = "drive-scsi0 drive-efidisk0" ] || fail "export names: $(cat "$T/names")"
check_export "$(sed -n 1p "$T/uris")" "$D/a.raw"
check_export "$(sed -n 2p "$T/uris")" "$D/b.raw"
nbdinfo --json "$(sed -n 1p "$T/uris")" | grep -q '"is_read_only": true' ||
    fail "the export is not read-only"
stop_serve

start_serve "$D/ref-multiextent.vma"
check_export "$(cat "$T/uris")" "$D/c.raw"
stop_serve

start_serve "$D/tiny.vma"
check_export "$(cat "$T/uris")" "$D/tiny.raw"
stop_serve

# a VM state stream is not a disk
serve_fails "the archive holds no disk" "$D/vms.vma"
rm -f "$T/vs.vma"
"$VMA" create "$T/vs.vma" drive-scsi0="$D/tiny.raw" vmstate="$D/vmstate.raw" || fail "create"
start_serve "$T/vs.vma"
[ "$(cat "$T/uris")" = "nbd+unix:///drive-scsi0?socket=$SERVE_SOCK" ] ||
    fail "vmstate became an export: $(cat "$T/uris")"
stop_serve

# default socket: a private directory, removed on exit
: >"$T/serve.log"
"$VMA" serve "$D/tiny.vma" >"$T/uris" 2>"$T/serve.log" &
SERVE_PID=$!
for i in $(seq 1 200); do
    grep -q "^vma serve: serving" "$T/serve.log" && break
    sleep 0.05
done
uri=$(cat "$T/uris")
sock=${uri#*socket=}
dir=$(dirname "$sock")
[ -S "$sock" ] || fail "no socket at $sock"
[ "$(stat -c %a "$dir")" = 700 ] || fail "socket directory $dir is not private"
check_export "$uri" "$D/tiny.raw"
kill -INT "$SERVE_PID"
wait "$SERVE_PID" || fail "vma serve exited with $? after SIGINT"
SERVE_PID=
[ ! -e "$dir" ] || fail "vma serve left $dir"
echo "PASS"
