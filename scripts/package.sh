#!/usr/bin/env bash
# Builds the Debian packages: target/debian/interference-agent_<version>-1_amd64.deb and
# target/debian/interference-controller_<version>-1_amd64.deb (cargo-deb, installed by
# scripts/setup.sh). The manual pages and shell completions are generated from the
# binaries' own flag definitions first (target/release/package/), so they match the binaries
# they ship with. Install with `dpkg -i target/debian/interference-agent_*.deb`;
# docs/operations.md has the rest.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1mpackage:\033[0m %s\n' "$*"; }

log "building the release binaries (the eBPF object is embedded; scripts/setup.sh built it)"
cargo build --release -p interference-user -p interference-controller

for pair in agent:interference controller:interference-controller; do
    part=${pair%%:*}
    bin=${pair#*:}
    out=target/release/package/$part
    rm -rf "$out"
    mkdir -p "$out/completions"
    "target/release/$bin" man "$out/man"
    gzip -9n "$out"/man/*.1
    "target/release/$bin" completions bash >"$out/completions/$bin.bash"
    "target/release/$bin" completions zsh >"$out/completions/_$bin"
    "target/release/$bin" completions fish >"$out/completions/$bin.fish"
done

log "building the packages"
cargo deb --no-build --dbgsym -p interference-user --output target/debian/
cargo deb --no-build --dbgsym -p interference-controller --output target/debian/
ls -1 target/debian/*.deb target/debian/*.ddeb
