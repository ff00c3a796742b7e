//! What `[fleet]` adds to each tick on a 64-VM host: the report (action phases, hot
//! pairs, capacity, rollups) built from the tick, and its items appended to the
//! outbox file, against the whole agent tick it rides on (docs/benchmarks.md, "One
//! whole agent tick with 64 VMs").
//!
//! `cargo bench -p interference-user --bench fleet_report` (no root). 2000 ticks of
//! 5 s: 64 VM samples, a scoring round of the 2016 pairs every tick with 4 pairs above
//! the off threshold, an applied action every 50 ticks (its phase is the one synced
//! write), 5-minute rollups. The outbox is in a temporary directory on /var/tmp (a
//! real disk, like the state directory). Prints the median, 99th percentile and
//! maximum per tick, for the report alone and with the outbox write.

use std::time::{Duration, Instant};

use interference::fleet::outbox::{Outbox, OutboxMark};
use interference::fleet::report::{ReportInput, Reporter};
use interference::inventory::Priority;
use interference::policy::{Action, ActionResult, Change, Outcome, Rung, Trigger};
use interference::predict::ContentionScore;
use interference::telemetry::{BlockIo, CpuUsage, Latency, Memory, Preemption, VmSample};
use interference_fleet::wire::Capacity;

const VMS: usize = 64;
const TICKS: u64 = 2000;
const TICK_MS: u64 = 5_000;

fn name(i: usize) -> String {
    format!("vm-{i:02}")
}

fn sample(i: usize, ts: u64) -> VmSample {
    VmSample {
        schema: 1,
        timestamp_ms: ts,
        interval_seconds: 5.0,
        host: "bench".into(),
        vm: name(i),
        uuid: Some(format!("00000000-0000-0000-0000-{i:012}")),
        customer: Some(format!("customer-{}", i % 8)),
        workload: None,
        priority: Priority::Normal,
        runqueue: Latency {
            waits: 1000,
            wait_seconds: 0.05 + (i % 5) as f64 * 0.01,
            ..Latency::default()
        },
        vcpus: Vec::new(),
        other_threads: Latency::default(),
        preempted_by: (1..=6)
            .map(|d| Preemption {
                by: name((i + d) % VMS),
                count: 10,
                seconds: 0.001 * d as f64,
            })
            .collect(),
        block_io: Some(BlockIo {
            read_ops: 100,
            write_ops: 50,
            read_bytes: 1 << 20,
            write_bytes: 1 << 19,
            ..BlockIo::default()
        }),
        cpu: Some(CpuUsage {
            usage_seconds: 2.5,
            ..CpuUsage::default()
        }),
        memory: Some(Memory {
            usage_bytes: 2 << 30,
            ..Memory::default()
        }),
        psi: None,
        llc: None,
        threads: 6,
        cpus: None,
    }
}

fn pairs(t: u64) -> Vec<ContentionScore> {
    let mut out = Vec::with_capacity(VMS * (VMS - 1) / 2);
    let mut p = 0u64;
    for i in 0..VMS {
        for j in i + 1..VMS {
            let hot = (p + t / 60).is_multiple_of(504);
            out.push(ContentionScore {
                vm: name(i),
                neighbor: name(j),
                score: if hot { 45.0 } else { (p % 20) as f32 },
                victim: name(i),
                aggressor: name(j),
                unobservable: Vec::new(),
                forecast: None,
            });
            p += 1;
        }
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

fn action(t: u64, now_ms: u64) -> (Action, Outcome) {
    let id = format!("bench-1-{t}-0");
    let vm = name((t as usize / 50) % VMS);
    let action = Action {
        payer: Default::default(),
        not_donors: Vec::new(),
        id: id.clone(),
        decided_ms: now_ms,
        rung: Rung::Weight,
        change: Change::CpuWeight { weight: 10 },
        vm: vm.clone(),
        protects: name(0),
        victim: name(0),
        aggressor: vm.clone(),
        score: 45.0,
        unobservable: Vec::new(),
        vm_is_aggressor: true,
        simulated: false,
        reason: "bench".into(),
        customers: [(vm, "customer-1".to_owned())].into(),
        vcpus: Some(2),
        cause: None,
        trigger: Trigger::Now,
    };
    let outcome = Outcome {
        action_id: id,
        result: ActionResult::Applied,
        at_ms: now_ms,
        effects: Vec::new(),
        error: None,
    };
    (action, outcome)
}

fn summary(what: &str, mut d: Vec<Duration>) {
    d.sort();
    let at = |q: f64| d[((d.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    println!(
        "{what:<28} median {:>8.1} µs  p99 {:>8.1} µs  max {:>8.1} µs",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

fn main() {
    let dir = tempfile::tempdir_in("/var/tmp").expect("a temporary directory");
    let mut outbox = Outbox::open(dir.path(), 64 << 20, OutboxMark::default()).expect("outbox");
    let mut reporter = Reporter::new(300_000);
    let start_ms = 1_800_000_000_000u64;
    let mut report = Vec::new();
    let mut whole = Vec::new();
    let mut items = 0usize;
    for t in 0..TICKS {
        let now_ms = start_ms + t * TICK_MS;
        let samples: Vec<VmSample> = (0..VMS).map(|i| sample(i, now_ms)).collect();
        let scored = pairs(t);
        let actions: Vec<(Action, Outcome)> = if t % 50 == 25 {
            vec![action(t, now_ms)]
        } else {
            Vec::new()
        };
        let input = ReportInput {
            now_ms,
            samples: &samples,
            pairs: &scored,
            off_threshold: Some(25.0),
            actions: &actions,
            capacity: Capacity::default(),
            model_sha: None,
            shadow: None,
            forecast_errors: None,
        };
        let started = Instant::now();
        let out = reporter.tick(&input);
        report.push(started.elapsed());
        outbox.push(&out).expect("push");
        whole.push(started.elapsed());
        items += out.len();
    }
    println!(
        "{VMS} VMs, {TICKS} ticks of {} s, {items} items ({} per hour)",
        TICK_MS / 1000,
        items as u64 * 3_600_000 / (TICKS * TICK_MS)
    );
    summary("report", report);
    summary("report + outbox append", whole);
}
