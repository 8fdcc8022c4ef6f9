#!/usr/bin/env bash
# The page in a real browser: headless Debian chromium driven by chromedriver with
# python3-selenium (web-browser.py): log in with the token, Backup now with a speed
# limit, the progress bar moves, the archive appears, verify, restore (the restored disk
# equals the disk, which nothing writes meanwhile), retention preview, a daemon error
# shown, then an uncompressed backup restored live (the task ends ok, the new image equals
# the disk). Screenshots of each step: $BUILDDIR/test-artifacts/web-browser/. Any console
# error fails it.
. "$(dirname "$0")/web-lib.bash"
requires chromium chromedriver zstd
/usr/bin/python3 -c 'import selenium' 2>/dev/null || skip "python3-selenium is not installed"

make_random "$T/d0.raw" 32
truncate -s 8M "$T/d1.raw"
# relative image names: the page (and its screenshots) show no path of this machine
cd "$T" || fail "cd"
mkdir state
web_vmad 100 --state-dir state --blockdev "driver=file,node-name=drive-scsi0,filename=d0.raw" \
    --blockdev "driver=file,node-name=drive-scsi1,filename=d1.raw" \
    --nbd-server "addr.type=unix,addr.path=nbd.sock"
start_web
ART=$BUILDDIR/test-artifacts/web-browser
rm -rf "$ART"
with_timeout 300 /usr/bin/python3 "$SRCDIR/tests/functional/web-browser.py" \
    "$WEB_URL" "$WEB_TOKEN" "$T" "$ART" "$T/d0.raw" || fail "browser test"
ls "$ART"/*.png >/dev/null || fail "no screenshots"
stop_web
quit_vmad
echo PASS
