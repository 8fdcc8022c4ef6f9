#!/usr/bin/env bash
# guest-kernel.sh [DIR] — make a guest kernel and its virtio modules available in DIR.
#
# The functional tests boot a real guest (QEMU, TCG) whose virtio disk is a vmad NBD
# export. They need a kernel, but nothing is installed on the host for it: we take
# Debian's *cloud* kernel (it boots about twice as fast as the generic one under TCG)
# straight out of its .deb.
#
#   DIR/vmlinuz              the kernel image
#   DIR/modules/NAME.ko      virtio_ring virtio virtio_pci_modern_dev
#                            virtio_pci_legacy_dev virtio_pci virtio_blk
#   DIR/modules/order        the module names in insmod order (no modules.dep is shipped)
#   DIR/kernel-version       e.g. 6.1.0-NN-cloud-amd64
#
# DIR defaults to $BUILDDIR/guest (BUILDDIR defaults to build/ in the source tree).
# Idempotent: when every file above is present, nothing is done (no network).
#
# How: resolve the current ABI package from the metapackage
# (`apt-cache depends linux-image-cloud-amd64`; security updates change the ABI and old
# versions leave the mirror, so it is never hard-coded), `apt-get download` it into a
# temporary directory, and extract only boot/vmlinuz-* and the virtio modules with
# `dpkg-deb --fsys-tarfile | tar`. When the package index is missing or stale,
# `apt-get update` is run once (root only) and the lookup retried. The result is built in a
# temporary directory next to DIR and renamed into place, under a lock, so concurrent or
# interrupted runs never leave a half-filled DIR.
set -euo pipefail

prog=guest-kernel
die() {
    echo "$prog: $*" >&2
    exit 1
}

srcdir=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-${BUILDDIR:-$srcdir/build}/guest}
meta=linux-image-cloud-amd64
# insmod order: each module only needs the ones before it
modules=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk)

complete() {
    local m
    [ -s "$1/vmlinuz" ] && [ -s "$1/kernel-version" ] && [ -s "$1/modules/order" ] || return 1
    for m in "${modules[@]}"; do
        [ -s "$1/modules/$m.ko" ] || return 1
    done
}

if complete "$dir"; then
    exit 0
fi

for cmd in apt-cache apt-get dpkg-deb tar flock; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found (a Debian host is needed to fetch the guest kernel)"
done

mkdir -p "$(dirname "$dir")" || die "create $(dirname "$dir"): failed"
dir=$(cd "$(dirname "$dir")" && pwd)/$(basename "$dir")

# One fetch at a time per DIR; a second caller waits and then finds DIR complete.
exec 9>"$dir.lock" || die "open lock file $dir.lock: failed"
flock 9 || die "lock $dir.lock: failed"
if complete "$dir"; then
    exit 0
fi

tmp=$(mktemp -d "$dir.tmp.XXXXXX") || die "create temporary directory next to $dir: failed"
trap 'rm -rf "$tmp"' EXIT
# apt drops privileges to _apt for downloads; let that user write the download directory
chmod 0755 "$tmp"

updated=false
apt_update() {
    $updated && return 1
    updated=true
    if [ "$(id -u)" -ne 0 ]; then
        echo "$prog: the package index cannot resolve $meta and only root can run apt-get update" >&2
        return 1
    fi
    echo "$prog: running apt-get update" >&2
    apt-get update -qq >&2 || die "apt-get update: failed (is the Debian mirror reachable?)"
}

# Print the ABI package that the metapackage currently depends on, e.g.
# linux-image-6.1.0-NN-cloud-amd64. A name in <...> is virtual/unknown to apt: unusable.
resolve() {
    apt-cache depends "$meta" 2>/dev/null |
        sed -n 's/^ *|\{0,1\}Depends: \(linux-image-[^ <>]*\)$/\1/p' | head -n 1
}

pkg=$(resolve)
if [ -z "$pkg" ]; then
    apt_update || die "resolve $meta: apt-cache depends names no linux-image package (run apt-get update as root)"
    pkg=$(resolve)
    [ -n "$pkg" ] || die "resolve $meta: apt-cache depends names no linux-image package, even after apt-get update"
fi

echo "$prog: downloading $pkg" >&2
download() {
    (cd "$tmp" && apt-get download -q=2 -o APT::Sandbox::User=root "$pkg") >&2
}
if ! download; then
    # a stale index names a version that has left the mirror: refresh once and re-resolve
    apt_update || die "apt-get download $pkg: failed"
    pkg=$(resolve)
    [ -n "$pkg" ] || die "resolve $meta: no linux-image package after apt-get update"
    download || die "apt-get download $pkg: failed (is the Debian mirror reachable?)"
fi

deb=$(find "$tmp" -maxdepth 1 -name "${pkg}_*.deb" | head -n 1)
[ -n "$deb" ] || die "apt-get download $pkg: no ${pkg}_*.deb appeared in the download directory"

patterns=('./boot/vmlinuz-*')
for m in "${modules[@]}"; do
    patterns+=("./lib/modules/*/kernel/drivers/*/$m.ko")
done
mkdir "$tmp/x"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" --wildcards "${patterns[@]}" ||
    die "extract kernel and virtio modules from $(basename "$deb"): failed"

mkdir "$tmp/out" "$tmp/out/modules"
kernels=("$tmp"/x/boot/vmlinuz-*)
[ ${#kernels[@]} -eq 1 ] && [ -s "${kernels[0]}" ] ||
    die "extract from $(basename "$deb"): expected one boot/vmlinuz-*, found ${#kernels[@]}"
cp "${kernels[0]}" "$tmp/out/vmlinuz"
basename "${kernels[0]}" | sed 's/^vmlinuz-//' >"$tmp/out/kernel-version"
for m in "${modules[@]}"; do
    found=$(find "$tmp/x/lib/modules" -name "$m.ko" | head -n 1)
    [ -n "$found" ] || die "extract from $(basename "$deb"): module $m.ko not found"
    cp "$found" "$tmp/out/modules/$m.ko"
    echo "$m" >>"$tmp/out/modules/order"
done

rm -rf "$dir"
mv "$tmp/out" "$dir" || die "rename into $dir: failed"
echo "$prog: kernel $(cat "$dir/kernel-version") and ${#modules[@]} virtio modules in $dir" >&2
