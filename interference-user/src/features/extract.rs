//! What the features need of one [`VmSample`]: a few sums, the preemptions by
//! aggressor, the last-sample gauges. Windows keep this instead of whole samples (which
//! carry per-vCPU 32-bucket histograms), and aggressors are kept as [`VmId`]s so a
//! window holds no strings.

use std::sync::Arc;

use crate::telemetry::VmSample;

use super::cpumask::CpuMask;
use super::names::WorkloadClass;

/// The identity of one VM in the windows, for as long as it stays in them: a VM that
/// misses a tick is dropped and gets a new id when it comes back, so preemptions
/// recorded against its old incarnation never count toward the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct VmId(pub u64);

impl VmId {
    /// The aggressor `"host"`: anything that is not a registered VM.
    pub const HOST: VmId = VmId(0);
}

/// Preemptions of a VM's threads in favour of one aggressor.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Preempted {
    pub by: VmId,
    pub count: f64,
    pub seconds: f64,
}

/// One sample of one VM, reduced to the fields of the "Aggregating k samples" table of
/// docs/dataset.md. Null counts as 0, except `cpus` (None: unknown). Sums are `f64`
/// because the trainer's are.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SampleExtract {
    pub timestamp_ms: u64,
    pub interval_s: f64,
    pub cpu_s: f64,
    pub throttled_s: f64,
    pub waits: f64,
    pub wait_s: f64,
    pub max_wait_s: f64,
    pub preempts: f64,
    pub preempted_s: f64,
    /// `preempted_by` entries whose aggressor is the host or a VM of the same tick, in
    /// the sample's order (others, such as `"departed"`, name no pair).
    pub by: Vec<Preempted>,
    pub psi_cpu_s: f64,
    pub psi_memory_s: f64,
    pub psi_io_s: f64,
    /// read + write + other.
    pub io_ops: f64,
    pub io_bytes: f64,
    pub io_lat_s: f64,
    pub major_faults: f64,
    pub memory_bytes: f64,
    pub cpus: Option<Arc<CpuMask>>,
    pub class: WorkloadClass,
}

impl SampleExtract {
    /// The extract of `s`; `resolve` names the aggressors (`"host"` is resolved here).
    pub fn from_sample(s: &VmSample, resolve: impl FnMut(&str) -> Option<VmId>) -> Self {
        let mut e = Self::default();
        e.fill(s, None, resolve);
        e
    }

    /// Overwrites `self` with the extract of `s`, reusing its allocations. `prev_cpus`
    /// is the VM's previous set, shared when unchanged (it rarely changes).
    pub fn fill(
        &mut self,
        s: &VmSample,
        prev_cpus: Option<&Arc<CpuMask>>,
        mut resolve: impl FnMut(&str) -> Option<VmId>,
    ) {
        let rq = &s.runqueue;
        let cpu = s.cpu.as_ref();
        let psi = s.psi.as_ref();
        let some = |r: Option<&crate::telemetry::PsiResource>| r.map_or(0.0, |r| r.some_seconds);
        self.timestamp_ms = s.timestamp_ms;
        self.interval_s = s.interval_seconds;
        self.cpu_s = cpu.map_or(0.0, |c| c.usage_seconds);
        self.throttled_s = cpu.and_then(|c| c.throttled_seconds).unwrap_or(0.0);
        self.waits = rq.waits as f64;
        self.wait_s = rq.wait_seconds;
        self.max_wait_s = rq.max_seconds;
        self.preempts = rq.preemptions as f64;
        self.preempted_s = rq.preempted_seconds;
        self.by.clear();
        for p in &s.preempted_by {
            let by = if p.by == "host" {
                Some(VmId::HOST)
            } else {
                resolve(&p.by)
            };
            if let Some(by) = by {
                self.by.push(Preempted {
                    by,
                    count: p.count as f64,
                    seconds: p.seconds,
                });
            }
        }
        self.psi_cpu_s = some(psi.and_then(|p| p.cpu.as_ref()));
        self.psi_memory_s = some(psi.and_then(|p| p.memory.as_ref()));
        self.psi_io_s = some(psi.and_then(|p| p.io.as_ref()));
        // Summed left to right in f64, as the trainer does.
        (self.io_ops, self.io_bytes, self.io_lat_s) = match &s.block_io {
            Some(b) => (
                b.read_ops as f64 + b.write_ops as f64 + b.other_ops as f64,
                b.read_bytes as f64 + b.write_bytes as f64 + b.other_bytes as f64,
                b.latency_seconds,
            ),
            None => (0.0, 0.0, 0.0),
        };
        let memory = s.memory.as_ref();
        self.major_faults = memory
            .and_then(|m| m.major_faults)
            .map_or(0.0, |f| f as f64);
        self.memory_bytes = memory.map_or(0.0, |m| m.usage_bytes as f64);
        self.cpus = match (&s.cpus, prev_cpus) {
            (None, _) => None,
            (Some(ids), Some(prev)) if prev.is_exactly(ids) => Some(Arc::clone(prev)),
            (Some(ids), _) => CpuMask::from_ids(ids).map(Arc::new),
        };
        self.class = WorkloadClass::of_label(s.workload.as_deref());
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Samples for the feature tests: every field that a feature reads is set.

    use crate::inventory::Priority;
    use crate::telemetry::{
        BlockIo, CpuUsage, Latency, Memory, Preemption, Psi, PsiResource, VmSample,
    };

    pub fn psi(some: f64) -> Option<PsiResource> {
        Some(PsiResource {
            some_seconds: some,
            full_seconds: None,
            some_avg10: 0.0,
            full_avg10: None,
        })
    }

    /// A sample of `vm` at `ts` (ms) with small distinct values, preempted by `by`.
    pub fn sample(vm: &str, ts: u64, by: &[(&str, u64, f64)]) -> VmSample {
        VmSample {
            schema: 1,
            timestamp_ms: ts,
            interval_seconds: 1.0,
            host: "h".into(),
            vm: vm.into(),
            uuid: None,
            customer: None,
            workload: Some("web".into()),
            priority: Priority::Normal,
            runqueue: Latency {
                waits: 100,
                wait_seconds: 0.01,
                max_seconds: 0.002,
                preemptions: 10,
                preempted_seconds: 0.005,
                histogram: vec![0; 32],
            },
            vcpus: vec![],
            other_threads: Latency::default(),
            preempted_by: by
                .iter()
                .map(|(b, count, seconds)| Preemption {
                    by: (*b).into(),
                    count: *count,
                    seconds: *seconds,
                })
                .collect(),
            block_io: Some(BlockIo {
                read_ops: 5,
                write_ops: 3,
                other_ops: 2,
                read_bytes: 4096,
                write_bytes: 8192,
                other_bytes: 0,
                latency_seconds: 0.001,
                latency_histogram: vec![0; 32],
            }),
            cpu: Some(CpuUsage {
                usage_seconds: 0.5,
                throttled_seconds: Some(0.1),
                ..Default::default()
            }),
            memory: Some(Memory {
                usage_bytes: 1 << 30,
                major_faults: Some(4),
                ..Default::default()
            }),
            psi: Some(Psi {
                cpu: psi(0.2),
                memory: psi(0.03),
                io: psi(0.04),
            }),
            llc: None,
            threads: 4,
            cpus: Some(vec![0, 1]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::sample;
    use super::*;

    fn ids(name: &str) -> Option<VmId> {
        match name {
            "b" => Some(VmId(2)),
            "c" => Some(VmId(3)),
            _ => None,
        }
    }

    #[test]
    fn extracts_sums_and_gauges() {
        let s = sample(
            "a",
            1000,
            &[("b", 3, 0.25), ("host", 1, 0.5), ("departed", 9, 9.0)],
        );
        let e = SampleExtract::from_sample(&s, ids);
        assert_eq!(e.timestamp_ms, 1000);
        assert_eq!((e.interval_s, e.cpu_s, e.throttled_s), (1.0, 0.5, 0.1));
        assert_eq!((e.waits, e.wait_s, e.max_wait_s), (100.0, 0.01, 0.002));
        assert_eq!((e.preempts, e.preempted_s), (10.0, 0.005));
        assert_eq!(
            e.by,
            vec![
                Preempted {
                    by: VmId(2),
                    count: 3.0,
                    seconds: 0.25
                },
                Preempted {
                    by: VmId::HOST,
                    count: 1.0,
                    seconds: 0.5
                },
            ]
        );
        assert_eq!((e.psi_cpu_s, e.psi_memory_s, e.psi_io_s), (0.2, 0.03, 0.04));
        assert_eq!((e.io_ops, e.io_bytes, e.io_lat_s), (10.0, 12288.0, 0.001));
        assert_eq!((e.major_faults, e.memory_bytes), (4.0, (1u64 << 30) as f64));
        assert_eq!(e.cpus.as_deref(), CpuMask::from_ids(&[0, 1]).as_ref());
        assert_eq!(e.class, WorkloadClass::Cpu);
    }

    #[test]
    fn nulls_count_as_zero_and_unknown_cpus_stay_unknown() {
        let mut s = sample("a", 1000, &[]);
        s.cpu = None;
        s.memory = None;
        s.psi = None;
        s.block_io = None;
        s.cpus = None;
        s.workload = None;
        let e = SampleExtract::from_sample(&s, ids);
        assert_eq!((e.cpu_s, e.throttled_s), (0.0, 0.0));
        assert_eq!((e.psi_cpu_s, e.psi_memory_s, e.psi_io_s), (0.0, 0.0, 0.0));
        assert_eq!((e.io_ops, e.io_bytes, e.io_lat_s), (0.0, 0.0, 0.0));
        assert_eq!((e.major_faults, e.memory_bytes), (0.0, 0.0));
        assert_eq!(e.cpus, None);
        assert_eq!(e.class, WorkloadClass::Other);

        let mut s = sample("a", 1000, &[]);
        if let Some(c) = s.cpu.as_mut() {
            c.throttled_seconds = None;
        }
        if let Some(m) = s.memory.as_mut() {
            m.major_faults = None;
        }
        if let Some(p) = s.psi.as_mut() {
            p.memory = None;
        }
        let e = SampleExtract::from_sample(&s, ids);
        assert_eq!(
            (e.cpu_s, e.throttled_s, e.major_faults, e.psi_memory_s),
            (0.5, 0.0, 0.0, 0.0)
        );
        assert_eq!(e.psi_cpu_s, 0.2);
    }

    #[test]
    fn fill_reuses_an_unchanged_cpu_set() {
        let s = sample("a", 1000, &[]);
        let first = SampleExtract::from_sample(&s, ids);
        let prev = first.cpus.clone().expect("cpus known");
        let mut e = SampleExtract::default();
        e.fill(&s, Some(&prev), ids);
        assert!(Arc::ptr_eq(e.cpus.as_ref().expect("cpus known"), &prev));
        let mut moved = s.clone();
        moved.cpus = Some(vec![2]);
        e.fill(&moved, Some(&prev), ids);
        assert_eq!(e.cpus.as_deref(), CpuMask::from_ids(&[2]).as_ref());
    }
}
