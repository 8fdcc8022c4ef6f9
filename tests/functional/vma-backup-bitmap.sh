#!/usr/bin/env bash
# The client: `vma backup --bitmap NAME` gives a full backup first, then incrementals
# (each based on the previous archive); `--differential` a differential based on the
# bitmap's base; `--differential` without `--bitmap` is a usage error.
. "$(dirname "$0")/qmp-lib.bash"
need_tools qemu-io
VMA=${VMA:-$BUILDDIR/vma}
[ -x "$VMA" ] || fail "vma not built"

python3 -c "import os,sys; open(sys.argv[1],'wb').write(os.urandom(2*1048576+512))" "$T/a.raw"
start_vmad --monitor "$T/qmp.sock" --state-dir "$T/state" \
    --blockdev "driver=file,node-name=drive-scsi0,filename=$T/a.raw" \
    --nbd-server "addr.type=unix,addr.path=$T/nbd.sock" \
    --export "nbd,id=e0,node-name=drive-scsi0,writable=on"
wait_socket "$T/qmp.sock"
uri="nbd+unix:///drive-scsi0?socket=$T/nbd.sock"

"$VMA" backup --differential --qmp "$T/qmp.sock" "$T/x.vma" 2>"$T/err" && fail "--differential alone accepted"
grep -q -- "--differential needs --bitmap NAME" "$T/err" || fail "message: $(cat "$T/err")"

py "$T" <<'EOF' || fail "add bitmap"
import sys
from qmp import QMP
q = QMP(sys.argv[1] + "/qmp.sock"); q.negotiate()
q.ok("block-dirty-bitmap-add", {"node": "drive-scsi0", "name": "cli"})
EOF
"$VMA" backup -q --qmp "$T/qmp.sock" --bitmap cli "$T/full.vma" || fail "full"
qemu-io -f raw -c "write -P 5 131072 4096" "$uri" >/dev/null || fail "write 1"
"$VMA" backup -q --qmp "$T/qmp.sock" --bitmap cli "$T/inc.vma" || fail "incremental"
qemu-io -f raw -c "write -P 6 1048576 4096" "$uri" >/dev/null || fail "write 2"
"$VMA" backup -q --qmp "$T/qmp.sock" --bitmap cli --differential "$T/diff.vma" || fail "differential"

py "$T" <<'EOF' || fail "archives"
import sys
from bitmaplib import *
T = sys.argv[1]
fu, fc, _, fcl = read_vma(T + "/full.vma")
iu, ic, _, icl = read_vma(T + "/inc.vma")
du, dc, _, dcl = read_vma(T + "/diff.vma")
assert chain_info(fc) is None
i, d = chain_info(ic), chain_info(dc)
assert i == {"format": "1", "kind": "incremental", "base": uuid_str(fu), "bitmap": "cli"}, i
assert d == {"format": "1", "kind": "differential", "base": uuid_str(iu), "bitmap": "cli"}, d
assert sorted(icl["drive-scsi0"]) == [2], icl["drive-scsi0"].keys()
assert sorted(dcl["drive-scsi0"]) == [16], dcl["drive-scsi0"].keys()
EOF
echo "PASS vma backup --bitmap"
