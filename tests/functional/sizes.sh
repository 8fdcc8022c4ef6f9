#!/usr/bin/env bash
# One set of size forms for every size option of both programs (docs/sizes.md): what
# `vmad --backup-buffer-size` accepts, `vma backup --speed` accepts too, with the same
# value, and both refuse the same forms with a message that names the option and quotes
# the value. `vma backup` talks to a fake QMP server that logs the backup arguments.
. "$(dirname "$0")/qmp-lib.bash"
need_tools timeout

VMA=${VMA:-$BUILDDIR/vma}
[ -x "$VMA" ] || fail "$VMA not built (make)"

# forms and their values (bytes); the old --speed parser refused the B forms, the old
# --backup-buffer-size parser the lower-case b/ib ones
ACCEPT="65536:65536 64K:65536 64k:65536 64KB:65536 64kib:65536 10MB:10485760
10M:10485760 256mb:268435456 1G:1073741824 1GiB:1073741824 2T:2199023255552"
REFUSE="'' -1 +64K 1.5G 10Q 64KBB 0x10000 ' 64K' 64K\  1B"

# ---- vmad --backup-buffer-size ----------------------------------------------------------
for pair in $ACCEPT; do
    form=${pair%%:*}
    rm -f "$T/q.sock"
    start_vmad --monitor "$T/q.sock" --backup-buffer-size "$form"
    wait_socket "$T/q.sock"
    kill "$VMAD_PID"
    wait_exit 10
    [ "$VMAD_RC" = 0 ] || fail "vmad --backup-buffer-size $form: exit $VMAD_RC"
done
eval "set -- $REFUSE"
for form in "$@"; do
    out=$(timeout 10 "$VMAD" --backup-buffer-size "$form" 2>&1)
    rc=$?
    [ "$rc" = 1 ] || fail "vmad --backup-buffer-size '$form': exit $rc: $out"
    [ "$out" = "vmad: --backup-buffer-size $form: '$form' is not a size (a byte count, or a number with K, M, G or T, as in 64K, 10MB or 1GiB)" ] ||
        fail "vmad --backup-buffer-size '$form': $out"
done
out=$(timeout 10 "$VMAD" --backup-buffer-size 99999999999999999999 2>&1)
[ "$out" = "vmad: --backup-buffer-size 99999999999999999999: '99999999999999999999' is too large: at most 18446744073709551615" ] ||
    fail "overflow: $out"
out=$(timeout 10 "$VMAD" --backup-buffer-size 63K 2>&1)
[ "$out" = "vmad: --backup-buffer-size 63K: '63K' is too small: at least 64K" ] || fail "63K: $out"

# ---- vma backup --speed -----------------------------------------------------------------
cat >"$T/fake.py" <<'PYEOF'
import json, os, socket, sys
path, log = sys.argv[1:3]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
# the socket appears under its name only once it listens (a client that sees the file
# must not be refused), and the server gives up if no client comes
srv.bind(path + ".new")
srv.listen(1)
os.rename(path + ".new", path)
srv.settimeout(30)
conn, _ = srv.accept()
conn.settimeout(None)
f = conn.makefile("rwb")
f.write(b'{"QMP": {"version": {}, "capabilities": []}}\r\n'); f.flush()
for line in f:
    cmd = json.loads(line)
    if cmd["execute"] == "backup":
        with open(log, "w") as out:
            out.write(json.dumps(cmd["arguments"].get("speed")))
        f.write(json.dumps({"error": {"class": "GenericError", "desc": "stop here"},
                            "id": cmd["id"]}).encode() + b"\r\n")
        f.flush()
        break
    f.write(json.dumps({"return": {}, "id": cmd["id"]}).encode() + b"\r\n"); f.flush()
PYEOF
for pair in $ACCEPT 0:0 9223372036854775807:9223372036854775807; do
    form=${pair%%:*} want=${pair#*:}
    rm -f "$T/f.sock" "$T/speed"
    python3 "$T/fake.py" "$T/f.sock" "$T/speed" &
    SRV=$!
    for _ in $(seq 1 100); do [ -S "$T/f.sock" ] && break; sleep 0.05; done
    timeout 10 "$VMA" backup --qmp "$T/f.sock" -q --speed "$form" "$T/x.vma" 2>"$T/err"
    rc=$?
    wait "$SRV"
    [ "$rc" = 1 ] && grep -q "stop here" "$T/err" || fail "--speed $form: exit $rc: $(cat "$T/err")"
    [ "$(cat "$T/speed")" = "$want" ] || fail "--speed $form sent $(cat "$T/speed"), not $want"
done
eval "set -- $REFUSE 9223372036854775808 8388608T"
for form in "$@"; do
    timeout 10 "$VMA" backup --qmp "$T/none.sock" --speed "$form" "$T/x.vma" 2>"$T/err"
    rc=$?
    [ "$rc" = 2 ] || fail "--speed '$form': exit $rc: $(cat "$T/err")"
    case $form in
    9223372036854775808|8388608T) what="is too large: at most 9223372036854775807" ;;
    *) what="is not a size (a byte count, or a number with K, M, G or T, as in 64K, 10MB or 1GiB)" ;;
    esac
    [ "$(cat "$T/err")" = "vma backup: --speed: '$form' $what (try 'vma backup --help')" ] ||
        fail "--speed '$form': $(cat "$T/err")"
done
exit 0
