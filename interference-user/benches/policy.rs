//! The policy engine's cost per tick on a 64-VM host (2016 pairs).
//!
//! `cargo bench -p interference-user --bench policy` (no root). Each scenario runs
//! WARMUP + TICKS decisions, answering every action with an applied outcome as the
//! agent would, and times `Policy::decide` alone (each tick's scores are built just
//! before it, outside the timing, as the scorer would).
//! Scenarios: nothing hot; a rotating few hot pairs (the usual case: pairs activate,
//! climb, calm down and roll back); every pair hot (the worst case: 2016 candidates
//! fighting over a cap of 4 actions per tick, most of them reported as skipped). Every
//! other rotation phase the VMs' CPU demand drops to a tenth, so the pairs that calmed
//! down are held while the demand is as it was and rolled back once it drops.
//! Prints the median, 99th percentile and maximum per tick, in microseconds.

use std::time::{Duration, Instant};

use interference::inventory::Priority;
use interference::policy::{ActionResult, Policy, PolicyConfig, PolicyInput, VmInput};
use interference::predict::ContentionScore;

const VMS: usize = 64;
const WARMUP: u64 = 50;
const TICKS: u64 = 2000;
const TICK_MS: u64 = 5_000;

fn vms() -> Vec<VmInput> {
    (0..VMS)
        .map(|i| VmInput {
            name: format!("vm-{i:02}"),
            customer: Some(format!("customer-{}", i % 8)),
            priority: if i.is_multiple_of(16) {
                Priority::High
            } else {
                Priority::Normal
            },
            sla_tier: i.is_multiple_of(5).then(|| "gold".to_owned()),
            cpu_cores: 0.1 + (i % 7) as f64 * 0.3,
            cpu_demand_cores: 0.1 + (i % 7) as f64 * 0.3,
            cpu_weight: Some(100),
            cpuset: Some((0..16).collect()),
            memory_bytes: Some(4 << 30),
            memory_allocated_bytes: None,
            memory_floor_bytes: Some(1 << 30),
            has_qmp: true,
            vcpus: None,
            no_donor: false,
            priority_until_ms: None,
        })
        .collect()
}

/// The scores of tick `t`: pair p is hot when it falls on the rotating stride (every
/// pair when `stride` is 1, none when 0), otherwise a low, varying score.
fn scores(names: &[String], t: u64, stride: usize) -> Vec<ContentionScore> {
    let mut out = Vec::with_capacity(VMS * (VMS - 1) / 2);
    let mut p = 0usize;
    for i in 0..names.len() {
        for j in i + 1..names.len() {
            let phase = (t / 50) as usize * 37;
            let hot = stride != 0 && (p + phase).is_multiple_of(stride);
            let score = if hot {
                50.0 + ((p * 13 + t as usize) % 40) as f32
            } else {
                ((p * 7 + t as usize) % 20) as f32
            };
            let (victim, aggressor) = if p.is_multiple_of(2) { (i, j) } else { (j, i) };
            out.push(ContentionScore {
                vm: names[i].clone(),
                neighbor: names[j].clone(),
                score,
                victim: names[victim].clone(),
                aggressor: names[aggressor].clone(),
                ..ContentionScore::default()
            });
            p += 1;
        }
    }
    out
}

fn run(label: &str, stride: usize) {
    let mut vms = vms();
    let names: Vec<String> = vms.iter().map(|v| v.name.clone()).collect();
    let host_cpus: Vec<u32> = (0..16).collect();
    let mut policy = Policy::new(PolicyConfig::default(), "bench-host").expect("default config");
    let mut outcomes = Vec::new();
    let mut times = Vec::with_capacity(TICKS as usize);
    let (mut actions, mut skipped) = (0usize, 0usize);
    for t in 0..WARMUP + TICKS {
        // Built fresh each tick, as the scorer does just before the policy runs.
        let scores = &scores(&names, t, stride);
        let busy = (t / 50).is_multiple_of(2);
        for v in &mut vms {
            v.cpu_demand_cores = if busy {
                v.cpu_cores
            } else {
                v.cpu_cores / 10.0
            };
        }
        let now_ms = 1_700_000_000_000 + t * TICK_MS;
        let input = PolicyInput {
            tick: t,
            now_ms,
            host_cpus: &host_cpus,
            vms: &vms,
            scores,
            directed: &[],
            outcomes: &outcomes,
            hold_new: None,
            blocked_customers: &[],
            capped_customers: &[],
            payer: Default::default(),
            payer_tiers: &Default::default(),
            placement: interference::policy::Placement::Static,
        };
        let start = Instant::now();
        let decision = policy.decide(&input);
        let took = start.elapsed();
        if t >= WARMUP {
            times.push(took);
            actions += decision.actions.len();
            skipped += decision.skipped.len();
        }
        outcomes = decision.outcomes_as(ActionResult::Applied, now_ms + 20);
    }
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let pct = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "{label:<28} median {:>7.1} us  p99 {:>7.1} us  max {:>7.1} us  ({:.2} actions, {:.1} skipped per tick; {} active pairs at the end)",
        us(pct(0.5)),
        us(pct(0.99)),
        us(*times.last().expect("ticks")),
        actions as f64 / TICKS as f64,
        skipped as f64 / TICKS as f64,
        policy.state().pairs.len(),
    );
}

fn main() {
    println!(
        "policy::decide, {VMS} VMs ({} pairs), {TICKS} ticks after {WARMUP} of warm-up",
        VMS * (VMS - 1) / 2
    );
    run("nothing hot", 0);
    run("1 pair in 200 hot, rotating", 200);
    run("1 pair in 20 hot, rotating", 20);
    run("every pair hot", 1);
}
