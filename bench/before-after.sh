#!/usr/bin/env bash
# before-after.sh — an old and a new vmad side by side in one run: the numbers a change
# of the daemon must not make worse (issue 9's before/after table).
#
# The old binaries are built from the git revision OLD_REV into a temporary
# `git worktree` under bench/scratch (removed at the end); the new ones are this tree's
# build directory ($BUILDDIR, default build/), brought up to date with `make` first.
# Both builds get the same make arguments (MAKE_ARGS). Then three benchmarks run, each
# with the old binary as extra rows interleaved with the new one (VMAD_OLD=):
#
#   bench/nbd-bench.sh       SERVERS="ours old", JOBS=randwrite-4k: 4 KiB random-write
#                            IOPS (and server CPU per request) over NBD
#   bench/backup-bench.sh    ROWS="vmad-file old-file vmad-exec old-exec": live backup
#                            time to a new file and to exec:cat >/dev/null
#   bench/backup-latency.sh  CASES="vmad-none old-none vmad-backup old-backup": guest
#                            4 KiB write latency (p99) with and without a backup into
#                            exec:pv -qL 20m
#
# Each script's own tables are printed as it finishes; at the end a summary collects
# their "Before/after" rows (medians; new / old: below 1 is better for times, latencies,
# CPU and memory, above 1 for IOPS and MiB/s), the issue's four measurements first.
# Progress goes to stderr, the tables to stdout: `bash bench/before-after.sh | tee FILE`.
# The defaults take about 10–15 minutes on a 2-CPU machine (as root; without root the
# page cache cannot be dropped and only warm-cache numbers are taken).
#
# Environment:
#   OLD_REV=            (required) the old revision: a commit, tag or branch, e.g.
#                       OLD_REV=main or OLD_REV=$(git merge-base HEAD main)
#   BUILDDIR=build      the new build (of this tree)
#   BUILD_NEW=1         0: use $BUILDDIR as it is, without running make
#   MAKE_ARGS=          extra arguments for both builds, e.g. "WERROR=1"; -j2 is always given
#   RUNS=5              runs of nbd-bench.sh and backup-bench.sh
#   NBD_RUNTIME=5       seconds per fio job (nbd-bench.sh RUNTIME)
#   NBD_SIZE_MIB=256    NBD image size (nbd-bench.sh SIZE_MIB)
#   NBD_JOBS=randwrite-4k   nbd-bench.sh JOBS (all four: "randwrite-4k randread-4k
#                       write-1M read-1M")
#   SIZE=2G             backup-bench.sh image size
#   BACKUP_CACHE=       backup-bench.sh CACHE (default: both as root, else warm)
#   LAT_RUNS=3          runs of backup-latency.sh
#   LAT_SIZE=1G         backup-latency.sh image size
#   LAT_RUNTIME=15      seconds of fio per latency case (backup-latency.sh RUNTIME)
#   LAT_CACHE=          backup-latency.sh CACHE (default: drop as root, else warm)
#   ONLY="nbd backup latency"   which of the three to run
#   KEEP_OLD=1          keep the old worktree and its build (prints where)
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
SRCDIR=$(cd "$HERE/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
case "$BUILDDIR" in /*) ;; *) BUILDDIR=$SRCDIR/$BUILDDIR ;; esac
BUILD_NEW=${BUILD_NEW:-1}
MAKE_ARGS=${MAKE_ARGS:-}
RUNS=${RUNS:-5}
NBD_RUNTIME=${NBD_RUNTIME:-5}
NBD_SIZE_MIB=${NBD_SIZE_MIB:-256}
NBD_JOBS=${NBD_JOBS:-randwrite-4k}
SIZE=${SIZE:-2G}
BACKUP_CACHE=${BACKUP_CACHE:-}
LAT_RUNS=${LAT_RUNS:-3}
LAT_SIZE=${LAT_SIZE:-1G}
LAT_RUNTIME=${LAT_RUNTIME:-15}
DROP=/proc/sys/vm/drop_caches
if [ -z "${LAT_CACHE:-}" ]; then
    if [ -w "$DROP" ]; then LAT_CACHE=drop; else LAT_CACHE=warm; fi
fi
ONLY=${ONLY:-nbd backup latency}

die() { echo "before-after: $*" >&2; exit 1; }
log() { echo "before-after: $*" >&2; }

[ -n "${OLD_REV:-}" ] || die "set OLD_REV to the old revision (e.g. OLD_REV=main)"
for b in $ONLY; do
    case $b in nbd|backup|latency) ;; *) die "ONLY: unknown benchmark '$b' (nbd backup latency)" ;; esac
done
git -C "$SRCDIR" rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
    die "the source tree is not a git work tree"
old_commit=$(git -C "$SRCDIR" rev-parse --verify --quiet "$OLD_REV^{commit}") ||
    die "OLD_REV=$OLD_REV is not a commit"
new_desc=$(git -C "$SRCDIR" rev-parse --short HEAD)
[ -z "$(git -C "$SRCDIR" status --porcelain --untracked-files=no)" ] ||
    new_desc+=" + uncommitted changes"

mkdir -p "$HERE/scratch"
SCRATCH=$(mktemp -d "$HERE/scratch/before-after.XXXXXX")
OLD_TREE=$SCRATCH/old
cleanup() {
    if [ "${KEEP_OLD:-0}" = 1 ]; then
        log "old tree kept: $OLD_TREE (remove with: git worktree remove --force $OLD_TREE)"
        return
    fi
    if [ -d "$OLD_TREE" ]; then
        git -C "$SRCDIR" worktree remove --force "$OLD_TREE" >/dev/null 2>&1 || true
    fi
    rm -rf "$SCRATCH"
    git -C "$SRCDIR" worktree prune >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# build DIR WHAT LOG [MAKE-ARGUMENT...]: make in DIR; on failure show the log's tail and stop
build() {
    local dir=$1 what=$2 blog=$3
    shift 3
    log "building $what ..."
    # shellcheck disable=SC2086
    if ! make -C "$dir" -j2 $MAKE_ARGS "$@" >"$blog" 2>&1; then
        tail -n 20 "$blog" >&2
        die "the build of $what failed (log above)"
    fi
}

log "old tree: $OLD_REV = ${old_commit:0:12}, a worktree under bench/scratch"
git -C "$SRCDIR" worktree add --detach "$OLD_TREE" "$old_commit" >"$SCRATCH/worktree.log" 2>&1 ||
    { cat "$SCRATCH/worktree.log" >&2; die "git worktree add failed"; }
build "$OLD_TREE" "the old tree ($OLD_REV)" "$SCRATCH/build-old.log"
if [ "$BUILD_NEW" != 0 ]; then
    build "$SRCDIR" "the new tree (into ${BUILDDIR#"$SRCDIR"/})" "$SCRATCH/build-new.log" \
        BUILDDIR="$BUILDDIR"
fi
VMAD_NEW=$BUILDDIR/vmad
VMAD_OLD=$OLD_TREE/build/vmad
VMA_OLD=$OLD_TREE/build/vma
for f in "$VMAD_NEW" "$BUILDDIR/vma" "$VMAD_OLD" "$VMA_OLD"; do
    [ -x "$f" ] || die "$f was not built"
done

echo "# vmad before/after"
echo
echo "Old: $OLD_REV (${old_commit:0:12}); new: $new_desc; make -j2 $MAKE_ARGS"
echo "Machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"

failed=()
# bench NAME SCRIPT VAR=VALUE...: run one benchmark with the old binaries, its stdout
# shown and kept for the summary
bench() {
    local name=$1 script=$2
    shift 2
    local a shown=
    for a in "$@"; do
        case ${a#*=} in *' '*) shown+=" ${a%%=*}=\"${a#*=}\"" ;; *) shown+=" $a" ;; esac
    done
    echo
    echo "## $name:$shown bash bench/$script"
    echo
    log "running$shown bash bench/$script"
    if ! env BUILDDIR="$BUILDDIR" VMAD="$VMAD_NEW" VMA="$BUILDDIR/vma" \
        VMAD_OLD="$VMAD_OLD" VMA_OLD="$VMA_OLD" "$@" \
        bash "$HERE/$script" | tee "$SCRATCH/$name.md"; then
        log "bench/$script failed"
        failed+=("$script")
    fi
}

for b in $ONLY; do
    case $b in
    nbd)
        bench nbd nbd-bench.sh SERVERS="ours old" JOBS="$NBD_JOBS" RUNS="$RUNS" \
            RUNTIME="$NBD_RUNTIME" SIZE_MIB="$NBD_SIZE_MIB" OUR_SERVER= OLD_SERVER= ;;
    backup)
        bench backup backup-bench.sh ROWS="vmad-file old-file vmad-exec old-exec" \
            RUNS="$RUNS" SIZE="$SIZE" CACHE="$BACKUP_CACHE" ;;
    latency)
        bench latency backup-latency.sh CASES="vmad-none old-none vmad-backup old-backup" \
            RUNS="$LAT_RUNS" LAT_SIZE="$LAT_SIZE" RUNTIME="$LAT_RUNTIME" CACHE="$LAT_CACHE" ;;
    esac
done

echo
echo "## Summary: new / old (medians)"
echo
echo "Old: $OLD_REV (${old_commit:0:12}); new: $new_desc. Load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
echo
# shellcheck disable=SC2086  # ONLY: one argument per benchmark
python3 - "$SCRATCH" $ONLY <<'PY'
import os, re, sys
HEADER = "| measurement | cache | vmad (old) | vmad | new / old |"
rows = []
for name in sys.argv[2:]:
    path = os.path.join(sys.argv[1], name + ".md")
    if not os.path.exists(path):
        continue
    inside = False
    for line in open(path):
        line = line.rstrip("\n")
        if line == HEADER:
            inside = True
        elif inside and line.startswith("|---"):
            pass
        elif inside and line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        else:
            inside = False
def better(m):
    return "higher" if re.search(r"\bIOPS\b|MiB/s", m) else "lower"
def table(sel):
    print("| measurement | cache | vmad (old) | vmad | new / old | better |")
    print("|---|---|---:|---:|---:|---|")
    for r in sel:
        print("| %s | %s |" % (" | ".join(r), better(r[0])))
    print()
# the issue's four measurements
key = re.compile(r"^NBD randwrite-4k, IOPS$|^backup → .*, job s$|"
                 r"^guest 4 KiB write clat p99 µs during a backup")
head = [r for r in rows if key.search(r[0])]
if not rows:
    print("(no before/after rows: every benchmark failed or none ran)")
    sys.exit(0)
print("The issue's measurements:")
print()
table(head)
print("All before/after rows:")
print()
table(rows)
PY

if [ ${#failed[@]} -gt 0 ]; then
    die "failed: ${failed[*]}"
fi
