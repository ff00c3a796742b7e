//! One nowcast round for a full host: 100 VMs, 4950 pairs, every VM preempted by every
//! other one (the worst case: no pair is left out as "took nothing").
//!
//! `cargo bench -p interference-user --bench nowcast` (no root), pinned to CPU 0 by
//! `taskset -c 0` if you want one core. A round is what the agent does each collector
//! tick with the default scorer: push the tick's samples into the 5-tick accounts, then
//! score every ordered pair. The template sample is a real one from
//! data/contention-small. Target (issue 14): at most 2 ms per round on one core.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use interference::predict::{Nowcast, DEFAULT_SMOOTHING};
use interference::telemetry::sample::{Preemption, VmSample};

const VMS: usize = 100;
const WARMUP: usize = 10;
const ROUNDS: usize = 200;
const TARGET_MS: f64 = 2.0;

/// One tick of samples: VM `i` used some CPU, waited, and lost time to every other VM
/// and to `host`, with amounts that change from tick to tick.
fn tick(template: &VmSample, t: usize) -> Vec<VmSample> {
    let names: Vec<String> = (0..VMS).map(|i| format!("vm-{i:03}")).collect();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut s = template.clone();
            s.vm = name.clone();
            s.interval_seconds = 1.0;
            s.runqueue.wait_seconds = 0.2 + 0.001 * ((i + t) % 50) as f64;
            if let Some(cpu) = s.cpu.as_mut() {
                cpu.usage_seconds = 0.5 + 0.002 * ((i * 7 + t) % 100) as f64;
            }
            s.preempted_by = names
                .iter()
                .enumerate()
                .map(|(j, by)| Preemption {
                    by: by.clone(),
                    count: 1 + ((i + j + t) % 5) as u64,
                    seconds: 0.0005 * ((i * 31 + j * 17 + t) % 13) as f64,
                })
                .chain(std::iter::once(Preemption {
                    by: "host".into(),
                    count: 3,
                    seconds: 0.01,
                }))
                .collect();
            s
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/contention-small/e000/samples.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let first = text.lines().next().context("no sample in the fixture")?;
    let template: VmSample = serde_json::from_str(first).context("the fixture's sample")?;
    let ticks: Vec<Vec<VmSample>> = (0..8).map(|t| tick(&template, t)).collect();

    let nowcast = Nowcast::new(Duration::from_secs(1), DEFAULT_SMOOTHING);
    let mut accounts = nowcast.accounts();
    let mut times = Vec::with_capacity(ROUNDS);
    let mut pairs = 0;
    for round in 0..WARMUP + ROUNDS {
        let samples = &ticks[round % ticks.len()];
        let started = Instant::now();
        accounts.push_tick(samples);
        let scores = nowcast.score(&accounts);
        let elapsed = started.elapsed();
        pairs = scores.len();
        std::hint::black_box(scores);
        if round >= WARMUP {
            times.push(elapsed.as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let p90 = times[times.len() * 9 / 10];
    println!(
        "nowcast round, {VMS} VMs ({pairs} ordered pairs scored, {} ticks smoothed): \
         median {median:.3} ms, p90 {p90:.3} ms, {ROUNDS} rounds; target <= {TARGET_MS} ms: {}",
        nowcast.ticks,
        if median <= TARGET_MS {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
