//! Cumulative metric state across ticks, fed with the per-tick [`VmSample`]s.
//!
//! Series exist per VM from its first sample until the first tick it is missing from,
//! when all of its series go (and so do other VMs' `by="<it>"` preemption series): a
//! restarted VM starts again from zero, which Prometheus' rate() reads as a counter
//! reset. A counter series appears once its source first reports a value and then stays
//! (a tick without data adds nothing; `interference_collector_up` says why); gauges show
//! only the last tick's value.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use interference_common::{hist_upper_ns, HIST_BUCKETS};

use super::text::{format_value, Family, HistogramFamily, Labels, TextWriter, Value};
use super::textfile::{write_atomic, TextfileError};
use crate::inventory::Priority;
use crate::telemetry::{Latency, Memory, VmSample};

const PSI_RESOURCES: [&str; 3] = ["cpu", "memory", "io"];
const PSI_KINDS: [&str; 2] = ["some", "full"];
const IO_OPS: [&str; 3] = ["read", "write", "other"];

#[derive(Debug, Default)]
pub struct MetricsExporter {
    ticks: u64,
    tick_duration_seconds: Option<f64>,
    /// The slowest tick since the start: a soak or an operator sees a stall that the
    /// last tick's gauge, sampled now and then, would miss.
    tick_duration_max_seconds: Option<f64>,
    /// The tick interval, when known: a tick that takes longer delays the next one.
    tick_budget: Option<Duration>,
    ticks_over_budget: u64,
    collectors: BTreeMap<String, bool>,
    vms: BTreeMap<String, VmSeries>,
}

/// `vcpu` label: vCPU indexes in numeric order, then "other".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Thread {
    Vcpu(u32),
    Other,
}

#[derive(Debug, Default)]
struct VmSeries {
    /// uuid, customer, workload, priority.
    info: [String; 4],
    threads: u32,
    runqueue: BTreeMap<Thread, Log2Histogram>,
    /// By aggressor: count, seconds.
    preempted: BTreeMap<String, (u64, f64)>,
    block_io: Option<IoTotals>,
    cpu: Option<CpuTotals>,
    memory: Option<Memory>,
    major_faults: Option<u64>,
    /// Stall seconds, [resource][some, full] in the order of PSI_RESOURCES, PSI_KINDS.
    psi: [[Option<f64>; 2]; 3],
    /// LLC misses, instructions.
    llc: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
struct CpuTotals {
    usage_seconds: f64,
    throttled_seconds: Option<f64>,
    throttled_periods: Option<u64>,
}

#[derive(Debug, Default)]
struct IoTotals {
    /// read, write, other.
    ops: [u64; 3],
    bytes: [u64; 3],
    latency: Log2Histogram,
}

/// Cumulative log2 histogram: bucket i holds [2^i, 2^(i+1)) ns, the last one the rest.
#[derive(Debug, Clone)]
struct Log2Histogram {
    buckets: [u64; HIST_BUCKETS],
    count: u64,
    sum_seconds: f64,
}

impl Default for Log2Histogram {
    fn default() -> Self {
        Log2Histogram {
            buckets: [0; HIST_BUCKETS],
            count: 0,
            sum_seconds: 0.0,
        }
    }
}

impl Log2Histogram {
    fn add(&mut self, buckets: &[u64], count: u64, sum_seconds: f64) {
        for (i, n) in buckets.iter().enumerate() {
            let b = &mut self.buckets[i.min(HIST_BUCKETS - 1)];
            *b = b.saturating_add(*n);
        }
        self.count = self.count.saturating_add(count);
        self.sum_seconds += sum_seconds;
    }

    fn add_latency(&mut self, l: &Latency) {
        self.add(&l.histogram, l.waits, l.wait_seconds);
    }

    /// The `le` of bucket i is its exclusive upper bound 2^(i+1) ns; the last bucket is
    /// +Inf. `_count` is the larger of the counted events and the bucket total, which
    /// differ only when the kernel updated one between reads of the other.
    fn render(&self, f: &mut HistogramFamily, labels: &Labels) {
        let les = log2_le_labels();
        let finite = les
            .iter()
            .zip(&self.buckets)
            .map(|(le, n)| (le.as_str(), *n));
        let total = self.buckets.iter().fold(0u64, |a, b| a.saturating_add(*b));
        f.series_with_le(labels, finite, self.sum_seconds, self.count.max(total));
    }
}

/// The `le` label of every finite log2 bucket, rendered once per process.
fn log2_le_labels() -> &'static [String] {
    static LES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    LES.get_or_init(|| {
        (0..HIST_BUCKETS)
            .filter_map(|i| hist_upper_ns(i).map(|ns| format_value(Value::Float(ns as f64 / 1e9))))
            .collect()
    })
}

fn add_opt(acc: &mut Option<f64>, v: Option<f64>) {
    if let Some(v) = v {
        *acc = Some(acc.unwrap_or(0.0) + v);
    }
}

fn add_opt_u64(acc: &mut Option<u64>, v: Option<u64>) {
    if let Some(v) = v {
        *acc = Some(acc.unwrap_or(0).saturating_add(v));
    }
}

impl MetricsExporter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts the ticks that take longer than `budget` (the tick interval) in
    /// `interference_ticks_over_budget_total`.
    pub fn with_tick_budget(mut self, budget: Duration) -> Self {
        self.tick_budget = Some(budget);
        self
    }

    /// Adds one tick: `samples` are that tick's per-VM deltas (a VM without a sample
    /// has vanished), `collectors` the status of each named collector (e.g.
    /// `CollectorStatus::as_pairs`), `tick_duration` how long the tick took.
    pub fn update(
        &mut self,
        samples: &[VmSample],
        collectors: &[(&str, bool)],
        tick_duration: Duration,
    ) {
        self.ticks += 1;
        let seconds = tick_duration.as_secs_f64();
        self.tick_duration_seconds = Some(seconds);
        self.tick_duration_max_seconds = Some(
            self.tick_duration_max_seconds
                .map_or(seconds, |max| max.max(seconds)),
        );
        if self.tick_budget.is_some_and(|b| tick_duration > b) {
            self.ticks_over_budget += 1;
        }
        self.collectors = collectors
            .iter()
            .map(|(n, up)| (n.to_string(), *up))
            .collect();

        let present: BTreeSet<&str> = samples.iter().map(|s| s.vm.as_str()).collect();
        let vanished: BTreeSet<String> = self
            .vms
            .keys()
            .filter(|k| !present.contains(k.as_str()))
            .cloned()
            .collect();
        self.vms.retain(|k, _| present.contains(k.as_str()));
        for s in samples {
            self.vms.entry(s.vm.clone()).or_default().add(s);
        }
        for vm in self.vms.values_mut() {
            vm.preempted.retain(|by, _| !vanished.contains(by));
        }
    }

    pub fn render(&self) -> String {
        let mut w = TextWriter::new();
        self.render_into(&mut w);
        w.finish()
    }

    /// Renders and replaces `path` atomically (see [`write_atomic`]).
    pub fn write_textfile(&self, path: &Path) -> Result<(), TextfileError> {
        write_atomic(path, self.render().as_bytes())
    }

    pub fn render_into(&self, w: &mut TextWriter) {
        w.counter(
            "interference_ticks_total",
            "Collection ticks completed since the agent started.",
        )
        .sample(&[], self.ticks);
        if let Some(d) = self.tick_duration_seconds {
            w.gauge(
                "interference_tick_duration_seconds",
                "Time the last tick took, in seconds.",
            )
            .sample(&[], d);
        }
        if let Some(d) = self.tick_duration_max_seconds {
            w.gauge(
                "interference_tick_duration_max_seconds",
                "Time the slowest tick since the agent started took, in seconds.",
            )
            .sample(&[], d);
        }
        if self.tick_budget.is_some() {
            w.counter(
                "interference_ticks_over_budget_total",
                "Ticks that took longer than the tick interval (each delays the next).",
            )
            .sample(&[], self.ticks_over_budget);
        }
        let mut f = w.gauge(
            "interference_collector_up",
            "1 if the collector produced data in the last tick, 0 if it is unavailable or failed.",
        );
        for (name, up) in &self.collectors {
            f.sample(&[("collector", name)], *up);
        }

        let mut f = w.gauge(
            "interference_vm_info",
            "VM metadata from the inventory; always 1.",
        );
        for (vm, s) in &self.vms {
            let [uuid, customer, workload, priority] = &s.info;
            f.sample(
                &[
                    ("vm", vm),
                    ("uuid", uuid),
                    ("customer", customer),
                    ("workload", workload),
                    ("priority", priority),
                ],
                1u64,
            );
        }
        self.per_vm(
            w.gauge(
                "interference_vm_threads",
                "Threads of the VM tracked at the end of the last tick.",
            ),
            |s| Some(s.threads),
        );

        self.render_sched(w);
        self.render_block_io(w);
        self.render_cgroup(w);

        self.per_vm(
            w.counter(
                "interference_vm_llc_misses_total",
                "Last-level cache misses of the VM's threads (hardware counter).",
            ),
            |s| s.llc.map(|l| l.0),
        );
        self.per_vm(
            w.counter(
                "interference_vm_instructions_total",
                "Instructions retired by the VM's threads (hardware counter).",
            ),
            |s| s.llc.map(|l| l.1),
        );
    }

    /// One series per VM, labelled `vm`, for the VMs where `value` has something.
    fn per_vm<V: Into<Value>>(&self, mut f: Family, value: impl Fn(&VmSeries) -> Option<V>) {
        for (vm, s) in &self.vms {
            if let Some(v) = value(s) {
                f.sample(&[("vm", vm)], v);
            }
        }
    }

    fn render_sched(&self, w: &mut TextWriter) {
        let mut f = w.histogram(
            "interference_vcpu_runqueue_latency_seconds",
            "Time a runnable thread waited for a CPU, per vCPU thread; vcpu=\"other\" is \
             the VM's other threads together.",
        );
        for (vm, s) in &self.vms {
            for (thread, h) in &s.runqueue {
                let vcpu = match thread {
                    Thread::Vcpu(i) => i.to_string(),
                    Thread::Other => "other".to_string(),
                };
                h.render(&mut f, &[("vm", vm), ("vcpu", &vcpu)]);
            }
        }
        let mut f = w.counter(
            "interference_vm_preempted_total",
            "Involuntary switch-outs of the VM's runnable threads, by the VM (or \"host\") \
             that took the CPU.",
        );
        for (vm, s) in &self.vms {
            for (by, (count, _)) in &s.preempted {
                f.sample(&[("vm", vm), ("by", by)], *count);
            }
        }
        let mut f = w.counter(
            "interference_vm_preempted_seconds_total",
            "Run-queue time of the VM's threads that followed a preemption, by the VM (or \
             \"host\") that took the CPU.",
        );
        for (vm, s) in &self.vms {
            for (by, (_, seconds)) in &s.preempted {
                f.sample(&[("vm", vm), ("by", by)], *seconds);
            }
        }
    }

    fn render_block_io(&self, w: &mut TextWriter) {
        let io = || {
            self.vms
                .iter()
                .filter_map(|(vm, s)| s.block_io.as_ref().map(|io| (vm, io)))
        };
        let mut f = w.counter(
            "interference_vm_block_io_operations_total",
            "Block I/O requests completed for the VM.",
        );
        for (vm, t) in io() {
            for (op, n) in IO_OPS.iter().zip(t.ops) {
                f.sample(&[("vm", vm), ("op", op)], n);
            }
        }
        let mut f = w.counter(
            "interference_vm_block_io_bytes_total",
            "Bytes of block I/O requests completed for the VM.",
        );
        for (vm, t) in io() {
            for (op, n) in IO_OPS.iter().zip(t.bytes) {
                f.sample(&[("vm", vm), ("op", op)], n);
            }
        }
        let mut f = w.histogram(
            "interference_vm_block_io_latency_seconds",
            "Block I/O request latency of the VM, issue to completion.",
        );
        for (vm, t) in io() {
            t.latency.render(&mut f, &[("vm", vm)]);
        }
    }

    fn render_cgroup(&self, w: &mut TextWriter) {
        self.per_vm(
            w.counter(
                "interference_vm_cpu_usage_seconds_total",
                "CPU time used by the VM's cgroup.",
            ),
            |s| s.cpu.as_ref().map(|c| c.usage_seconds),
        );
        self.per_vm(
            w.counter(
                "interference_vm_cpu_throttled_seconds_total",
                "Time the VM's cgroup was throttled by its CFS bandwidth limit.",
            ),
            |s| s.cpu.as_ref().and_then(|c| c.throttled_seconds),
        );
        self.per_vm(
            w.counter(
                "interference_vm_cpu_throttled_periods_total",
                "CFS bandwidth periods in which the VM's cgroup was throttled.",
            ),
            |s| s.cpu.as_ref().and_then(|c| c.throttled_periods),
        );
        self.per_vm(
            w.gauge(
                "interference_vm_memory_usage_bytes",
                "Memory charged to the VM's cgroup.",
            ),
            |s| s.memory.as_ref().map(|m| m.usage_bytes),
        );
        self.per_vm(
            w.gauge(
                "interference_vm_memory_limit_bytes",
                "Memory limit of the VM's cgroup; absent when unlimited.",
            ),
            |s| s.memory.as_ref().and_then(|m| m.limit_bytes),
        );
        self.per_vm(
            w.gauge(
                "interference_vm_memory_swap_bytes",
                "Swap used by the VM's cgroup.",
            ),
            |s| s.memory.as_ref().and_then(|m| m.swap_bytes),
        );
        self.per_vm(
            w.counter(
                "interference_vm_memory_major_faults_total",
                "Major page faults in the VM's cgroup.",
            ),
            |s| s.major_faults,
        );
        for (r, resource) in PSI_RESOURCES.iter().enumerate() {
            for (k, kind) in PSI_KINDS.iter().enumerate() {
                let name = format!("interference_vm_psi_{resource}_{kind}_seconds_total");
                let help = match k {
                    0 => format!(
                        "Time in which at least one task of the VM's cgroup stalled on \
                         {resource} (PSI some)."
                    ),
                    _ => format!(
                        "Time in which all non-idle tasks of the VM's cgroup stalled on \
                         {resource} at once (PSI full)."
                    ),
                };
                self.per_vm(w.counter(&name, &help), |s| s.psi[r][k]);
            }
        }
    }
}

impl VmSeries {
    fn add(&mut self, s: &VmSample) {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let priority = match s.priority {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        };
        self.info = [
            opt(&s.uuid),
            opt(&s.customer),
            opt(&s.workload),
            priority.to_string(),
        ];
        self.threads = s.threads;
        for v in &s.vcpus {
            self.runqueue
                .entry(Thread::Vcpu(v.vcpu))
                .or_default()
                .add_latency(&v.latency);
        }
        self.runqueue
            .entry(Thread::Other)
            .or_default()
            .add_latency(&s.other_threads);
        for p in &s.preempted_by {
            let e = self.preempted.entry(p.by.clone()).or_default();
            e.0 = e.0.saturating_add(p.count);
            e.1 += p.seconds;
        }
        if let Some(b) = &s.block_io {
            let t = self.block_io.get_or_insert_with(Default::default);
            let ops = [b.read_ops, b.write_ops, b.other_ops];
            let bytes = [b.read_bytes, b.write_bytes, b.other_bytes];
            for i in 0..3 {
                t.ops[i] = t.ops[i].saturating_add(ops[i]);
                t.bytes[i] = t.bytes[i].saturating_add(bytes[i]);
            }
            let completed = ops.iter().fold(0u64, |a, b| a.saturating_add(*b));
            t.latency
                .add(&b.latency_histogram, completed, b.latency_seconds);
        }
        if let Some(c) = &s.cpu {
            let t = self.cpu.get_or_insert_with(Default::default);
            t.usage_seconds += c.usage_seconds;
            add_opt(&mut t.throttled_seconds, c.throttled_seconds);
            add_opt_u64(&mut t.throttled_periods, c.throttled_periods);
        }
        self.memory = s.memory.clone();
        add_opt_u64(
            &mut self.major_faults,
            s.memory.as_ref().and_then(|m| m.major_faults),
        );
        if let Some(psi) = &s.psi {
            for (r, res) in [&psi.cpu, &psi.memory, &psi.io].into_iter().enumerate() {
                if let Some(res) = res {
                    add_opt(&mut self.psi[r][0], Some(res.some_seconds));
                    add_opt(&mut self.psi[r][1], res.full_seconds);
                }
            }
        }
        if let Some(l) = &s.llc {
            let t = self.llc.get_or_insert((0, 0));
            t.0 = t.0.saturating_add(l.llc_misses);
            t.1 = t.1.saturating_add(l.instructions);
        }
    }
}
