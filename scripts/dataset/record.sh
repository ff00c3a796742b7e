#!/usr/bin/env bash
# Records the contention dataset with 1 s labels (docs/dataset.md): four schedule
# families, cpu victims with 1-4 threads, cache, membw and fsync victims, and lab VMs,
# each telemetry tick of `interference collect` with every workload's own progress.
#
#   ./scripts/dataset/record.sh [--binary PATH] [--out DIR] [record.py options...]
#
# Defaults: --binary target/release/interference, --out
# /var/cache/interference-dataset/issue14, --preset full (15 experiments, about 37
# minutes), seed 14. Experiments already recorded in DIR are kept, so an interrupted run
# resumes. Needs root and ./scripts/setup.sh done (the release binary, and the lab's
# guest for the lab VM experiments; --skip-lab leaves those out).
#
# The machine should be otherwise idle: anything else running shows up in the labels.
# The recorder measures the host's load outside its experiment and records it
# (host.jsonl, experiment.json host.load); --wait-idle S waits for an idle host.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "record: needs root (cgroups, eBPF)" >&2; exit 1; }
agent="$ROOT/target/release/interference"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
    --binary) agent=$2; shift 2 ;;
    --binary=*) agent=${1#--binary=}; shift ;;
    *) args+=("$1"); shift ;;
    esac
done
[ -x "$agent" ] || { echo "record: $agent missing: run ./scripts/setup.sh, or pass --binary" >&2; exit 1; }
# A private copy, so a rebuild during a long recording cannot change the collector.
mkdir -p /var/cache/interference-dataset/bin
cp "$agent" /var/cache/interference-dataset/bin/interference
exec python3 "$ROOT/scripts/dataset/record.py" \
    --out /var/cache/interference-dataset/issue14 --preset full --seed 14 \
    --binary /var/cache/interference-dataset/bin/interference "${args[@]}"
