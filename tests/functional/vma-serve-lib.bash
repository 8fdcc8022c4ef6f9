# tests/functional/vma-serve-lib.bash — helpers of the `vma serve` tests (sourced after
# lib.bash, whose $T, fail, skip and need_tools they use).
#
#   start_serve ARGS...      run `vma serve ARGS... --socket $T/serve.sock` in the
#                            background; returns once it printed its URIs (SERVE_PID,
#                            SERVE_SOCK, the URIs in $T/uris, one per line)
#   stop_serve               SIGTERM, expect exit 0 and the socket removed
#   serve_fails MSG ARGS...  `vma serve ARGS...` must exit 1 with MSG in its one line
#   mkimage FILE SIZE SEED   a random sparse image: random 4 KiB-aligned extents of
#                            random data, holes between them
#   zero_map FILE SIZE       the image's 4 KiB blocks as runs "OFFSET LENGTH data|zero"
#   nbd_map URI              the export's nbdinfo --map as the same runs

VMA=${VMA:-$BUILDDIR/vma}
SERVE_PID=
SERVE_SOCK=

_serve_cleanup() {
    if [ -n "$SERVE_PID" ]; then
        kill -9 "$SERVE_PID" 2>/dev/null
        wait "$SERVE_PID" 2>/dev/null
    fi
    _cleanup
}
trap _serve_cleanup EXIT

start_serve() {
    SERVE_SOCK=$T/serve.sock
    : >"$T/uris"
    : >"$T/serve.log"    # before the start: the last server's "serving" line must go
    "$VMA" serve "$@" --socket "$SERVE_SOCK" >"$T/uris" 2>"$T/serve.log" &
    SERVE_PID=$!
    local i
    for i in $(seq 1 200); do
        grep -q "^vma serve: serving" "$T/serve.log" 2>/dev/null && return 0
        if ! kill -0 "$SERVE_PID" 2>/dev/null; then
            wait "$SERVE_PID"
            SERVE_PID=
            cat "$T/serve.log" >&2
            fail "vma serve $* did not start"
        fi
        sleep 0.05
    done
    fail "vma serve $* did not print its URIs in 10 s"
}

stop_serve() {
    kill -TERM "$SERVE_PID"
    local rc=0
    wait "$SERVE_PID" || rc=$?
    SERVE_PID=
    [ $rc -eq 0 ] || fail "vma serve exited with $rc after SIGTERM: $(cat "$T/serve.log")"
    [ ! -e "$SERVE_SOCK" ] || fail "vma serve left its socket $SERVE_SOCK"
}

serve_fails() {
    local msg=$1 rc=0
    shift
    "$VMA" serve "$@" --socket "$T/fail.sock" >"$T/fail.out" 2>"$T/fail.err" || rc=$?
    [ $rc -eq 1 ] || fail "vma serve $* exited with $rc, expected 1: $(cat "$T/fail.err")"
    grep -qF -- "$msg" "$T/fail.err" ||
        fail "vma serve $*: message '$(cat "$T/fail.err")' lacks '$msg'"
    [ "$(wc -l <"$T/fail.err")" -eq 1 ] || fail "vma serve $*: more than one line on stderr"
    [ ! -s "$T/fail.out" ] || fail "vma serve $* printed URIs: $(cat "$T/fail.out")"
    [ ! -e "$T/fail.sock" ] || fail "vma serve $* left its socket"
}

mkimage() {
    python3 - "$1" "$2" "$3" <<'PY'
import os, random, sys
path, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
with open(path, "wb") as f:
    f.truncate(size)
    for _ in range(max(4, size // (4 << 20))):
        off = rnd.randrange(0, size) // 4096 * 4096
        n = min(size - off, rnd.choice([4096, 12288, 65536, 65536 * 3 + 8192, 1 << 20]))
        f.seek(off)
        f.write(bytes(rnd.randrange(1, 256) for _ in range(min(n, 512))) * (n // 512)
                + bytes(rnd.randrange(1, 256) for _ in range(n % 512)))
PY
}

zero_map() {
    python3 - "$1" "$2" <<'PY'
import sys
path, size = sys.argv[1], int(sys.argv[2])
runs = []
with open(path, "rb") as f:
    off = 0
    while off < size:
        b = f.read(4096)
        kind = "zero" if b.count(0) == len(b) else "data"
        if runs and runs[-1][2] == kind:
            runs[-1][1] += len(b)
        else:
            runs.append([off, len(b), kind])
        off += len(b)
for r in runs:
    print(r[0], r[1], r[2])
PY
}

nbd_map() {
    nbdinfo --map "$1" | awk '{ k = ($3 == 3) ? "zero" : "data";
        if (n > 0 && k == kind) { len += $2 } else { if (n > 0) print off, len, kind;
        off = $1; len = $2; kind = k; n++ } } END { if (n > 0) print off, len, kind }'
}
