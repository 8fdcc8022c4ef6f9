# vmstate.bash — shared setup of the whole-VM backup tests (backup vm-monitor). Source it.
#
# The test guest (guest.bash, scripts/guest-initrd.sh) in counter mode, booted by
# vm_boot with a QMP socket of its own: vmad serves its disk over NBD and, given that
# socket as vm-monitor, backs up the VM's RAM and device state with the disk.
#
#   vm_setup                 guest_prepare, a 64 MiB disk image $IMG, vmad on $T/qmp.sock
#                            serving it as drive-scsi0 over NBD on $T/nbd.sock
#   vm_boot NAME [QEMU ARG...]
#                            start QEMU in the background: the guest in counter mode on
#                            the NBD disk, QMP on $T/NAME.qmp, console in $T/NAME.log;
#                            sets VM_PID. Extra arguments go to QEMU (e.g. -incoming ...,
#                            another -blockdev: set VM_DISK to replace the NBD disk).
#   vm_qmp NAME CMD [JSON-ARGS]   one command on the VM's own QMP socket; prints "return"
#   vm_count NAME            the highest GUEST-COUNT on NAME's console (0 if none)
#   vm_first_count NAME      the first GUEST-COUNT on NAME's console
#   disk_last_record FILE    the highest count=N record in FILE's counter range
. "$(dirname "${BASH_SOURCE[0]}")/qmp-lib.bash"
. "$(dirname "${BASH_SOURCE[0]}")/guest.bash"
[ -x "$VMA" ] || fail "vma not built"

VM_MEM=${VM_MEM:-256}
VM_BLOCKS=${VM_BLOCKS:-2048}

vm_setup() {
    guest_prepare
    IMG=$T/a.raw
    truncate -s 64M "$IMG"
    start_vmad --monitor "$T/qmp.sock" \
        --blockdev "driver=file,node-name=drive-scsi0,filename=$IMG" \
        --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
        --export "nbd,id=e0,node-name=drive-scsi0,writable=on"
    wait_socket "$T/qmp.sock"
    wait_socket "$T/nbd.sock"
    VM_DISK="driver=nbd,node-name=disk0,server.type=unix,server.path=$T/nbd.sock,export=drive-scsi0,cache.direct=on"
}

vm_boot() {
    local name=$1
    shift
    local append="console=ttyS0 panic=-1 quiet loglevel=3 guest.mode=counter guest.disks=1"
    append+=" guest.blocks=$VM_BLOCKS ${VM_APPEND:-}"
    qemu-system-x86_64 -accel tcg -m "$VM_MEM" -smp 1 -nographic -nodefaults -no-reboot \
        -serial stdio -kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" -append "$append" \
        -qmp "unix:$T/$name.qmp,server=on,wait=off" \
        -blockdev "$VM_DISK" -device virtio-blk-pci,drive=disk0 \
        "$@" </dev/null >"$T/$name.log" 2>&1 &
    VM_PID=$!
    cleanup_pid "$VM_PID"
    wait_socket "$T/$name.qmp"
}

vm_qmp() {
    py "$T/$1.qmp" "$2" "${3:-{\}}" <<'EOF'
import json, sys
from qmp import QMP
q = QMP(sys.argv[1], timeout=30)
q.negotiate()
r = q.cmd(sys.argv[2], json.loads(sys.argv[3]))
if "error" in r:
    raise SystemExit("%s: %s" % (sys.argv[2], r["error"]["desc"]))
print(json.dumps(r["return"]))
EOF
}

vm_count() {
    local n
    n=$(tr -d '\r' <"$T/$1.log" | sed -n 's/^GUEST-COUNT \([0-9][0-9]*\)$/\1/p' | tail -n 1)
    echo "${n:-0}"
}

vm_first_count() {
    tr -d '\r' <"$T/$1.log" | sed -n 's/^GUEST-COUNT \([0-9][0-9]*\)$/\1/p' | head -n 1
}

# wait until NAME's counter reaches N (timeout GUEST_TIMEOUT)
vm_wait_count() {
    local deadline=$((SECONDS + GUEST_TIMEOUT))
    while [ "$(vm_count "$1")" -lt "$2" ]; do
        kill -0 "$VM_PID" 2>/dev/null || { tail -n 20 "$T/$1.log" >&2; return 1; }
        [ $SECONDS -lt $deadline ] || { tail -n 20 "$T/$1.log" >&2; return 1; }
        sleep 0.2
    done
}

disk_last_record() {
    python3 - "$1" "$VM_BLOCKS" <<'EOF'
import re, sys
data = open(sys.argv[1], "rb").read(int(sys.argv[2]) * 4096)
counts = [int(m) for m in re.findall(rb"count=(\d+) ", data)]
print(max(counts, default=0))
EOF
}
