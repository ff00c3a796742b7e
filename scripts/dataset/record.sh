#!/usr/bin/env bash
# Records the contention dataset (docs/dataset.md): co-location experiments of real
# workloads in cgroups, and of a lab VM beside host workloads, each telemetry tick of
# `interference collect` with every workload's own progress rate.
#
#   ./scripts/dataset/record.sh [--out DIR] [record.py options...]
#
# Defaults: --out /var/cache/interference-dataset/full, 22 experiments of 150 s and 3
# with a lab VM, seed 2 (about 65 minutes); the fsync workload writes to ext4 on a
# RAM-backed loop device (record.py --disk). Experiments already recorded in DIR are kept, so an
# interrupted run resumes. Needs root and ./scripts/setup.sh done (the release binary,
# and the lab's guest for the lab VM experiments).
#
# The machine should be otherwise idle: anything else running shows up in the labels.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "record: needs root (cgroups, eBPF)" >&2; exit 1; }
agent="$ROOT/target/release/interference"
[ -x "$agent" ] || { echo "record: $agent missing: run ./scripts/setup.sh" >&2; exit 1; }
# A private copy, so a rebuild during a long recording cannot change the collector.
mkdir -p /var/cache/interference-dataset/bin
cp "$agent" /var/cache/interference-dataset/bin/interference
exec python3 "$ROOT/scripts/dataset/record.py" \
    --out /var/cache/interference-dataset/full --experiments 22 --seconds 150 --lab-vms 3 --seed 2 \
    --agent /var/cache/interference-dataset/bin/interference "$@"
