//! Cost of the feature stage for 100 VMs: the 9 900 ordered pairs' raw windows
//! (T = 6 model ticks of k = 1 sample, 49 features) that one scoring round hands to
//! the model, which must cost well under the inference itself.
//!
//! `cargo bench -p interference-user --bench features` (no root). Builds 100 synthetic
//! VMs on a 64-CPU host: 2 to 8 vCPUs each, pinned to overlapping CPU ranges or
//! unpinned, each preempted by a handful of its CPU neighbours and the host, with
//! per-vCPU histograms as the collector writes them. Fills the windows, then times
//! `pairs_into` (median and p90 of 30 runs, pinned to CPU 0) and `push_tick`, and
//! reports the heap the windows and the batch hold, from a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use interference::features::{FeatureWindows, PairWindows};
use interference::inventory::Priority;
use interference::telemetry::{
    BlockIo, CpuUsage, Latency, Memory, Preemption, Psi, PsiResource, VcpuSample, VmSample,
};

const VMS: usize = 100;
const HOST_CPUS: u32 = 64;
const T: usize = 6;
const K: usize = 1;
const RUNS: usize = 30;

/// The system allocator, counting the bytes in use and their peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn latency(rng: &mut Rng, scale: f64) -> Latency {
    let waits = rng.below(5000);
    let mut histogram = vec![0u64; 32];
    for _ in 0..8 {
        histogram[10 + rng.below(14) as usize] += waits / 8;
    }
    Latency {
        waits,
        wait_seconds: scale * 0.05 * rng.unit(),
        max_seconds: scale * 0.004 * rng.unit(),
        preemptions: rng.below(800),
        preempted_seconds: scale * 0.02 * rng.unit(),
        histogram,
    }
}

fn psi(rng: &mut Rng) -> Option<PsiResource> {
    Some(PsiResource {
        some_seconds: 0.1 * rng.unit(),
        full_seconds: Some(0.05 * rng.unit()),
        some_avg10: 10.0 * rng.unit(),
        full_avg10: Some(5.0 * rng.unit()),
    })
}

/// VM `i`'s CPUs: one in four unpinned (all CPUs), the others on 4 to 16 CPUs from an
/// offset that makes neighbours overlap.
fn cpus(i: usize) -> Vec<u32> {
    if i.is_multiple_of(4) {
        return (0..HOST_CPUS).collect();
    }
    let width = 4 << (i % 3);
    let start = (i as u32 * 5) % HOST_CPUS;
    (0..width)
        .map(|c| (start + c) % HOST_CPUS)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn name(i: usize) -> String {
    format!("customer{:02}-vm-{i:03}", i % 17)
}

const LABELS: [Option<&str>; 6] = [
    Some("web"),
    Some("database"),
    Some("batch"),
    Some("storage"),
    Some("ml"),
    None,
];

fn sample(rng: &mut Rng, i: usize, ts: u64) -> VmSample {
    let vcpus = 2 + (i % 7) as u32;
    // preempted by 6 to 10 neighbours (the ones sharing its CPUs first) and the host
    let mut preempted_by: Vec<Preemption> = (1..=6 + i % 5)
        .map(|d| Preemption {
            by: name((i + d * 3) % VMS),
            count: rng.below(200),
            seconds: 0.01 * rng.unit(),
        })
        .collect();
    preempted_by.push(Preemption {
        by: "host".into(),
        count: rng.below(50),
        seconds: 0.002 * rng.unit(),
    });
    preempted_by.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    VmSample {
        schema: 1,
        timestamp_ms: ts,
        interval_seconds: 5.0,
        host: "bench".into(),
        vm: name(i),
        uuid: Some(format!("00000000-0000-0000-0000-{i:012}")),
        customer: Some(format!("customer{:02}", i % 17)),
        workload: LABELS[i % LABELS.len()].map(str::to_string),
        priority: Priority::Normal,
        runqueue: latency(rng, vcpus as f64),
        vcpus: (0..vcpus)
            .map(|v| VcpuSample {
                vcpu: v,
                tid: 10_000 + (i as u32) * 16 + v,
                latency: latency(rng, 1.0),
            })
            .collect(),
        other_threads: latency(rng, 0.2),
        preempted_by,
        block_io: Some(BlockIo {
            read_ops: rng.below(1000),
            write_ops: rng.below(1000),
            other_ops: rng.below(10),
            read_bytes: rng.below(1 << 26),
            write_bytes: rng.below(1 << 26),
            other_bytes: 0,
            latency_seconds: 0.5 * rng.unit(),
            latency_histogram: vec![1; 32],
        }),
        cpu: Some(CpuUsage {
            usage_seconds: vcpus as f64 * 5.0 * rng.unit(),
            user_seconds: Some(1.0),
            system_seconds: Some(0.1),
            periods: Some(50),
            throttled_periods: Some(rng.below(5)),
            throttled_seconds: Some(0.05 * rng.unit()),
        }),
        memory: Some(Memory {
            usage_bytes: (1 + rng.below(32)) << 30,
            limit_bytes: None,
            swap_bytes: Some(0),
            anon_bytes: Some(1 << 30),
            file_bytes: Some(1 << 28),
            major_faults: Some(rng.below(20)),
        }),
        psi: Some(Psi {
            cpu: psi(rng),
            memory: psi(rng),
            io: psi(rng),
        }),
        llc: None,
        threads: vcpus + 3,
        cpus: Some(cpus(i)),
    }
}

fn ticks(rng: &mut Rng, n: usize, from: u64) -> Vec<Vec<VmSample>> {
    (0..n)
        .map(|t| {
            let ts = from + t as u64 * 5000;
            (0..VMS).map(|i| sample(rng, i, ts)).collect()
        })
        .collect()
}

fn pin_to_cpu0() -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity
    // only read and write that local set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: one quick run
    // there, to check the bench still works.
    let runs = if std::env::args().any(|a| a == "--bench") {
        RUNS
    } else {
        1
    };
    let pinned = pin_to_cpu0();
    if !pinned {
        eprintln!("features: could not pin to CPU 0; timings may be noisier");
    }
    let mut rng = Rng(0x1f2e_3d4c_5b6a_7988);
    let start = 1_795_392_000_000;
    let fill = ticks(&mut rng, T * K, start);
    let more = ticks(&mut rng, runs, start + (T * K) as u64 * 5000);

    let before = IN_USE.load(Ordering::Relaxed);
    let mut windows = FeatureWindows::new(T, K);
    for tick in &fill {
        windows.push_tick(tick);
    }
    let windows_heap = IN_USE.load(Ordering::Relaxed) - before;
    assert_eq!(windows.ready_vms().len(), VMS);

    let mut out = PairWindows::default();
    windows.pairs_into(&mut out); // warm-up; sizes the batch
    let n = out.len();
    assert_eq!(n, VMS * (VMS - 1));
    let batch_heap = out.data.capacity() * 4
        + out
            .pairs
            .iter()
            .map(|(v, a)| v.capacity() + a.capacity())
            .sum::<usize>()
        + out.pairs.capacity() * std::mem::size_of::<(String, String)>();

    let base = IN_USE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut timings = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        windows.pairs_into(&mut out);
        timings.push(t0.elapsed());
        std::hint::black_box(&out);
    }
    let scratch = PEAK.load(Ordering::Relaxed) - base;

    let mut fresh = Vec::with_capacity(5);
    for _ in 0..runs.min(5) {
        let t0 = Instant::now();
        let p = windows.pairs();
        fresh.push(t0.elapsed());
        std::hint::black_box(&p);
    }

    let mut pushes = Vec::with_capacity(runs);
    for tick in &more {
        let t0 = Instant::now();
        windows.push_tick(tick);
        pushes.push(t0.elapsed());
    }
    assert_eq!(windows.ready_vms().len(), VMS);

    println!(
        "features: {VMS} VMs, {n} ordered pairs x T = {T} x F = {} (k = {K}), {runs} runs{}",
        out.f,
        if pinned { ", pinned to CPU 0" } else { "" }
    );
    println!("| step | median (ms) | p90 (ms) |");
    println!("|---|---|---|");
    println!(
        "| pairs_into (reused batch) | {:.2} | {:.2} |",
        ms(quantile(&mut timings, 0.5)),
        ms(quantile(&mut timings, 0.9))
    );
    println!(
        "| pairs (fresh batch, up to 5 runs) | {:.2} | {:.2} |",
        ms(quantile(&mut fresh, 0.5)),
        ms(quantile(&mut fresh, 0.9))
    );
    println!(
        "| push_tick ({VMS} samples) | {:.3} | {:.3} |",
        ms(quantile(&mut pushes, 0.5)),
        ms(quantile(&mut pushes, 0.9))
    );
    println!(
        "heap: windows {:.2} MiB ({} samples), batch {:.2} MiB, pairs_into scratch peak {:.2} MiB",
        mib(windows_heap),
        VMS * T * K,
        mib(batch_heap),
        mib(scratch)
    );
}
