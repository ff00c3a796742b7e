#!/usr/bin/env bash
# Builds the VM lab's guest once and caches it: Debian's cloud kernel (vmlinuz from the
# package, downloaded with apt-get download and unpacked with dpkg-deb, never
# installed) and an initramfs with static busybox, the virtio modules, the lab's /init
# and the workload program. The result lives in $CACHE/guest-<hash>/, where the hash
# covers every input (kernel package, busybox, init, workload.c, this script), so a
# second run prints the cached directory in well under a second and a changed input
# builds a new one.
#
# Usage: build-guest.sh            prints the guest directory on stdout
# Env:   INTERFERENCE_LAB_CACHE       cache directory (default /var/cache/interference-lab)
#        INTERFERENCE_LAB_KERNEL_PKG  kernel package (default linux-image-cloud-amd64)
set -euo pipefail
shopt -s inherit_errexit

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${INTERFERENCE_LAB_CACHE:-/var/cache/interference-lab}
KERNEL_PKG=${INTERFERENCE_LAB_KERNEL_PKG:-linux-image-cloud-amd64}
BUSYBOX=${INTERFERENCE_LAB_BUSYBOX:-/bin/busybox}
# virtio_pci carries every device; blk for the I/O disk and the share, balloon for
# memory enforcement, console for a virtio-serial port. Built-in ones are skipped.
MODULES=(virtio_pci virtio_blk virtio_balloon virtio_console)

log() { printf 'lab: %s\n' "$*" >&2; }
die() {
    printf 'lab: error: %s\n' "$*" >&2
    exit 1
}

require_tools() {
    local missing=() tool
    for tool in apt-get dpkg-deb cpio gcc sha256sum; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] ||
        die "missing ${missing[*]}: run ./scripts/lab.sh setup (or apt-get install cpio gcc libc6-dev)"
    [ -x "$BUSYBOX" ] || die "missing $BUSYBOX: apt-get install busybox-static"
    if ldd "$BUSYBOX" >/dev/null 2>&1; then
        die "$BUSYBOX is dynamically linked; the guest needs a static one: apt-get install busybox-static"
    fi
}

# download_deb PKG: path of PKG's .deb in the cache, downloading it the first time.
download_deb() {
    local pkg=$1 dir="$CACHE/debs" found
    mkdir -p "$dir"
    found=$(find "$dir" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -n 1)
    if [ -z "$found" ]; then
        log "downloading $pkg (apt-get download)"
        if ! (cd "$dir" && apt-get download "$pkg" >/dev/null 2>&1); then
            log "apt-get download $pkg failed; running apt-get update once"
            apt-get update -qq >/dev/null 2>&1 || true
            (cd "$dir" && apt-get download "$pkg" >/dev/null 2>&1) ||
                die "cannot download $pkg with apt-get download (no network or no such package?); put its .deb in $dir"
        fi
        found=$(find "$dir" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -n 1)
    fi
    [ -n "$found" ] || die "apt-get download $pkg left no ${pkg}_*.deb in $dir"
    echo "$found"
}

# kernel_deb: the .deb that holds a vmlinuz, following a metapackage's dependency.
kernel_deb() {
    local deb dep
    deb=$(download_deb "$KERNEL_PKG")
    if dpkg-deb -c "$deb" | grep -q '/boot/vmlinuz-'; then
        echo "$deb"
        return
    fi
    dep=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/[ (].*//; s/^ *//' |
        grep '^linux-image-' | head -n 1)
    [ -n "$dep" ] || die "$deb has no vmlinuz and depends on no linux-image package"
    download_deb "$dep"
}

inputs_hash() {
    local deb=$1
    {
        echo "$KERNEL_PKG ${MODULES[*]}"
        sha256sum "$deb" "$BUSYBOX" "$HERE/init" "$HERE/workload.c" "$HERE/build-guest.sh" | cut -d' ' -f1
    } | sha256sum | cut -c1-16
}

# module_file ROOT RELEASE NAME: the module's file, empty when it is built in.
module_file() {
    local root=$1 release=$2 name=$3 moddir file
    moddir="$root/lib/modules/$release"
    if grep -Eq "/(${name}|${name//_/-})\.ko\$" "$moddir/modules.builtin" 2>/dev/null; then
        return 0
    fi
    file=$(find "$moddir/kernel" \( -name "$name.ko*" -o -name "${name//_/-}.ko*" \) | head -n 1)
    [ -n "$file" ] || die "module $name is neither built into $release nor in its package"
    echo "$file"
}

# module_depends KO: the modules KO needs, from its .modinfo strings (no kmod needed).
module_depends() {
    tr '\0' '\n' <"$1" | sed -n 's/^depends=//p' | tr ',' ' '
}

# add_module ROOT RELEASE NAME STAGE: copies NAME and its dependencies into
# STAGE/lib/modules (decompressed) and appends them to load-order, dependencies first.
add_module() {
    local root=$1 release=$2 name=$3 stage=$4 file dep ko
    grep -qx "$name.ko" "$stage/lib/modules/load-order" 2>/dev/null && return 0
    file=$(module_file "$root" "$release" "$name")
    [ -n "$file" ] || return 0
    ko="$stage/lib/modules/$name.ko"
    case "$file" in
    *.ko) cp "$file" "$ko" ;;
    *.ko.xz) xz -dc "$file" >"$ko" ;;
    *.ko.zst) zstd -qdc "$file" >"$ko" ;;
    *.ko.gz) gzip -dc "$file" >"$ko" ;;
    *) die "unknown module format: $file" ;;
    esac
    for dep in $(module_depends "$ko"); do
        add_module "$root" "$release" "$dep" "$stage"
    done
    echo "$name.ko" >>"$stage/lib/modules/load-order"
}

build_initramfs() {
    local root=$1 release=$2 out=$3 stage applet
    stage=$(mktemp -d)
    mkdir -p "$stage"/{bin,dev,proc,sys,tmp,run,mnt,lib/modules,sys/fs/cgroup}
    cp "$BUSYBOX" "$stage/bin/busybox"
    for applet in $("$BUSYBOX" --list); do
        [ "$applet" = busybox ] || ln -s busybox "$stage/bin/$applet"
    done
    gcc -static -O2 -Wall -o "$stage/bin/lab-workload" "$HERE/workload.c"
    install -m 0755 "$HERE/init" "$stage/init"
    : >"$stage/lib/modules/load-order"
    for m in "${MODULES[@]}"; do
        add_module "$root" "$release" "$m" "$stage"
    done
    mknod -m 600 "$stage/dev/console" c 5 1
    (cd "$stage" && find . -print0 | cpio --null -o -H newc --owner=0:0 --quiet) >"$out"
    rm -rf "$stage"
}

main() {
    require_tools
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.build.lock"
    flock 9
    local deb hash dir tmp release
    deb=$(kernel_deb)
    hash=$(inputs_hash "$deb")
    dir="$CACHE/guest-$hash"
    if [ -f "$dir/done" ]; then
        echo "$dir"
        return
    fi
    log "building the guest ($(basename "$deb")) into $dir"
    tmp=$(mktemp -d "$CACHE/.build.XXXXXX")
    dpkg-deb -x "$deb" "$tmp/root"
    release=$(basename "$(find "$tmp/root/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n 1)")
    [ -n "$release" ] || die "$deb has no /lib/modules/<release>"
    mkdir "$tmp/guest"
    cp "$tmp/root/boot/vmlinuz-$release" "$tmp/guest/vmlinuz"
    cp "$tmp/root/boot/config-$release" "$tmp/guest/config"
    build_initramfs "$tmp/root" "$release" "$tmp/guest/initramfs.cpio"
    cp "$tmp/root/lib/modules/$release/modules.builtin" "$tmp/guest/modules.builtin"
    echo "$release" >"$tmp/guest/release"
    basename "$deb" >"$tmp/guest/package"
    touch "$tmp/guest/done"
    rm -rf "$dir"
    mv "$tmp/guest" "$dir"
    rm -rf "$tmp"
    log "guest ready: kernel $release, $(du -h "$dir/initramfs.cpio" | cut -f1) initramfs"
    echo "$dir"
}

main "$@"
