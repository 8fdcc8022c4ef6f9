#!/usr/bin/env bash
# Install what the build, the tests and the demo need, and nothing that is already there.
#
# Each requirement is checked the way the build uses it: libraries through pkg-config,
# programs through `command -v`. Only the Debian packages behind the missing ones are
# handed to apt-get. Run as root (CI does) or through sudo; without either, print what
# is missing and fail.
set -euo pipefail

# pkg-config module -> Debian package
pc_deps=(
    "glib-2.0:libglib2.0-dev"
    "json-glib-1.0:libjson-glib-dev"
    "uuid:uuid-dev"
    "zlib:zlib1g-dev"
    "libzstd:libzstd-dev"
    "lzo2:liblzo2-dev"
    "cmocka:libcmocka-dev"
    "libnbd:libnbd-dev"
)
# command -> Debian package (a path where the shell has a builtin of that name: `time`)
cmd_deps=(
    "cc:gcc"
    "make:make"
    "pkg-config:pkg-config"
    "gzip:gzip"
    "zstd:zstd"
    "lzop:lzop"
    "bzip2:bzip2"
    "cmp:diffutils"
    "sha256sum:coreutils"
    "qemu-img:qemu-utils"
    "qemu-io:qemu-utils"
    "qemu-nbd:qemu-utils"
    "qemu-system-x86_64:qemu-system-x86"
    "qemu-storage-daemon:qemu-system-common"
    "nbdinfo:libnbd-bin"
    "nbdcopy:libnbd-bin"
    "fio:fio"
    "cpio:cpio"
    "busybox:busybox-static"
    "pv:pv"
    "python3:python3"
    "timeout:coreutils"
    "/usr/bin/time:time"
    "openssl:openssl"
    "findmnt:util-linux"
    "clang:clang"
    "afl-clang-fast:afl++"
    "valgrind:valgrind"
    "ceph-mon:ceph-mon"
    "ceph-mgr:ceph-mgr"
    "ceph-osd:ceph-osd"
    "ceph:ceph-common"
    "rbd:ceph-common"
    "ceph-authtool:ceph-common"
    "monmaptool:ceph-base"
    "uuidgen:uuid-runtime"
    "jq:jq"
)

missing=()
if ! command -v pkg-config >/dev/null 2>&1; then
    missing+=(pkg-config)
fi
for d in "${pc_deps[@]}"; do
    mod=${d%%:*} pkg=${d#*:}
    if ! pkg-config --exists "$mod" 2>/dev/null; then
        missing+=("$pkg")
    fi
done
for d in "${cmd_deps[@]}"; do
    cmd=${d%%:*} pkg=${d#*:}
    if ! command -v "$cmd" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done
# libbz2 has no pkg-config file on Debian 12: look for its header.
if ! printf '#include <bzlib.h>\n' | cc -E -x c - >/dev/null 2>&1; then
    missing+=(libbz2-dev)
fi

# librbd and librados ship no pkg-config file on Debian 12: look for their headers. QEMU's
# rbd driver (the RBD tests' second client) is a module of its own package.
if ! printf '#include <rbd/librbd.h>\n' | cc -E -x c - >/dev/null 2>&1; then
    missing+=(librbd-dev)
fi
if ! printf '#include <rados/librados.h>\n' | cc -E -x c - >/dev/null 2>&1; then
    missing+=(librados-dev)
fi
if ! ls /usr/lib/*/qemu/block-rbd.so >/dev/null 2>&1; then
    missing+=(qemu-block-extra)
fi

# The fuzz harnesses (make fuzz, and the short run in make check) link libFuzzer, which
# Debian 12 ships apart from clang: check that -fsanitize=fuzzer links.
fuzz_probe='#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }'
if ! command -v clang >/dev/null 2>&1; then
    missing+=(libclang-rt-dev)
elif ! printf '%s\n' "$fuzz_probe" |
        clang -fsanitize=fuzzer,address,undefined -x c - -o /dev/null >/dev/null 2>&1; then
    missing+=(libclang-rt-dev)
fi

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: everything is present"
    exit 0
fi

# de-duplicate
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "install-deps: installing ${missing[*]}"

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "install-deps: missing packages ${missing[*]}; run as root to install them" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
