#!/usr/bin/env bash
# Builds the bundle the VM lab's guests run from their share disk: the release
# `interference` binary and the enforcement probe (interference-user/examples/
# enforce_probe.rs), debug info stripped, with the dynamic loader and every shared
# library they link, and one wrapper per program that starts it through that loader.
# The guests are busybox systems on another kernel (tests/tests/lab_cross_kernel.rs,
# lab_enforce_v2.rs) with no glibc of their own; the host's glibc runs on their kernel.
# This replaced a second, static (musl) build of every dependency: the same binaries
# the rest of the suite tests, and minutes less of CI.
#
# Prints the bundle's directory: `interference` and `enforce_probe` (wrappers),
# `bin/` (the programs), `lib/` (loader and libraries). Idempotent and cheap when the
# release build is up to date.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if [ ! -f target/bpfel-unknown-none/release/interference ]; then
    echo "guest-bundle: the eBPF object is missing; building the eBPF programs" >&2
    cargo xtask build-ebpf >&2
fi
cargo build --release -p interference-user --bin interference --example enforce_probe >&2

out="$(pwd)/target/guest-bundle"
rm -rf "$out.tmp"
mkdir -p "$out.tmp/bin" "$out.tmp/lib"
for prog in target/release/interference target/release/examples/enforce_probe; do
    name=$(basename "$prog")
    objcopy --strip-debug "$prog" "$out.tmp/bin/$name"
    # `ldd` lists the loader by its absolute path and each library after `=>`.
    ldd "$prog" | awk '/=> \//{print $3} /^\t\//{print $1}' | while read -r lib; do
        cp -L "$lib" "$out.tmp/lib/"
    done
    cat >"$out.tmp/$name" <<WRAPPER
#!/bin/sh
# Runs bin/$name with the host's loader and libraries (scripts/guest-bundle.sh).
d=\$(dirname "\$0")
exec "\$d/lib/ld-linux-x86-64.so.2" --library-path "\$d/lib" "\$d/bin/$name" "\$@"
WRAPPER
    chmod 755 "$out.tmp/$name"
done
if [ ! -x "$out.tmp/lib/ld-linux-x86-64.so.2" ]; then
    echo "guest-bundle: ldd named no ld-linux-x86-64.so.2 for the release binary" >&2
    exit 1
fi
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
