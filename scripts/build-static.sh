#!/usr/bin/env bash
# Builds a statically linked `interference` (x86_64-unknown-linux-musl) for the VM lab's
# cross-kernel check: the binary runs inside a busybox guest on another kernel
# (tests/tests/lab_cross_kernel.rs), where there is no glibc. Prints the binary's path.
#
# The eBPF object is embedded by interference-user/build.rs, so it is built first when
# it is missing (`cargo xtask build-ebpf`). Idempotent: an up-to-date build takes about
# a second.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
TARGET=x86_64-unknown-linux-musl
EBPF_OBJECT=target/bpfel-unknown-none/release/interference

if ! rustup target list --installed | grep -qx "$TARGET"; then
    echo "build-static: adding the Rust target $TARGET" >&2
    rustup target add "$TARGET" >&2
fi
if [ ! -f "$EBPF_OBJECT" ]; then
    echo "build-static: $EBPF_OBJECT missing; building the eBPF programs" >&2
    cargo xtask build-ebpf >&2
fi
# The enforcement probe (interference-user/examples/enforce_probe.rs) rides along for
# tests/tests/lab_enforce_v2.rs: target/$TARGET/release/examples/enforce_probe.
# tract-linalg compiles C and assembly kernels: for musl, with Debian's musl-gcc
# (musl-tools, installed by setup.sh).
export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}
cargo build --release --target "$TARGET" -p interference-user --bins --example enforce_probe >&2
bin="$(pwd)/target/$TARGET/release/interference"
if command -v file >/dev/null && ! file -L "$bin" | grep -q 'static'; then
    echo "build-static: $bin is not statically linked" >&2
    exit 1
fi
echo "$bin"
