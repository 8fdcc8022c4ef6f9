# tests/functional/faults-lib.bash — fault injection for the faults-*.sh tests (sourced,
# after lib.bash of tests/cli or qmp-lib.bash, which provide $T and fail).
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
    start_vmad) pre=$(_fault_preload "$VMAD") ;;
    *) pre=$(_fault_preload "$(command -v "$prog")") ;;
    esac
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
eval "_faults_fail_orig() $(declare -f fail | tail -n +2)"
fail() {
    if [ -s "$FAULT_LOG" ]; then
        echo "--- injected faults (last lines of $(wc -l <"$FAULT_LOG")) ---" >&2
        tail -n 10 "$FAULT_LOG" >&2
    fi
    _faults_fail_orig "$@"
}
