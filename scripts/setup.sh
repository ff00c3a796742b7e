#!/usr/bin/env bash
# Takes a fresh Debian 12 machine (run as root) to a built release binary:
# system packages, the pinned nightly with rust-src, bpf-linker built against
# Debian's LLVM 22, cargo-deb, cargo-fuzz, schemathesis (PyPI) for the API fuzz
# test, the eBPF object and the `interference` binary.
# Idempotent: every step is skipped when its result is already there.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
EBPF_TOOLCHAIN=$(sed -n 's/^channel = "\(.*\)"/\1/p' interference-ebpf/rust-toolchain.toml)
BPF_LINKER_VERSION=0.13.0
CARGO_DEB_VERSION=3.8.0
LLVM=22
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (it installs Debian packages)" >&2
    exit 1
fi

# Cargo tools from crates.io, pinned, built in the background while the system
# packages install (on a fresh machine that saves their build time): cargo-deb
# (scripts/package.sh builds the Debian packages with it) and cargo-fuzz
# (scripts/fuzz.sh; its version is kept in step with fuzz.sh's own check).
CARGO_FUZZ_VERSION=$(sed -n 's/^CARGO_FUZZ_VERSION=//p' scripts/fuzz.sh)
mkdir -p "$ROOT/target/tools"
declare -A tool_installs=()
install_tool() {
    local tool=$1 version=$2 check=$3
    if $check --version 2>/dev/null | grep -q "$version"; then
        log "$tool $version present"
    else
        log "installing $tool $version in the background (log: target/tools/$tool.log)"
        cargo install "$tool@$version" --locked >"$ROOT/target/tools/$tool.log" 2>&1 &
        tool_installs[$tool]=$!
    fi
}
install_tool cargo-deb "$CARGO_DEB_VERSION" "cargo deb"
install_tool cargo-fuzz "$CARGO_FUZZ_VERSION" "cargo fuzz"

packages=(
    build-essential pkg-config
    "llvm-$LLVM-dev" "libpolly-$LLVM-dev" libzstd-dev zlib1g-dev libxml2-dev
    bpftrace linux-perf stress-ng
    qemu-system-x86 qemu-utils busybox-static cpio
    python3 python3-venv
    postgresql iproute2
    systemd    # systemd-analyze verify and security check the packaged units
    prometheus # promtool: the metrics textfile is checked by the official parser
    chromium   # the customer dashboard's browser test (headless)
    faketime   # libfaketime: the clock-step test steps the agent's wall clock only
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    # Only its promtool is used: the packaged server (and exporter) need not run.
    if command -v systemctl >/dev/null; then
        systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
    fi
else
    log "system packages present"
fi

if ! command -v rustup >/dev/null; then
    echo "setup: rustup not found; install Rust with rustup first" >&2
    exit 1
fi
if ! rustup run "$EBPF_TOOLCHAIN" rustc --version >/dev/null 2>&1 ||
    ! rustup component list --toolchain "$EBPF_TOOLCHAIN" --installed 2>/dev/null | grep -q rust-src; then
    log "installing $EBPF_TOOLCHAIN with rust-src (pinned for bpf-linker's LLVM $LLVM)"
    rustup toolchain install "$EBPF_TOOLCHAIN" --profile minimal -c rust-src
else
    log "$EBPF_TOOLCHAIN with rust-src present"
fi
# scripts/test.sh checks format and lints first.
for component in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^$component"; then
        log "adding the Rust component $component"
        rustup component add "$component"
    fi
done

if bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
    log "bpf-linker $BPF_LINKER_VERSION present"
else
    log "building bpf-linker $BPF_LINKER_VERSION against LLVM $LLVM (about a minute)"
    PATH="/usr/lib/llvm-$LLVM/bin:$PATH" \
        LLVM_SYS_221_PREFIX="/usr/lib/llvm-$LLVM" \
        RUSTFLAGS="-L /usr/lib/llvm-$LLVM/lib" \
        cargo install "bpf-linker@$BPF_LINKER_VERSION" --no-default-features --features "llvm-$LLVM"
fi

for tool in "${!tool_installs[@]}"; do
    if wait "${tool_installs[$tool]}"; then
        log "$tool installed"
    else
        cat "$ROOT/target/tools/$tool.log" >&2
        echo "setup: installing $tool failed" >&2
        exit 1
    fi
done

# schemathesis (PyPI), pinned, in a venv of its own: the customer API's fuzz test.
ST_VENV="$ROOT/target/tools/schemathesis"
if [ -x "$ST_VENV/bin/st" ] && cmp -s scripts/schemathesis-requirements.txt "$ST_VENV/requirements.txt"; then
    log "schemathesis present"
else
    log "installing schemathesis into $ST_VENV"
    rm -rf "$ST_VENV"
    python3 -m venv "$ST_VENV"
    "$ST_VENV/bin/pip" install -q --disable-pip-version-check -r scripts/schemathesis-requirements.txt
    cp scripts/schemathesis-requirements.txt "$ST_VENV/requirements.txt"
fi

log "building the eBPF programs"
cargo xtask build-ebpf
log "building the release binary"
cargo build --release --workspace
log "bundling the binaries the lab's guests run (scripts/guest-bundle.sh)"
./scripts/guest-bundle.sh >/dev/null
log "done: $ROOT/target/release/interference"
