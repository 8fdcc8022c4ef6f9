#!/usr/bin/env bash
# guest-initrd.sh [DIR] — build DIR/initrd.gz, the initramfs of the test guest.
#
# DIR is the directory guest-kernel.sh filled (default $BUILDDIR/guest); its modules/ are
# packed into the initramfs together with a static busybox (one symlink per applet) and the
# /init program below. The guest has no root file system: /init does the whole test and
# powers the machine off. Output is cached: DIR/initrd.hash records a hash of this script,
# the modules and the busybox binary, and nothing is rebuilt while it matches.
#
# ---------------------------------------------------------------------------------------
# What the guest does (the contract the host-side tests rely on)
#
# Parameters come from the kernel command line as guest.NAME=VALUE (the kernel leaves
# dotted parameters alone; /init reads /proc/cmdline). Sizes and offsets are bytes, with an
# optional K, M or G suffix (powers of 1024), and must be multiples of 4096.
#
#   guest.mode=MODE     write-verify | verify | loop | counter (required)
#   guest.disks=N       number of virtio disks to wait for: /dev/vda, /dev/vdb, ... (1)
#
# Console lines (serial console, ttyS0) the host looks for; everything else is noise:
#   GUEST-READY disks=N            all disks are present; the mode starts now
#   GUEST-GEN G                    loop mode: pass G is completely written (see below)
#   GUEST-LOOP-END gens=G reason=R loop mode: stopped after pass G; R is passes, seconds
#                                  or stop (which condition ended the loop)
#   GUEST-RESULT: ok               the mode succeeded
#   GUEST-RESULT: fail REASON      it did not (REASON is one line)
# After the result line the guest runs `sync` and `poweroff -f` (QEMU exits when started
# with -no-reboot). If /init itself dies the kernel panics and, with panic=-1, reboots,
# which also ends QEMU: no result line then.
#
# The pattern of write-verify and verify: every 4 KiB block at byte offset OFF of disk D
# (0 = vda, 1 = vdb, ...) holds the text
#       vmabackup-guest seed=SEED disk=D off=OFF
# left-justified and padded with spaces to 4095 bytes, then one "\n" (printf '%-4095s\n').
# Every misplaced, torn, stale or cross-disk block therefore differs from what belongs
# there, and the host can recompute the pattern from the same three numbers.
#
#   write-verify   guest.seed=N (1)  guest.regions=OFF:LEN[,OFF:LEN...] (0:1M)
#                  For each disk and each region (regions must not overlap and must fit
#                  the disk): write the pattern with dd oflag=direct conv=fsync (so it
#                  reaches the NBD server and is flushed); then, for each disk and region,
#                  read it back with dd iflag=direct and compare. The patterns are held in
#                  guest RAM (256 MiB machine): keep disks x total region length small.
#   verify         same parameters; only the read-back and compare (the host or an earlier
#                  boot wrote the pattern).
#   loop           guest.first=BLK (0)  guest.blocks=N (256)  guest.seconds=S (10)
#                  guest.passes=N (0 = no limit)  guest.stop=BLK (none)
#                  Writes /dev/vda blocks [first, first+blocks) (4 KiB blocks, numbered
#                  from the start of the disk) over and over. Pass G (G = 1, 2, ...) writes
#                  every block B of the range, in ascending order, as the text
#                        gen=G blk=B
#                  padded like above, with one dd oflag=direct conv=fsync and bs=4096 (one
#                  4 KiB write per block), then prints GUEST-GEN G. So at any moment T,
#                  if the last GUEST-GEN printed before T was K and the first printed
#                  after T is M, every block of the range holds gen K or later and gen M or
#                  earlier, and the blocks holding gen K+1 (if any) form a prefix of the
#                  range. After each pass the guest stops when guest.seconds have passed
#                  since the first pass began, when guest.passes passes are done, or when
#                  block guest.stop of vda (outside the range!) starts with 16 'S' bytes
#                  (the host writes it, e.g. qemu-io -c 'write -P 0x53 OFF 4096'). It then
#                  reads the range back with iflag=direct, requires the last pass's data,
#                  and reports ok.
#   counter        guest.first=BLK (0)  guest.blocks=N (1024)  guest.steps=N (0 = no limit)
#                  guest.ticks=0|1 (0)
#                  A counter N lives in guest RAM (a shell variable, starting at 0). Each
#                  step: check that the disk agrees with RAM — the record of N sits in
#                  block first + (N-1) % blocks and the record of N+1 is not on the disk
#                  yet — then N=N+1, write the record "count=N" (padded like above) to
#                  block first + (N-1) % blocks of /dev/vda with dd oflag=direct
#                  conv=fsync, and print GUEST-COUNT N. A guest whose RAM state and disk
#                  come from different instants fails the next check ("GUEST-RESULT:
#                  fail disk ... RAM ..."), also after being saved and restored (the
#                  point of the mode: a VM state + disk backup resumed in a new QEMU goes
#                  on counting from where it was). Ends after guest.steps steps with ok.
#                  guest.ticks=1 also prints "GUEST-TICK <uptime>" every 10 ms from a
#                  background loop (the host time-stamps these lines to measure pauses).
# ---------------------------------------------------------------------------------------
set -euo pipefail

prog=guest-initrd
die() {
    echo "$prog: $*" >&2
    exit 1
}

srcdir=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-${BUILDDIR:-$srcdir/build}/guest}
self="$srcdir/scripts/guest-initrd.sh"
[ -f "$self" ] || self=$0

[ -s "$dir/modules/order" ] || die "$dir/modules/order missing: run scripts/guest-kernel.sh $dir first"
for cmd in cpio gzip sha256sum; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found (see scripts/install-deps.sh)"
done
busybox=${BUSYBOX:-$(command -v busybox || true)}
[ -n "$busybox" ] && [ -x "$busybox" ] || die "busybox not found (install busybox-static)"
if ldd "$busybox" >/dev/null 2>&1; then
    die "$busybox is dynamically linked; the guest needs a static one (install busybox-static or set BUSYBOX)"
fi

mapfile -t modules <"$dir/modules/order"
hash_inputs=("$self" "$busybox" "$dir/modules/order")
for m in "${modules[@]}"; do
    hash_inputs+=("$dir/modules/$m.ko")
done
hash=$(cat "${hash_inputs[@]}" | sha256sum | cut -d' ' -f1) || die "hash the initramfs inputs: failed"

if [ -s "$dir/initrd.gz" ] && [ "$(cat "$dir/initrd.hash" 2>/dev/null)" = "$hash" ]; then
    exit 0
fi

exec 9>"$dir/initrd.lock" || die "open lock file $dir/initrd.lock: failed"
flock 9 || die "lock $dir/initrd.lock: failed"
if [ -s "$dir/initrd.gz" ] && [ "$(cat "$dir/initrd.hash" 2>/dev/null)" = "$hash" ]; then
    exit 0
fi

tmp=$(mktemp -d "$dir/initrd.tmp.XXXXXX") || die "create temporary directory in $dir: failed"
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,lib/modules}
cp "$busybox" "$root/bin/busybox"
while read -r applet; do
    # the `busybox` entry itself would replace the binary with a link to itself
    case "$applet" in ''|bin/busybox|*/busybox) continue ;; esac
    mkdir -p "$root/$(dirname "$applet")"
    ln -sf /bin/busybox "$root/$applet"
done < <("$busybox" --list-full)
[ -e "$root/bin/sh" ] || die "$busybox has no sh applet"
for m in "${modules[@]}"; do
    cp "$dir/modules/$m.ko" "$root/lib/modules/"
done
cp "$dir/modules/order" "$root/lib/modules/order"

cat >"$root/init" <<'EOF'
#!/bin/sh
# Test guest /init: see scripts/guest-initrd.sh in the vmabackup sources for the contract.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o size=200m tmpfs /tmp

# Called from subshells too ($(...), pipelines): print to the console itself, and power
# off from wherever we are.
finish() {
    echo "GUEST-RESULT: $*" >/dev/console
    sync
    poweroff -f
    sleep 60
    exit 1
}
fail() {
    finish "fail $*"
}

# param NAME DEFAULT: value of guest.NAME= on the kernel command line
param() {
    local w v=$2
    for w in $(cat /proc/cmdline); do
        case "$w" in "guest.$1="*) v=${w#"guest.$1="} ;; esac
    done
    echo "$v"
}

# bytes VALUE WHAT: VALUE with an optional K/M/G suffix in bytes, a multiple of 4096
bytes() {
    local v=$1 n mul=1
    case "$v" in
    *K|*k) n=${v%?}; mul=1024 ;;
    *M|*m) n=${v%?}; mul=1048576 ;;
    *G|*g) n=${v%?}; mul=1073741824 ;;
    *) n=$v ;;
    esac
    case "$n" in ''|*[!0-9]*) fail "bad $2 '$v'" ;; esac
    n=$((n * mul))
    [ $((n % 4096)) -eq 0 ] || fail "$2 '$v' is not a multiple of 4096"
    echo "$n"
}

# count VALUE WHAT: a plain decimal number
count() {
    case "$1" in ''|*[!0-9]*) fail "bad $2 '$1'" ;; esac
    echo "$1"
}

letters=abcdefghijklmnopqrstuvwxyz
disk_name() {
    echo "vd$(echo "$letters" | cut -c$(($1 + 1)))"
}

for m in $(cat /lib/modules/order); do
    insmod "/lib/modules/$m.ko" || fail "insmod $m"
done

mode=$(param mode "")
disks=$(count "$(param disks 1)" guest.disks)
[ "$disks" -ge 1 ] && [ "$disks" -le 26 ] || fail "bad guest.disks '$disks'"
d=0
while [ $d -lt "$disks" ]; do
    dev=$(disk_name $d)
    i=0
    while [ ! -b "/dev/$dev" ]; do
        i=$((i + 1))
        [ $i -le 600 ] || fail "no /dev/$dev after 60 s"
        sleep 0.1
    done
    d=$((d + 1))
done
echo "GUEST-READY disks=$disks"

# disk_bytes N: size of disk N in bytes
disk_bytes() {
    echo $(($(cat "/sys/block/$(disk_name $1)/size") * 512))
}

# pattern FILE SEED DISK OFF LEN: the write-verify pattern of [OFF, OFF+LEN) into FILE
pattern() {
    local o=$4 end=$(($4 + $5))
    while [ $o -lt $end ]; do
        printf '%-4095s\n' "vmabackup-guest seed=$2 disk=$3 off=$o"
        o=$((o + 4096))
    done >"$1"
}

# regions SPEC: "OFF LEN" lines, checked against every disk
regions() {
    local r off len d
    for r in $(echo "$1" | tr ',' ' '); do
        case "$r" in *:*) ;; *) fail "bad guest.regions entry '$r' (want OFF:LEN)" ;; esac
        off=$(bytes "${r%%:*}" "region offset") || exit 1
        len=$(bytes "${r#*:}" "region length") || exit 1
        [ "$len" -gt 0 ] || fail "empty region '$r'"
        d=0
        while [ $d -lt "$disks" ]; do
            [ $((off + len)) -le "$(disk_bytes $d)" ] ||
                fail "region '$r' does not fit /dev/$(disk_name $d) ($(disk_bytes $d) bytes)"
            d=$((d + 1))
        done
        echo "$off $len"
    done
}

# check_region DEV FILE OFF LEN WHAT: read back with O_DIRECT and compare with FILE
check_region() {
    dd if="/dev/$1" of=/tmp/readback bs=4096 skip=$(($3 / 4096)) count=$(($4 / 4096)) \
        iflag=direct status=none || fail "read /dev/$1 at $3+$4: dd failed"
    cmp -s "$2" /tmp/readback || fail "/dev/$1 at $3+$4: data differs from $5 ($(cmp "$2" /tmp/readback 2>&1 | head -n 1))"
    rm -f /tmp/readback
}

write_verify() {
    local seed rl d off len dev
    seed=$(count "$(param seed 1)" guest.seed)
    rl=$(regions "$(param regions 0:1M)") || exit 1
    [ -n "$rl" ] || fail "no regions"
    d=0
    while [ $d -lt "$disks" ]; do
        dev=$(disk_name $d)
        echo "$rl" | while read -r off len; do
            pattern "/tmp/p.$d.$off" "$seed" $d "$off" "$len"
            if [ "$1" = write ]; then
                dd if="/tmp/p.$d.$off" of="/dev/$dev" bs=4096 seek=$((off / 4096)) \
                    oflag=direct conv=fsync status=none || fail "write /dev/$dev at $off+$len: dd failed"
            fi
        done || exit 1
        d=$((d + 1))
    done
    d=0
    while [ $d -lt "$disks" ]; do
        dev=$(disk_name $d)
        echo "$rl" | while read -r off len; do
            check_region "$dev" "/tmp/p.$d.$off" "$off" "$len" "the seed=$seed pattern"
            rm -f "/tmp/p.$d.$off"
        done || exit 1
        d=$((d + 1))
    done
    finish ok
}

loop() {
    local first nblocks seconds passes stop start gen b end why m
    first=$(count "$(param first 0)" guest.first)
    nblocks=$(count "$(param blocks 256)" guest.blocks)
    seconds=$(count "$(param seconds 10)" guest.seconds)
    passes=$(count "$(param passes 0)" guest.passes)
    stop=$(param stop "")
    [ "$nblocks" -ge 1 ] || fail "guest.blocks must be at least 1"
    end=$((first + nblocks))
    [ $((end * 4096)) -le "$(disk_bytes 0)" ] || fail "loop range $first+$nblocks does not fit /dev/vda"
    if [ -n "$stop" ]; then
        stop=$(count "$stop" guest.stop)
        [ $(((stop + 1) * 4096)) -le "$(disk_bytes 0)" ] || fail "guest.stop block $stop beyond /dev/vda"
        if [ "$stop" -ge "$first" ] && [ "$stop" -lt "$end" ]; then
            fail "guest.stop block $stop inside the loop range"
        fi
    fi
    start=$(date +%s)
    gen=0
    while :; do
        gen=$((gen + 1))
        b=$first
        while [ $b -lt $end ]; do
            printf '%-4095s\n' "gen=$gen blk=$b"
            b=$((b + 1))
        done >/tmp/pass
        dd if=/tmp/pass of=/dev/vda bs=4096 seek="$first" oflag=direct conv=fsync status=none ||
            fail "write pass $gen to /dev/vda: dd failed"
        echo "GUEST-GEN $gen"
        why=
        if [ "$passes" -gt 0 ] && [ "$gen" -ge "$passes" ]; then
            why=passes
        elif [ $(($(date +%s) - start)) -ge "$seconds" ]; then
            why=seconds
        elif [ -n "$stop" ]; then
            m=$(dd if=/dev/vda bs=4096 skip="$stop" count=1 iflag=direct status=none | head -c 16) ||
                fail "read stop block $stop: dd failed"
            [ "$m" = SSSSSSSSSSSSSSSS ] && why=stop
        fi
        [ -n "$why" ] && break
    done
    echo "GUEST-LOOP-END gens=$gen reason=$why"
    check_region vda /tmp/pass $((first * 4096)) $((nblocks * 4096)) "pass $gen"
    finish ok
}

# record N: the text of the counter's record, as on the disk
record() {
    printf '%-4095s\n' "count=$1"
}

# counter_read BLK: the text in 4 KiB block BLK of /dev/vda, up to its first newline, blanks removed
counter_read() {
    dd if=/dev/vda bs=4096 skip="$1" count=1 iflag=direct status=none | head -n 1 | tr -d ' '
}

counter() {
    local first nblocks steps ticks n blk got next
    first=$(count "$(param first 0)" guest.first)
    nblocks=$(count "$(param blocks 1024)" guest.blocks)
    steps=$(count "$(param steps 0)" guest.steps)
    ticks=$(param ticks 0)
    [ "$nblocks" -ge 2 ] || fail "guest.blocks must be at least 2"
    [ $(((first + nblocks) * 4096)) -le "$(disk_bytes 0)" ] ||
        fail "counter range $first+$nblocks does not fit /dev/vda"
    if [ "$ticks" = 1 ]; then
        (while :; do echo "GUEST-TICK $(cut -d' ' -f1 /proc/uptime)"; usleep 10000; done) &
    fi
    n=0
    while :; do
        if [ "$n" -gt 0 ]; then
            blk=$((first + (n - 1) % nblocks))
            got=$(counter_read "$blk")
            [ "$got" = "count=$n" ] || fail "disk block $blk holds '$got', RAM counter is $n"
        fi
        blk=$((first + n % nblocks))
        next=$((n + 1))
        got=$(counter_read "$blk")
        [ "$got" != "count=$next" ] || fail "disk block $blk already holds count=$next, RAM counter is $n"
        n=$next
        record "$n" >/tmp/record
        dd if=/tmp/record of=/dev/vda bs=4096 seek="$blk" count=1 oflag=direct conv=fsync \
            status=none || fail "write count=$n to block $blk: dd failed"
        echo "GUEST-COUNT $n"
        if [ "$steps" -gt 0 ] && [ "$n" -ge "$steps" ]; then
            break
        fi
    done
    finish ok
}

case "$mode" in
counter) counter ;;
write-verify) write_verify write ;;
verify) write_verify verify ;;
loop) loop ;;
'') fail "no guest.mode= on the kernel command line" ;;
*) fail "unknown guest.mode '$mode'" ;;
esac
fail "mode $mode returned"
EOF
chmod 0755 "$root/init"

# Reproducible archive: fixed order, owner and times.
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
    cpio --quiet -o -H newc -R 0:0 --reproducible | gzip -n -9) >"$tmp/initrd.gz" ||
    die "pack the initramfs: cpio/gzip failed"
mv "$tmp/initrd.gz" "$dir/initrd.gz" || die "rename into $dir/initrd.gz: failed"
echo "$hash" >"$dir/initrd.hash"
echo "$prog: built $dir/initrd.gz ($(stat -c %s "$dir/initrd.gz") bytes)" >&2
