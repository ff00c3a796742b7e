//! Per-VM CPU accounting over the last few collector ticks: what the nowcast reads.
//!
//! One [`Account`] per tick holds the VM's run time, run-queue wait, the wait its own
//! threads caused, and the wait each other VM (or `host`) caused, all in seconds over
//! the tick. [`CpuAccounts`] keeps the last `k` ticks of every VM present and sums
//! them on demand: a window is a plain sum of ticks, so the score of a window is a
//! ratio of sums, never a mean of ratios (a quiet tick weighs what it lasted).
//!
//! A VM missing from a tick's samples is forgotten: its next sample starts a new
//! window, so a VM that comes back is not scored on stale ticks.

use std::collections::{HashMap, VecDeque};

use crate::telemetry::VmSample;

/// One VM's CPU accounting over some ticks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Account {
    /// Seconds covered.
    pub dt: f64,
    /// CPU time used (cgroup usage; 0 when the cgroup has no CPU accounting).
    pub run: f64,
    /// Run-queue wait of the VM's tracked threads.
    pub wait: f64,
    /// Wait after a preemption by one of the VM's own threads.
    pub own: f64,
    /// Wait after a preemption, by the VM (or `host`) that took the CPU; sorted by
    /// name, one entry per name (a full host has a hundred neighbours per VM, looked
    /// up for every pair).
    pub by: Vec<(String, f64)>,
    /// Hardware counters (LLC misses, instructions) were read for the VM.
    pub counters: bool,
}

impl Account {
    /// The tick of one sample.
    pub fn of(s: &VmSample) -> Self {
        let mut own = 0.0;
        let mut by: Vec<(String, f64)> = Vec::with_capacity(s.preempted_by.len());
        for p in &s.preempted_by {
            if p.by == s.vm {
                own += p.seconds;
            } else {
                add_by(&mut by, &p.by, p.seconds);
            }
        }
        Self {
            dt: s.interval_seconds,
            run: s.cpu.as_ref().map_or(0.0, |c| c.usage_seconds),
            wait: s.runqueue.wait_seconds,
            own,
            by,
            counters: s.llc.is_some(),
        }
    }

    fn add(&mut self, other: &Account) {
        self.dt += other.dt;
        self.run += other.run;
        self.wait += other.wait;
        self.own += other.own;
        self.counters = other.counters;
        for (n, secs) in &other.by {
            add_by(&mut self.by, n, *secs);
        }
    }

    /// The wait `aggressor` caused.
    pub fn by(&self, aggressor: &str) -> f64 {
        self.by
            .binary_search_by(|(n, _)| n.as_str().cmp(aggressor))
            .map_or(0.0, |i| self.by[i].1)
    }
}

/// Adds `seconds` to `name`'s entry of the sorted `by`, inserting it in order.
fn add_by(by: &mut Vec<(String, f64)>, name: &str, seconds: f64) {
    match by.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) => by[i].1 += seconds,
        Err(i) => by.insert(i, (name.to_owned(), seconds)),
    }
}

/// The last `k` ticks of every VM present, newest last.
#[derive(Debug, Clone)]
pub struct CpuAccounts {
    k: usize,
    vms: HashMap<String, VecDeque<Account>>,
}

impl CpuAccounts {
    /// Keeps `k` ticks per VM (at least 1).
    pub fn new(k: usize) -> Self {
        Self {
            k: k.max(1),
            vms: HashMap::new(),
        }
    }

    /// Ticks kept per VM.
    pub fn ticks(&self) -> usize {
        self.k
    }

    /// One collector tick: every VM sampled gets its account; the others are
    /// forgotten.
    pub fn push_tick(&mut self, samples: &[VmSample]) {
        self.vms.retain(|vm, _| samples.iter().any(|s| s.vm == *vm));
        for s in samples {
            let ring = self.vms.entry(s.vm.clone()).or_default();
            if ring.len() == self.k {
                ring.pop_front();
            }
            ring.push_back(Account::of(s));
        }
    }

    /// The VMs with at least one tick, in name order.
    pub fn vms(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.vms.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// `vm`'s latest tick alone.
    pub fn last(&self, vm: &str) -> Option<&Account> {
        self.vms.get(vm)?.back()
    }

    /// Whether `vm`'s latest tick had hardware counters (a PMU): without them, cache
    /// and memory-bandwidth contention cannot be seen.
    pub fn counters_observed(&self, vm: &str) -> bool {
        self.last(vm).is_some_and(|a| a.counters)
    }

    /// `vm`'s ticks kept, summed.
    pub fn window(&self, vm: &str) -> Option<Account> {
        let ring = self.vms.get(vm)?;
        let mut sum = Account::default();
        for a in ring {
            sum.add(a);
        }
        Some(sum)
    }
}

/// A sample with just what the accounts read, for tests here and in `predict`.
#[cfg(test)]
pub(crate) mod testing {
    use crate::telemetry::sample::{CpuUsage, Latency, Preemption};
    use crate::telemetry::VmSample;

    pub(crate) fn sample(vm: &str, run: f64, wait: f64, by: &[(&str, f64)]) -> VmSample {
        VmSample {
            schema: 1,
            timestamp_ms: 0,
            interval_seconds: 1.0,
            host: "h".into(),
            vm: vm.into(),
            uuid: None,
            customer: None,
            workload: None,
            priority: Default::default(),
            runqueue: Latency {
                wait_seconds: wait,
                ..Latency::default()
            },
            vcpus: vec![],
            other_threads: Latency::default(),
            preempted_by: by
                .iter()
                .map(|(b, s)| Preemption {
                    by: (*b).into(),
                    count: 1,
                    seconds: *s,
                })
                .collect(),
            block_io: None,
            cpu: Some(CpuUsage {
                usage_seconds: run,
                ..CpuUsage::default()
            }),
            memory: None,
            psi: None,
            llc: None,
            threads: 1,
            cpus: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::sample;
    use super::*;

    #[test]
    fn windows_sum_the_last_k_ticks_and_forget_absent_vms() {
        let mut acc = CpuAccounts::new(2);
        acc.push_tick(&[
            sample("a", 0.5, 0.5, &[("b", 0.4), ("a", 0.1)]),
            sample("b", 1.0, 0.0, &[]),
        ]);
        acc.push_tick(&[sample("a", 1.0, 0.0, &[]), sample("b", 1.0, 0.0, &[])]);
        acc.push_tick(&[
            sample("a", 0.2, 0.8, &[("b", 0.8)]),
            sample("b", 1.0, 0.0, &[]),
        ]);
        let w = acc.window("a").unwrap();
        assert_eq!((w.dt, w.run, w.wait, w.own), (2.0, 1.2, 0.8, 0.0));
        assert_eq!(w.by("b"), 0.8);
        assert_eq!(acc.last("a").unwrap().by("b"), 0.8);
        // b leaves for a tick: its history is gone when it comes back.
        acc.push_tick(&[sample("a", 1.0, 0.0, &[])]);
        assert!(acc.window("b").is_none());
        acc.push_tick(&[sample("a", 1.0, 0.0, &[]), sample("b", 0.5, 0.0, &[])]);
        assert_eq!(acc.window("b").unwrap().dt, 1.0);
        assert_eq!(acc.vms(), ["a", "b"]);
    }
}
