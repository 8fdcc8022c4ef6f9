# tests/functional/web-lib.bash — vma-web for the web-*.sh tests.
#
#   start_web ARGS...   start $VMA_WEB --listen 127.0.0.1:0 --run-dir $WEB_RUN
#                       --backup-dir $WEB_BACKUP ARGS... in the background (log $T/web.log),
#                       wait for its "listening on URL" line; sets WEB_PID, WEB_URL,
#                       WEB_TOKEN (from the token file it created)
#   stop_web            SIGTERM, wait for exit status 0
#   web_vmad ID ARGS... start a vmad as VM ID: its monitor at $WEB_RUN/ID/qmp.sock
#   webpy ARGS <<EOF    python3 with tests/functional on its path and WEB_URL/WEB_TOKEN set
# Sources qmp-lib.bash (vmad, python3).
. "$(dirname "${BASH_SOURCE[0]}")/qmp-lib.bash"

VMA_WEB=${VMA_WEB:-$BUILDDIR/vma-web}
[ -x "$VMA_WEB" ] || fail "$VMA_WEB not built (make; it needs libsoup-3.0-dev)"
WEB_RUN=$T/run
WEB_BACKUP=$T/backup
mkdir -p "$WEB_RUN" "$WEB_BACKUP"
WEB_PID= WEB_URL= WEB_TOKEN=
WEB_LOG=$T/web.log
show_on_fail "$WEB_LOG" "vma-web log"

# In a sanitizer build: full stacks for leaks (glib has no frame pointers, so the fast
# unwinder stops at g_malloc) and the suppression of libsoup 3.2's own leak
# (tests/asan/lsan-suppressions.txt); vma-web is no hot path.
web_san_env=()
if [ -n "${ASAN_OPTIONS:-}" ]; then
    web_san_env=(ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0"
                 LSAN_OPTIONS="suppressions=$SRCDIR/tests/asan/lsan-suppressions.txt${LSAN_OPTIONS:+:$LSAN_OPTIONS}")
fi

start_web() {
    env "${web_san_env[@]}" "$VMA_WEB" --listen 127.0.0.1:0 --run-dir "$WEB_RUN" --backup-dir "$WEB_BACKUP" "$@" \
        >>"$WEB_LOG" 2>&1 </dev/null &
    WEB_PID=$!
    cleanup_pid "$WEB_PID"
    local i
    for i in $(seq 1 200); do
        WEB_URL=$(sed -n 's/^vma-web: listening on //p' "$WEB_LOG" | tail -1)
        [ -z "$WEB_URL" ] || break
        kill -0 "$WEB_PID" 2>/dev/null || fail "vma-web exited at start"
        sleep 0.05
    done
    [ -n "$WEB_URL" ] || fail "vma-web did not start listening in 10 s"
    local tf=$WEB_BACKUP/vma-web.token
    for a in "$@"; do
        [[ $a != --token-file=* ]] || tf=${a#--token-file=}
    done
    WEB_TOKEN=$(cat "$tf")
    export WEB_URL WEB_TOKEN
}

stop_web() {
    kill -TERM "$WEB_PID"
    local i
    for i in $(seq 1 600); do
        kill -0 "$WEB_PID" 2>/dev/null || break
        sleep 0.05
    done
    wait "$WEB_PID"
    local rc=$?
    forget_pid "$WEB_PID"
    [ "$rc" = 0 ] || fail "vma-web exit status $rc after SIGTERM"
    if grep -E "CRITICAL|WARNING|runtime error|Sanitizer" "$WEB_LOG" >&2; then
        fail "vma-web logged errors"
    fi
}

web_vmad() {
    local id=$1
    shift
    mkdir -p "$WEB_RUN/$id"
    start_vmad --monitor "$WEB_RUN/$id/qmp.sock" "$@"
}

webpy() {
    py "$@"
}
