#!/usr/bin/env bash
# Damage that the checksums or the structure reveal (a wrong extent uuid, absurd device
# sizes, header and blob sizes, an unterminated name blob) ends verify and extract with
# exit status 1 and a message: never a signal, never a hang.
. "$(dirname "$0")/lib.bash"

spec wronguuid '{"devices": [{"name": "drive-scsi0", "size": 65536, "fill": 3}],
                 "extent_uuid": "ffffffffffffffffffffffffffffffff"}'
expect_fail "uuid" verify "$T/wronguuid.vma"
expect_fail "uuid" extract "$T/wronguuid.vma" "$T/wu"

spec hugedev '{"devices": [{"name": "drive-scsi0", "size": 18446744073709551615, "emit": false}]}'
spec bigdev '{"devices": [{"name": "drive-scsi0", "size": 281474976710657, "emit": false}]}'
spec nodata '{"devices": [{"name": "drive-scsi0", "size": 1099511627776, "emit": false}]}'
spec hdrsize '{"configs": [["c", "x"]], "header_size_delta": 1048576}'
spec blobsize '{"configs": [["c", "x"]], "blob_size_override": 4000000000}'
spec noterm '{"devices": [{"name": "x", "size": 4096, "fill": 1}],
              "raw_name_blobs": [[0, "drive-scsi0"]]}'
for f in hugedev bigdev nodata hdrsize blobsize noterm; do
    for cmd in verify extract; do
        args=("$T/$f.vma")
        [ "$cmd" = extract ] && args+=("$T/x-$f")
        run_vma "$cmd" "${args[@]}"
        echo "$cmd $f: rc=$rc $err"
        [ "$rc" -eq 1 ] || fail "$cmd $f: exit $rc (want 1): $err"
        [ -n "$err" ] || fail "$cmd $f: no message"
    done
done
exit 0
