# tests/functional/faults-lib.bash — fault injection for the faults-*.sh tests (sourced,
# after tests/lib.bash or a library that sources it: $T, fail, on_fail).
#
#   faulty SPEC CMD [ARGS...]   run CMD (a program or a shell function such as start_vmad)
#                               with tests/faultinj/faultinj.c preloaded and FAULTINJ=SPEC
#                               (the rule syntax is in faultinj.c). Every injected fault
#                               appends a line to $FAULT_LOG.
#   faults_injected [PATTERN]   how many lines of $FAULT_LOG match PATTERN (grep -E)
#   fault_log_reset             empty $FAULT_LOG
#   fd_count PID                the number of open descriptors of PID
#
# A sanitizer build links its runtime dynamically, and that runtime must come first in
# the list of preloaded libraries: faulty preloads it before the shim.

FAULTINJ_SO=${FAULTINJ_SO:-$BUILDDIR/tests/faultinj.so}
[ -f "$FAULTINJ_SO" ] || fail "$FAULTINJ_SO not built (make test-build)"
FAULT_LOG=$T/faults.log

_fault_preload() {      # _fault_preload PROGRAM: the LD_PRELOAD value for PROGRAM
    local rt
    rt=$(ldd "$1" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*lib[at]san\.so[^ ]*\) .*/\1/p' | head -n 1)
    echo "${rt:+$rt }$FAULTINJ_SO"
}

faulty() {
    local spec=$1 prog=$2 pre
    shift
    case $prog in
    start_vmad | spawn_vmad) pre=$(_fault_preload "$VMAD") ;;
    *) pre=$(_fault_preload "$(command -v "$prog")") ;;
    esac
    # start_vmad: only vmad runs with the shim, not the wait for its sockets
    if [ "$prog" = start_vmad ]; then
        faulty "$spec" spawn_vmad "${@:2}"
        wait_vmad
        return
    fi
    FAULTINJ=$spec FAULTINJ_LOG=$FAULT_LOG FAULTINJ_RESTORE_PRELOAD=${LD_PRELOAD:-} \
        LD_PRELOAD=$pre "$@"
}

faults_injected() {
    [ -f "$FAULT_LOG" ] || { echo 0; return; }
    grep -cE -- "${1:-.}" "$FAULT_LOG"
}

fault_log_reset() {
    : >"$FAULT_LOG"
}

fd_count() {
    ls "/proc/$1/fd" 2>/dev/null | wc -l
}

# A failing test also shows the last injected faults.
_faults_show() {
    [ -s "$FAULT_LOG" ] || return 0
    echo "--- injected faults (last lines of $(wc -l <"$FAULT_LOG")) ---" >&2
    tail -n 10 "$FAULT_LOG" >&2
}
on_fail _faults_show
