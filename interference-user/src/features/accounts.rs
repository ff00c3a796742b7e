//! Per-VM CPU accounting over the last few collector ticks: what the nowcast reads.
//!
//! One [`Account`] per tick holds the VM's run time, run-queue wait, the wait its own
//! threads caused, and the wait each other VM (or `host`) caused, all in seconds over
//! the tick. [`CpuAccounts`] keeps the last `k` ticks of every VM present and sums
//! them on demand: a window is a plain sum of ticks, so the score of a window is a
//! ratio of sums, never a mean of ratios (a quiet tick weighs what it lasted).
//!
//! Names are numbered once ([`NameId`]): a full host has a hundred VMs, each preempted
//! by a hundred neighbours every tick, and the nowcast looks up every ordered pair, so
//! preemptors are summed and found by number in a dense buffer ([`Window`]), not by
//! comparing and copying strings (the nowcast benchmark, docs/benchmarks.md). Numbers
//! of names no tick mentions any more are given back once they outnumber the live ones.
//!
//! A VM missing from a tick's samples is forgotten: its next sample starts a new
//! window, so a VM that comes back is not scored on stale ticks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::telemetry::VmSample;

/// A VM's (or `host`'s) number in one [`CpuAccounts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NameId(u32);

impl NameId {
    /// The number as an index into per-name tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One VM's CPU accounting over one tick.
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
    /// number, one entry per name.
    pub by: Vec<(NameId, f64)>,
    /// Hardware counters (LLC misses, instructions) were read for the VM.
    pub counters: bool,
}

impl Account {
    /// The wait `aggressor` caused.
    pub fn by(&self, aggressor: NameId) -> f64 {
        self.by
            .binary_search_by_key(&aggressor, |(n, _)| *n)
            .map_or(0.0, |i| self.by[i].1)
    }

    /// Runnable time that was not spent behind the VM's own threads.
    pub fn runnable(&self) -> f64 {
        self.run + self.wait - self.own
    }
}

/// A VM's ticks summed, with every preemptor's wait by number: a buffer reused from
/// victim to victim ([`CpuAccounts::window_into`]).
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub dt: f64,
    pub run: f64,
    pub wait: f64,
    pub own: f64,
    /// Indexed by [`NameId`]; zero where nobody took anything.
    by: Vec<f64>,
    /// Indexed by [`NameId`]: whether the name is in `preemptors`.
    listed: Vec<bool>,
    /// The preemptors with an entry in `by`, each once.
    preemptors: Vec<NameId>,
}

impl Window {
    /// The wait `aggressor` caused over the window.
    pub fn by(&self, aggressor: NameId) -> f64 {
        self.by.get(aggressor.index()).copied().unwrap_or(0.0)
    }

    /// Everyone who took something from the VM in the window (with `host`), each once.
    pub fn preemptors(&self) -> &[NameId] {
        &self.preemptors
    }

    /// Runnable time that was not spent behind the VM's own threads.
    pub fn runnable(&self) -> f64 {
        self.run + self.wait - self.own
    }

    fn clear(&mut self, names: usize) {
        for p in self.preemptors.drain(..) {
            self.by[p.index()] = 0.0;
            self.listed[p.index()] = false;
        }
        self.by.resize(names, 0.0);
        self.listed.resize(names, false);
        (self.dt, self.run, self.wait, self.own) = (0.0, 0.0, 0.0, 0.0);
    }

    fn add(&mut self, a: &Account) {
        self.dt += a.dt;
        self.run += a.run;
        self.wait += a.wait;
        self.own += a.own;
        for &(n, secs) in &a.by {
            self.by[n.index()] += secs;
            if !self.listed[n.index()] {
                self.listed[n.index()] = true;
                self.preemptors.push(n);
            }
        }
    }
}

/// Names and their numbers.
#[derive(Debug, Clone, Default)]
struct Names {
    ids: HashMap<Arc<str>, NameId>,
    names: Vec<Arc<str>>,
}

impl Names {
    fn intern(&mut self, name: &str) -> NameId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = NameId(u32::try_from(self.names.len()).unwrap_or(u32::MAX));
        let name: Arc<str> = Arc::from(name);
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }
}

/// The last `k` ticks of every VM present, newest last.
#[derive(Debug, Clone)]
pub struct CpuAccounts {
    k: usize,
    names: Names,
    vms: HashMap<NameId, VecDeque<Account>>,
}

impl CpuAccounts {
    /// Keeps `k` ticks per VM (at least 1).
    pub fn new(k: usize) -> Self {
        Self {
            k: k.max(1),
            names: Names::default(),
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
        let mut present = Vec::with_capacity(samples.len());
        for s in samples {
            let vm = self.names.intern(&s.vm);
            let account = self.account_of(vm, s);
            present.push(vm);
            let ring = self.vms.entry(vm).or_default();
            if ring.len() == self.k {
                ring.pop_front();
            }
            ring.push_back(account);
        }
        present.sort_unstable();
        self.vms.retain(|vm, _| present.binary_search(vm).is_ok());
        self.forget_unused_names();
    }

    /// The tick of one sample of the VM numbered `vm`.
    fn account_of(&mut self, vm: NameId, s: &VmSample) -> Account {
        let mut own = 0.0;
        let mut by: Vec<(NameId, f64)> = Vec::with_capacity(s.preempted_by.len());
        for p in &s.preempted_by {
            let who = self.names.intern(&p.by);
            if who == vm {
                own += p.seconds;
            } else {
                by.push((who, p.seconds));
            }
        }
        by.sort_unstable_by_key(|(n, _)| *n);
        by.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 += later.1;
            }
            same
        });
        Account {
            dt: s.interval_seconds,
            run: s.cpu.as_ref().map_or(0.0, |c| c.usage_seconds),
            wait: s.runqueue.wait_seconds,
            own,
            by,
            counters: s.llc.is_some(),
        }
    }

    /// Renumbers the names still in some tick kept once the others outnumber them, so
    /// a host where VMs come and go does not grow its table (or the windows' buffers)
    /// without end.
    fn forget_unused_names(&mut self) {
        if self.names.names.len() <= 2 * (self.vms.len() + 32) {
            return;
        }
        let mut used = vec![false; self.names.names.len()];
        for (vm, ring) in &self.vms {
            used[vm.index()] = true;
            for a in ring {
                for (n, _) in &a.by {
                    used[n.index()] = true;
                }
            }
        }
        if 2 * used.iter().filter(|u| **u).count() > self.names.names.len() {
            return;
        }
        let mut fresh = Names::default();
        let renumber: Vec<Option<NameId>> = self
            .names
            .names
            .iter()
            .zip(&used)
            .map(|(name, used)| used.then(|| fresh.intern(name)))
            .collect();
        let new = |id: NameId| renumber[id.index()].unwrap_or(id);
        self.vms = std::mem::take(&mut self.vms)
            .into_iter()
            .map(|(vm, mut ring)| {
                for a in &mut ring {
                    for entry in &mut a.by {
                        entry.0 = new(entry.0);
                    }
                    a.by.sort_unstable_by_key(|(n, _)| *n);
                }
                (new(vm), ring)
            })
            .collect();
        self.names = fresh;
    }

    /// The VMs with at least one tick, in name order.
    pub fn vms(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.vms.keys().map(|id| self.name(*id)).collect();
        v.sort_unstable();
        v
    }

    /// The VMs with at least one tick, by number, in name order.
    pub fn vm_ids(&self) -> Vec<NameId> {
        let mut v: Vec<NameId> = self.vms.keys().copied().collect();
        v.sort_unstable_by(|a, b| self.name(*a).cmp(self.name(*b)));
        v
    }

    /// The number of `name`, if a tick kept mentions it.
    pub fn id(&self, name: &str) -> Option<NameId> {
        self.names.ids.get(name).copied()
    }

    /// The name numbered `id` (empty for a number this table never gave).
    pub fn name(&self, id: NameId) -> &str {
        self.names.names.get(id.index()).map_or("", |n| n)
    }

    /// The name numbered `id`, shared.
    pub fn shared_name(&self, id: NameId) -> Arc<str> {
        self.names
            .names
            .get(id.index())
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }

    /// `vm`'s latest tick alone.
    pub fn last(&self, vm: NameId) -> Option<&Account> {
        self.vms.get(&vm)?.back()
    }

    /// Whether `vm`'s latest tick had hardware counters (a PMU): without them, cache
    /// and memory-bandwidth contention cannot be seen.
    pub fn counters_observed(&self, vm: NameId) -> bool {
        self.last(vm).is_some_and(|a| a.counters)
    }

    /// `vm`'s ticks kept, summed into `window` (false, and `window` emptied, for a
    /// VM with none).
    pub fn window_into(&self, vm: NameId, window: &mut Window) -> bool {
        window.clear(self.names.names.len());
        let Some(ring) = self.vms.get(&vm) else {
            return false;
        };
        for a in ring {
            window.add(a);
        }
        true
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

    fn window(acc: &CpuAccounts, vm: &str) -> Option<Window> {
        let mut w = Window::default();
        acc.window_into(acc.id(vm)?, &mut w).then_some(w)
    }

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
        let b = acc.id("b").unwrap();
        let w = window(&acc, "a").unwrap();
        assert_eq!((w.dt, w.run, w.wait, w.own), (2.0, 1.2, 0.8, 0.0));
        assert_eq!(w.by(b), 0.8);
        assert_eq!(w.preemptors(), [b]);
        assert_eq!(acc.last(acc.id("a").unwrap()).unwrap().by(b), 0.8);
        // b leaves for a tick: its history is gone when it comes back.
        acc.push_tick(&[sample("a", 1.0, 0.0, &[])]);
        assert!(window(&acc, "b").is_none());
        acc.push_tick(&[sample("a", 1.0, 0.0, &[]), sample("b", 0.5, 0.0, &[])]);
        assert_eq!(window(&acc, "b").unwrap().dt, 1.0);
        assert_eq!(acc.vms(), ["a", "b"]);
    }

    #[test]
    fn a_preemptor_named_twice_in_a_tick_is_summed_and_a_reused_window_starts_empty() {
        let mut acc = CpuAccounts::new(3);
        acc.push_tick(&[
            sample("v", 0.5, 0.5, &[("b", 0.1), ("host", 0.2), ("b", 0.3)]),
            sample("w", 0.5, 0.5, &[("host", 0.05)]),
        ]);
        let (b, host) = (acc.id("b").unwrap(), acc.id("host").unwrap());
        let v = acc.last(acc.id("v").unwrap()).unwrap();
        assert!((v.by(b) - 0.4).abs() < 1e-12);
        assert_eq!(v.by.len(), 2);
        let mut w = Window::default();
        assert!(acc.window_into(acc.id("v").unwrap(), &mut w));
        assert!((w.by(host) - 0.2).abs() < 1e-12);
        assert!(acc.window_into(acc.id("w").unwrap(), &mut w));
        assert_eq!(w.by(b), 0.0, "v's window leaks into w's");
        assert_eq!(w.preemptors(), [host]);
        assert_eq!(w.dt, 1.0);
    }

    #[test]
    fn vms_that_come_and_go_do_not_grow_the_name_table() {
        let mut acc = CpuAccounts::new(2);
        for i in 0..2000 {
            let (a, b) = (format!("vm-{i}"), format!("vm-{}", i + 1));
            acc.push_tick(&[
                sample("stays", 0.5, 0.5, &[(a.as_str(), 0.2), ("host", 0.1)]),
                sample(&a, 0.5, 0.5, &[("stays", 0.3)]),
                sample(&b, 0.5, 0.5, &[]),
            ]);
            assert!(acc.names.names.len() <= 2 * (3 + 32) + 3, "tick {i}");
        }
        // Renumbering kept every tick's numbers consistent with the names.
        let stays = acc.id("stays").unwrap();
        let mut w = Window::default();
        assert!(acc.window_into(stays, &mut w));
        let mut seen: Vec<&str> = w.preemptors().iter().map(|p| acc.name(*p)).collect();
        seen.sort_unstable();
        assert_eq!(seen, ["host", "vm-1998", "vm-1999"]);
        assert!((w.by(acc.id("host").unwrap()) - 0.2).abs() < 1e-12);
        assert_eq!(acc.vms(), ["stays", "vm-1999", "vm-2000"]);
        let last = acc.last(acc.id("vm-1999").unwrap()).unwrap();
        assert_eq!(last.by(stays), 0.3);
    }
}
