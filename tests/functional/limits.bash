# tests/functional/limits.bash — what the limits-*.sh tests share (sourced): qmp-lib.bash,
# plain_build (1 unless vma is built with a sanitizer: peak memory is checked only then)
# and peak_kib. The limits are those of docs/security.md, "Limits".
. "$(dirname "${BASH_SOURCE[0]}")/qmp-lib.bash"
export VMA=${VMA:-$BUILDDIR/vma}
[ -x "$VMA" ] || fail "$VMA not built"
requires python3

# Peak memory is checked only in a plain build (a sanitizer's shadow memory and
# quarantine would dominate it).
plain_build=1
ldd "$VMA" 2>/dev/null | grep -qE 'lib[at]san\.so' && plain_build=0

# peak_kib CMD...: run CMD, print "EXIT MAXRSS_KIB" (stdout and stderr in $T/cmd.out)
peak_kib() {
    python3 - "$@" <<'EOF'
import os, resource, subprocess, sys
p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
open(os.environ["T"] + "/cmd.out", "wb").write(p.stdout)
print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
EOF
}
export T
