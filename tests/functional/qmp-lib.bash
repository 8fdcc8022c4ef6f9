# tests/functional/qmp-lib.bash — for the vmad/QMP functional tests (sourced).
#
# Everything lives in tests/lib.bash (start_vmad, quit_vmad, wait_socket, wait_exit, py,
# check_log, fail, skip, requires, the cleanup at exit, $T); this file only checks what
# every QMP test needs: a built vmad and python3 (the QMP client is tests/functional/qmp.py).
. "$(dirname "${BASH_SOURCE[0]}")/../lib.bash"

[ -x "$VMAD" ] || fail "$VMAD not built (make)"
requires python3

# The EXIT trap's function under the name older scripts call from a trap of their own.
_qmp_cleanup() {
    _cleanup
}
