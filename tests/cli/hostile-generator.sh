#!/usr/bin/env bash
# The archive generator of the hostile tests (mkvma.py) produces what our reader
# accepts: a sanity check for every hostile-*.sh that builds its archives with it.
. "$(dirname "$0")/lib.bash"

spec good '{"configs": [["qemu-server.conf", "name: x\n"]],
            "devices": [{"name": "drive-scsi0", "size": 70000, "fill": 7}]}'
expect_ok verify "$T/good.vma"
expect_ok extract "$T/good.vma" "$T/good"
[ "$(stat -c %s "$T/good/disk-drive-scsi0.raw")" -eq 70000 ] || fail "generator: wrong size"
exit 0
