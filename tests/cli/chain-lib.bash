# Chains of delta archives for the chain-*.sh tests (sourced after lib.bash).
#
# make_chain DIR STEPS SEED: disk states from chain-gen.py, then in DIR
#   full.vma              `vma create` of state 0 (config qemu-server.conf "step 0")
#   inc<i>.vma  i=1..N    incremental on inc<i-1> (inc0 = full), holding the clusters step
#                         i changed (config "step i", clusters handed over shuffled)
#   diff<i>.vma i=1..N    differential on full, the clusters steps 1..i changed
# uuid_of ARCHIVE prints an archive's uuid; shuffled WORD... prints the words shuffled
# (seeded by $RANDOM_SEED, default 1).
: "${BUILDDIR:?BUILDDIR must point at the build directory}"
MKDELTA=$BUILDDIR/tests/tools/mkdelta
[ -x "$MKDELTA" ] || { echo "test tool $MKDELTA missing (make test-build)"; exit 1; }

make_chain() {
    local d=$1 n=$2 seed=$3 i dev size prev
    python3 "$TESTDIR/chain-gen.py" "$d" "$n" "$seed" || fail "chain-gen.py"
    local -a devs=()
    while read -r dev size; do devs+=("$dev"); done <"$d/devs"
    mkdir -p "$d/conf0"
    printf 'step 0\n' >"$d/conf0/qemu-server.conf"
    local -a args=()
    for dev in "${devs[@]}"; do args+=(-d "format=raw:$dev=$d/s0-$dev.raw"); done
    "$VMA" create -c "$d/conf0/qemu-server.conf" "$d/full.vma" "${args[@]}" ||
        fail "create full.vma"
    prev=$d/full.vma
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$d/conf$i"
        printf 'step %d\n' "$i" >"$d/conf$i/qemu-server.conf"
        local -a inc=() diff=()
        for dev in "${devs[@]}"; do
            inc+=("$dev=$d/s$i-$dev.raw@$(cat "$d/inc$i-$dev")")
            diff+=("$dev=$d/s$i-$dev.raw@$(cat "$d/diff$i-$dev")")
        done
        "$MKDELTA" --kind incremental --base "$prev" --bitmap backup0 --shuffle "$i" \
            -c "$d/conf$i/qemu-server.conf" "$d/inc$i.vma" "${inc[@]}" >/dev/null ||
            fail "mkdelta inc$i"
        "$MKDELTA" --kind differential --base "$d/full.vma" --bitmap backup0 \
            -c "$d/conf$i/qemu-server.conf" "$d/diff$i.vma" "${diff[@]}" >/dev/null ||
            fail "mkdelta diff$i"
        prev=$d/inc$i.vma
    done
}

uuid_of() {
    "$VMA" list --json "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["uuid"])'
}

shuffled() {
    python3 -c 'import random, sys
r = random.Random(int(sys.argv[1]))
w = sys.argv[2:]
r.shuffle(w)
print(" ".join(w))' "${RANDOM_SEED:-1}" "$@"
}

# same_state DIR STEP CHAINDIR: the disks restored into DIR equal the images of STEP.
same_state() {
    local dir=$1 step=$2 c=$3 dev size
    while read -r dev size; do
        cmp "$dir/disk-$dev.raw" "$c/s$step-$dev.raw" ||
            fail "$dir: $dev differs from its state at step $step"
    done <"$c/devs"
}
