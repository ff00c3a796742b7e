//! Turns the kernel's cumulative counters into per-tick [`VmSample`]s.
//!
//! Each tick the loop calls [`Collector::sample`] (deltas since the previous call, for the
//! VMs still present) and then [`Collector::track`] (register what appeared, forget what
//! vanished). A VM that exits mid-run therefore produces no sample at the next tick and
//! never disturbs the others. Deltas are taken against baselines kept here, so the
//! kernel counters are never reset while programs run.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use interference_common::{
    PreemptRow, ThreadStats, VmIoStats, HIST_BUCKETS, IO_OP_READ, IO_OP_WRITE, MAX_VMS,
};
use thiserror::Error;

use super::cgroup::{cgroup_delta, read_counters, CgroupCounters};
use super::kernel::{KernelMaps, MapError};
use super::perf::{CounterSet, PerfCounters};
use super::registry::{Registry, RegistryError, SyncChanges};
use super::sample::*;
use crate::inventory::{Hierarchy, Vm};

#[derive(Debug, Error)]
pub enum CollectError {
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Which collectors produced data this tick (exported as `interference_collector_up`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorStatus {
    pub sched: bool,
    pub block_io: bool,
    pub llc: bool,
    pub cgroup: bool,
}

impl CollectorStatus {
    pub fn as_pairs(&self) -> [(&'static str, bool); 4] {
        [
            ("sched", self.sched),
            ("block_io", self.block_io),
            ("llc", self.llc),
            ("cgroup", self.cgroup),
        ]
    }
}

pub struct CollectorOptions {
    pub host: String,
    pub counters: CounterSet,
    /// Whether the scheduler and block programs are attached.
    pub sched: bool,
    pub block_io: bool,
}

pub struct Collector<K: KernelMaps> {
    kernel: K,
    registry: Registry,
    opts: CollectorOptions,
    prev_threads: HashMap<u32, ThreadStats>,
    prev_rows: HashMap<u32, Box<PreemptRow>>,
    prev_io: HashMap<u32, VmIoStats>,
    prev_cgroups: HashMap<String, CgroupCounters>,
    perf: PerfCounters,
    epoch: u32,
    last: Instant,
    cgroup_ok: bool,
}

impl<K: KernelMaps> Collector<K> {
    pub fn new(mut kernel: K, opts: CollectorOptions) -> Result<Self, CollectError> {
        kernel.set_epoch(1)?;
        Ok(Self {
            kernel,
            registry: Registry::new(),
            perf: PerfCounters::new(opts.counters),
            opts,
            prev_threads: HashMap::new(),
            prev_rows: HashMap::new(),
            prev_io: HashMap::new(),
            prev_cgroups: HashMap::new(),
            epoch: 1,
            last: Instant::now(),
            cgroup_ok: true,
        })
    }

    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn status(&self) -> CollectorStatus {
        CollectorStatus {
            sched: self.opts.sched,
            block_io: self.opts.block_io,
            llc: self.perf.unavailable().is_none(),
            cgroup: self.cgroup_ok,
        }
    }

    /// Why the LLC collector is down, if it is.
    pub fn llc_unavailable(&self) -> Option<&str> {
        self.perf.unavailable()
    }

    /// Cumulative kernel counters of one tracked thread since it was registered.
    pub fn thread_totals(&self, tid: u32) -> Option<ThreadStats> {
        let slot = self
            .registry
            .vms()
            .values()
            .find_map(|v| v.threads.get(&tid))?
            .slot;
        self.kernel.thread_stats(slot).ok()
    }

    /// Registers new VMs and threads and forgets vanished ones; sets their baselines.
    pub fn track(&mut self, vms: &[Vm]) -> Result<SyncChanges, CollectError> {
        let changes = self.registry.sync(vms, &v2_cgroup_ids, &mut self.kernel)?;
        for d in &changes.dropped {
            tracing::warn!("not tracked: {d}");
        }
        for slot in &changes.removed_slots {
            self.prev_threads.remove(slot);
        }
        for slot in &changes.added_slots {
            self.prev_threads.insert(*slot, ThreadStats::ZERO);
        }
        for (name, index) in &changes.removed_vms {
            self.prev_rows.remove(index);
            self.prev_io.remove(index);
            self.prev_cgroups.remove(name);
        }
        for (_, index) in &changes.added_vms {
            self.prev_rows
                .insert(*index, self.kernel.preempt_row(*index)?);
            self.prev_io.insert(*index, self.kernel.vm_io(*index)?);
        }
        for vm in vms {
            if !self.prev_cgroups.contains_key(&vm.name) && !vm.cgroups.is_empty() {
                if let Ok(c) = read_counters(&vm.cgroups) {
                    self.prev_cgroups.insert(vm.name.clone(), c);
                }
            }
        }
        let tids: BTreeSet<u32> = self
            .registry
            .vms()
            .values()
            .flat_map(|v| v.threads.keys().copied())
            .collect();
        self.perf.sync(&tids);
        if self.prev_threads.is_empty() && changes.added_vms.is_empty() {
            self.last = Instant::now();
        }
        Ok(changes)
    }

    /// One sample per VM of `vms` that was tracked at the previous tick.
    pub fn sample(&mut self, vms: &[Vm]) -> Result<Vec<VmSample>, CollectError> {
        let now = Instant::now();
        let interval = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        let timestamp_ms = crate::clock::now_ms();
        let names: HashMap<u32, String> = self
            .registry
            .vms()
            .iter()
            .map(|(n, v)| (v.index, n.clone()))
            .collect();
        let mut samples = Vec::new();
        let mut cgroup_ok = true;
        for vm in vms {
            let Some(tracked) = self.registry.vm(&vm.name) else {
                continue;
            };
            let mut runqueue = Latency::with_buckets();
            let mut other = Latency::with_buckets();
            let mut vcpus = Vec::new();
            for (tid, t) in &tracked.threads {
                let cur = self.kernel.thread_stats(t.slot)?;
                let prev = self
                    .prev_threads
                    .insert(t.slot, cur)
                    .unwrap_or(ThreadStats::ZERO);
                let lat = thread_delta(&prev, &cur, self.epoch);
                runqueue.add(&lat);
                match t.vcpu {
                    Some(vcpu) => vcpus.push(VcpuSample {
                        vcpu,
                        tid: *tid,
                        latency: lat,
                    }),
                    None => other.add(&lat),
                }
            }
            vcpus.sort_by_key(|v| (v.vcpu, v.tid));

            let row = self.kernel.preempt_row(tracked.index)?;
            let prev_row = self
                .prev_rows
                .insert(tracked.index, row.clone())
                .unwrap_or_else(|| row.clone());
            let preempted_by = preemptions(&prev_row, &row, &names);

            let io = self.kernel.vm_io(tracked.index)?;
            let prev_io = self.prev_io.insert(tracked.index, io).unwrap_or(io);
            let block_io = self.opts.block_io.then(|| io_delta(&prev_io, &io));

            let ((cpu, memory, psi), cpus) = match read_counters(&vm.cgroups) {
                Ok(cur) if !vm.cgroups.is_empty() => {
                    let d = match self.prev_cgroups.get(&vm.name) {
                        Some(prev) => cgroup_delta(prev, &cur, interval),
                        None => (None, None, None),
                    };
                    let cpus = cur.cpus.clone();
                    self.prev_cgroups.insert(vm.name.clone(), cur);
                    (d, cpus)
                }
                Ok(_) => ((None, None, None), None),
                Err(e) => {
                    tracing::debug!("cgroups of {}: {e}", vm.name);
                    cgroup_ok = false;
                    ((None, None, None), None)
                }
            };
            let llc = self.perf.read_delta(tracked.threads.keys().copied()).map(
                |[misses, instructions]| Llc {
                    llc_misses: misses,
                    instructions,
                },
            );
            samples.push(VmSample {
                schema: SAMPLE_SCHEMA,
                timestamp_ms,
                interval_seconds: interval,
                host: self.opts.host.clone(),
                vm: vm.name.clone(),
                uuid: vm.uuid.clone(),
                customer: vm.customer.clone(),
                workload: vm.workload.clone(),
                priority: vm.priority,
                runqueue,
                vcpus,
                other_threads: other,
                preempted_by,
                block_io,
                cpu,
                memory,
                psi,
                llc,
                threads: tracked.threads.len() as u32,
                cpus,
            });
        }
        self.cgroup_ok = cgroup_ok;
        self.epoch = self.epoch.wrapping_add(1).max(1);
        self.kernel.set_epoch(self.epoch)?;
        Ok(samples)
    }
}

/// cgroup v2 ids of a VM's v2 cgroups and their descendants: on 64-bit kernels a
/// cgroup's id is the inode number of its directory.
fn v2_cgroup_ids(vm: &Vm) -> BTreeSet<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut ids = BTreeSet::new();
    let mut stack: Vec<std::path::PathBuf> = vm
        .cgroups
        .iter()
        .filter(|c| c.hierarchy == Hierarchy::V2)
        .map(|c| c.path.clone())
        .collect();
    while let Some(dir) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        ids.insert(meta.ino());
        if ids.len() > 256 {
            break;
        }
        if let Ok(rd) = std::fs::read_dir(&dir) {
            stack.extend(
                rd.flatten()
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .map(|e| e.path()),
            );
        }
    }
    ids
}

impl Latency {
    fn with_buckets() -> Self {
        Latency {
            histogram: vec![0; HIST_BUCKETS],
            ..Default::default()
        }
    }

    fn add(&mut self, o: &Latency) {
        self.waits += o.waits;
        self.wait_seconds += o.wait_seconds;
        self.max_seconds = self.max_seconds.max(o.max_seconds);
        self.preemptions += o.preemptions;
        self.preempted_seconds += o.preempted_seconds;
        for (a, b) in self.histogram.iter_mut().zip(&o.histogram) {
            *a += b;
        }
    }
}

const NS: f64 = 1e9;

fn thread_delta(prev: &ThreadStats, cur: &ThreadStats, epoch: u32) -> Latency {
    let waits = cur.count.saturating_sub(prev.count);
    Latency {
        waits,
        wait_seconds: cur.sum_ns.saturating_sub(prev.sum_ns) as f64 / NS,
        max_seconds: if cur.max_epoch == epoch && waits > 0 {
            cur.max_ns as f64 / NS
        } else {
            0.0
        },
        preemptions: cur.preempted.saturating_sub(prev.preempted),
        preempted_seconds: cur.preempted_ns.saturating_sub(prev.preempted_ns) as f64 / NS,
        histogram: cur
            .hist
            .iter()
            .zip(&prev.hist)
            .map(|(c, p)| c.saturating_sub(*p))
            .collect(),
    }
}

fn preemptions(
    prev: &PreemptRow,
    cur: &PreemptRow,
    names: &HashMap<u32, String>,
) -> Vec<Preemption> {
    let mut out = Vec::new();
    for index in 0..MAX_VMS as usize {
        let count = cur[index].count.saturating_sub(prev[index].count);
        let ns = cur[index].ns.saturating_sub(prev[index].ns);
        if count == 0 && ns == 0 {
            continue;
        }
        let by = if index == 0 {
            "host".to_string()
        } else {
            match names.get(&(index as u32)) {
                Some(n) => n.clone(),
                // A VM that left during the tick: still not the host.
                None => "departed".to_string(),
            }
        };
        out.push(Preemption {
            by,
            count,
            seconds: ns as f64 / NS,
        });
    }
    out.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    out
}

fn io_delta(prev: &VmIoStats, cur: &VmIoStats) -> BlockIo {
    let d = |c: u64, p: u64| c.saturating_sub(p);
    let ops: Vec<u64> = cur
        .ops
        .iter()
        .zip(&prev.ops)
        .map(|(c, p)| d(*c, *p))
        .collect();
    let bytes: Vec<u64> = cur
        .bytes
        .iter()
        .zip(&prev.bytes)
        .map(|(c, p)| d(*c, *p))
        .collect();
    let sum_other = |v: &[u64]| -> u64 {
        v.iter()
            .enumerate()
            .filter(|(i, _)| *i != IO_OP_READ && *i != IO_OP_WRITE)
            .map(|(_, x)| x)
            .sum()
    };
    BlockIo {
        read_ops: ops[IO_OP_READ],
        write_ops: ops[IO_OP_WRITE],
        other_ops: sum_other(&ops),
        read_bytes: bytes[IO_OP_READ],
        write_bytes: bytes[IO_OP_WRITE],
        other_bytes: sum_other(&bytes),
        latency_seconds: d(cur.latency_sum_ns, prev.latency_sum_ns) as f64 / NS,
        latency_histogram: cur
            .latency_hist
            .iter()
            .zip(&prev.latency_hist)
            .map(|(c, p)| d(*c, *p))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::registry::tests::{vm, FakeKernel};
    use interference_common::{entry_slot, PreemptCell};

    fn collector() -> Collector<FakeKernel> {
        Collector::new(
            FakeKernel::default(),
            CollectorOptions {
                host: "h".into(),
                counters: CounterSet::Software,
                sched: true,
                block_io: true,
            },
        )
        .unwrap()
    }

    #[test]
    fn deltas_per_vcpu_and_attribution_by_name() {
        let mut c = collector();
        let vms = [vm("victim", &[10, 11]), vm("noisy", &[20])];
        c.track(&vms).unwrap();
        let victim = c.registry().vm("victim").unwrap().index;
        let noisy = c.registry().vm("noisy").unwrap().index;
        let slot10 = entry_slot(c.kernel.entry(10));
        let mut st = ThreadStats::ZERO;
        st.count = 4;
        st.sum_ns = 2_000_000_000;
        st.hist[20] = 4;
        st.max_ns = 900_000_000;
        st.max_epoch = 1;
        c.kernel.slots.insert(slot10, st);
        let mut row = Box::new([PreemptCell::default(); MAX_VMS as usize]);
        row[noisy as usize] = PreemptCell {
            count: 3,
            ns: 1_500_000_000,
        };
        row[0] = PreemptCell { count: 1, ns: 1 };
        c.kernel.rows.insert(victim, row);
        let s = c.sample(&vms).unwrap();
        assert_eq!(s.len(), 2);
        let v = s.iter().find(|s| s.vm == "victim").unwrap();
        assert_eq!(v.runqueue.waits, 4);
        assert!((v.runqueue.wait_seconds - 2.0).abs() < 1e-9);
        assert!((v.runqueue.max_seconds - 0.9).abs() < 1e-9);
        assert_eq!(v.vcpus.len(), 2);
        assert_eq!(v.vcpus[0].latency.histogram[20], 4);
        assert_eq!(v.preempted_by[0].by, "noisy");
        assert_eq!(v.preempted_by[0].count, 3);
        assert_eq!(v.preempted_by[1].by, "host");

        // Second tick: only what changed since.
        c.kernel.slots.get_mut(&slot10).unwrap().count = 5;
        let s = c.sample(&vms).unwrap();
        let v = s.iter().find(|s| s.vm == "victim").unwrap();
        assert_eq!(v.runqueue.waits, 1);
        assert_eq!(
            v.runqueue.max_seconds, 0.0,
            "max of an older epoch is not reported"
        );
        assert!(v.preempted_by.is_empty());
    }

    #[test]
    fn a_vanished_vm_has_no_next_sample_and_others_continue() {
        let mut c = collector();
        let both = [vm("a", &[10]), vm("b", &[20])];
        c.track(&both).unwrap();
        let only_a = [vm("a", &[10])];
        let s = c.sample(&only_a).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].vm, "a");
        c.track(&only_a).unwrap();
        assert!(c.registry().vm("b").is_none());
        assert_eq!(c.sample(&only_a).unwrap().len(), 1);
    }
}
