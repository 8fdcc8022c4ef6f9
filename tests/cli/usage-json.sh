#!/usr/bin/env bash
# --help, --version, usage errors (exit 2), --json output of list and verify, and a
# closed stdout (EPIPE is an error with a message, not a death by SIGPIPE).
. "$(dirname "$0")/lib.bash"

D=$TESTDATA

expect_ok --help
case "$out" in *"vma list"*"vma create"*) ;; *) fail "--help: $out" ;; esac
expect_ok --version
case "$out" in "vma (vmabackup) "[0-9]*) ;; *) fail "--version: $out" ;; esac
for cmd in list config verify extract create; do
    expect_ok "$cmd" --help
    case "$out" in "Usage: vma $cmd"*) ;; *) fail "$cmd --help: $out" ;; esac
    expect_ok "$cmd" -h
done

expect_usage
expect_usage frobnicate
expect_usage list
expect_usage list a b
expect_usage list --bogus "$D/tiny.vma"
expect_usage verify -x "$D/tiny.vma"
expect_usage config -c
expect_usage extract "$D/tiny.vma"
expect_usage extract -d "" "$D/tiny.vma" "$T/x"
[ ! -e "$T/x" ] || fail "a usage error created the directory"

# ---- --json ---------------------------------------------------------------------------
expect_ok list --json "$D/ref-2dev.vma"
printf '%s' "$out" | python3 -m json.tool >/dev/null || fail "list --json is not JSON: $out"
python3 - "$out" <<'EOF' || fail "list --json fields: $out"
import json, sys
j = json.loads(sys.argv[1])
assert j["ctime"] == 1795729236, j["ctime"]
assert len(j["uuid"]) == 36
assert j["configs"] == [{"name": "qemu-server.conf", "size": 99},
                        {"name": "qemu-server.fw", "size": 20}], j["configs"]
assert j["devices"] == [
    {"dev_id": 1, "name": "drive-scsi0", "size": 1050112, "vmstate": False},
    {"dev_id": 2, "name": "drive-efidisk0", "size": 540672, "vmstate": False}], j["devices"]
EOF
expect_ok list --json "$D/vms.vma"
python3 -c 'import json,sys; d=json.loads(sys.argv[1])["devices"][0]; assert d["vmstate"] is True and d["name"]=="vmstate"' "$out" ||
    fail "vmstate in --json: $out"

expect_ok verify --json "$D/ref-2dev.vma.zst"
python3 - "$out" <<'EOF' || fail "verify --json: $out"
import json, sys
j = json.loads(sys.argv[1])
assert j["ok"] is True
assert j["total_bytes_read"] == 26 * 65536, j
assert j["clusters"] == 26
assert 0 < j["sparse_bytes"] < j["total_bytes_read"]
assert j["compression"] == "zstd"
assert len(j["devices"]) == 2
EOF
# -v with --json still prints only the JSON object
expect_ok verify -v --json "$D/tiny.vma"
printf '%s' "$out" | python3 -m json.tool >/dev/null || fail "verify -v --json: $out"

run_vma verify --json "$TESTDATA/negative/trunc-ext-boundary.vma"
[ "$rc" -eq 1 ] || fail "verify --json of a broken archive: exit $rc"
python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert j["ok"] is False and "missing" in j["error"]' "$out" ||
    fail "verify --json failure object: $out"

# ---- a closed stdout --------------------------------------------------------------------
# `vma config` into a pipe whose reader is gone: one message, status 1, no SIGPIPE death.
set -o pipefail
"$VMA" verify -v "$D/ref-multiextent.vma" 2>"$T/pipe.err" | true
rc=$?
set +o pipefail
[ "$rc" -le 1 ] || fail "verify -v into a closed pipe: exit $rc (signal?)"
if [ "$rc" -eq 1 ]; then
    grep -q '^vma: .*Broken pipe' "$T/pipe.err" || fail "EPIPE message: $(cat "$T/pipe.err")"
fi
exit 0
