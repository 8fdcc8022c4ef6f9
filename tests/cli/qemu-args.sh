#!/usr/bin/env bash
# vma qemu-args DIR: the QEMU arguments resuming an extracted whole-VM archive, checked
# against the local QEMU (here a stand-in script that answers --version and -machine
# help like qemu-system-x86_64 7.2). The exact output line; a version mismatch refused
# with both versions named (--force prints anyway); a machine type the binary lacks,
# a directory without the vmstate config or without vmstate.bin, and a config that says
# it holds no RAM are refused with one line.
. "$(dirname "$0")/lib.bash"

fake=$T/qemu
cat >"$fake" <<'EOF'
#!/bin/sh
case "$1" in
--version) echo "QEMU emulator version ${FAKE_VERSION:-7.2.22} (Debian 1:7.2+dfsg-7)"; echo "Copyright (c) 2003-2022";;
-machine) printf 'Supported machines are:\npc                   Standard PC (alias of pc-i440fx-7.2)\npc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996) (default)\nq35                  Standard PC (Q35 + ICH9, 2009)\n';;
*) exit 1;;
esac
EOF
chmod +x "$fake"

D=$T/x
mkdir "$D"
printf 'QEVM' >"$D/vmstate.bin"
conf() {
    printf 'format: 1\nram: 1\nmethod: precopy\nqemu-version: 7.2.22\nrunningmachine: %s\nmemory: %s\ncpus: 2\n' \
        "${1:-pc-i440fx-7.2}" "${2:-536870912}" >"$D/vmabackup-vmstate.conf"
}

conf
expect_ok qemu-args --qemu "$fake" "$D"
[ "$out" = "-machine 'pc-i440fx-7.2' -m 512M -smp 2 -incoming 'exec:cat '\\''$D/vmstate.bin'\\'''" ] ||
    fail "qemu-args printed: $out"
# the words, as a shell reads them
eval "set -- $out"
[ "$#" = 8 ] && [ "$8" = "exec:cat '$D/vmstate.bin'" ] || fail "qemu-args words: $*"

conf pc-i440fx-7.2 268439552
expect_ok qemu-args --qemu "$fake" "$D"
case "$out" in *"-m 262148K "*) ;; *) fail "a RAM size not in MiB: $out" ;; esac

conf
FAKE_VERSION=8.0.0 expect_fail "the VM state was saved by QEMU 7.2.22, $fake is QEMU 8.0.0" \
    qemu-args --qemu "$fake" "$D"
[ -z "$out" ] || fail "a refused qemu-args printed arguments"
export FAKE_VERSION=8.0.0
expect_ok qemu-args --force --qemu "$fake" "$D"
unset FAKE_VERSION

conf pc-q35-9.9
expect_fail "machine type pc-q35-9.9 (QEMU 7.2.22), which $fake (QEMU 7.2.22) does not have" \
    qemu-args --qemu "$fake" "$D"
expect_fail "does not have" qemu-args --force --qemu "$fake" "$D"

conf
sed -i 's/^ram: 1/ram: 0/' "$D/vmabackup-vmstate.conf"
expect_fail "says the archive holds no RAM state" qemu-args --qemu "$fake" "$D"
conf pc-i440fx-7.2 lots
expect_fail "lacks qemu-version, runningmachine, memory or cpus, or has a malformed one" \
    qemu-args --qemu "$fake" "$D"

conf
rm "$D/vmstate.bin"
expect_fail "$D: no vmstate.bin" qemu-args --qemu "$fake" "$D"
mkdir "$T/empty"
expect_fail "$T/empty: no readable vmabackup-vmstate.conf" qemu-args --qemu "$fake" "$T/empty"
printf 'QEVM' >"$D/vmstate.bin"
expect_fail "$T/nowhere --version" qemu-args --qemu "$T/nowhere" "$D"
expect_usage qemu-args
expect_usage qemu-args a b
echo PASS
