#!/usr/bin/env bash
# nbdinfo --list: every export of the server.
. "$(dirname "$0")/nbd-nbdinfo.bash"

list=$(nbdinfo --list "nbd+unix:///?socket=$NBD_SOCK" 2>&1) || fail "nbdinfo --list: $list"
echo "$list" | grep -q 'export="sp"' || fail "--list lacks sp"
echo "$list" | grep -q 'export="ro"' || fail "--list lacks ro"

stop_server
echo PASS
