//! Every VM's rollup, fed with ticks and closed step by step (docs/forecast.md,
//! section 3), and kept on disk by [`super::file`] so that a restart does not forget.
//!
//! Ticks accumulate per VM into the step they measured; a step's value is the mean of
//! its ticks' demand (a partial step, e.g. after a restart mid-step, the mean of the
//! ticks it has). [`RollupStore::close_step`] ends a step for every VM at once: a VM
//! with ticks in it gets their mean, a VM without (paused, or the agent was down) a copy
//! of its previous value. The store never reads a clock: the caller says which step a
//! tick belongs to and which step has ended ([`crate::engine`] does it from a
//! [`Clock`]), so a trace replay runs the very same code on the trace's own clock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::codec::RollupProblem;
use super::codec::StoreGeometry;
use super::file;
use super::ring::VmRollup;
use crate::clock::Clock;
use crate::contract::HISTORY_STEPS;

/// What became of one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    /// Counted in its step.
    Accepted,
    /// Its step has already been closed for this VM: dropped.
    Late,
    /// Negative, NaN or infinite demand: dropped.
    Invalid,
}

/// What [`RollupStore::close_step`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClosedStep {
    pub step: i64,
    /// VMs whose step value is the mean of their ticks.
    pub measured: usize,
    /// VMs whose step had no tick and took their previous value.
    pub filled: usize,
    /// VMs dropped because they had no tick for more than `HISTORY_STEPS` steps (they
    /// would start again anyway).
    pub dropped: Vec<String>,
}

/// The ticks of one VM's open step.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pending {
    step: i64,
    sum: f64,
    ticks: u32,
}

impl Pending {
    fn mean(&self) -> f32 {
        (self.sum / f64::from(self.ticks)) as f32
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct VmState {
    /// `None` until the VM's first step is closed.
    rollup: Option<VmRollup>,
    pending: Option<Pending>,
}

impl VmState {
    /// Moves the pending step into the rollup.
    fn commit_pending(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        match &mut self.rollup {
            Some(r) => {
                r.push_step(p.step, Some(p.mean()));
            }
            None => self.rollup = Some(VmRollup::new(p.step, p.mean())),
        }
    }
}

/// Every VM's rollup and open step.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupStore {
    vms: BTreeMap<String, VmState>,
    geometry: StoreGeometry,
    last_closed: Option<i64>,
    /// Where [`RollupStore::save`] writes; `None`: memory only (a replay).
    path: Option<PathBuf>,
}

impl RollupStore {
    /// A store that lives in memory only (a replay, tests).
    pub fn in_memory(clock: &Clock) -> Self {
        Self {
            vms: BTreeMap::new(),
            geometry: StoreGeometry::of(clock),
            last_closed: None,
            path: None,
        }
    }

    /// Opens the store kept in `dir` (file [`file::FILE_NAME`]), or an empty one when
    /// there is none yet. Never fails: a file that cannot be read, is torn or corrupt,
    /// or was written with another step geometry is reported in the problems (each
    /// names the file, and the VM when one record is bad) and the VMs it held start
    /// afresh. A whole file that cannot be used is kept beside as `*.corrupt` for a
    /// post-mortem. The directory is created on the first [`RollupStore::save`].
    pub fn open(dir: &Path, clock: &Clock) -> (Self, Vec<RollupProblem>) {
        let path = dir.join(file::FILE_NAME);
        let geometry = StoreGeometry::of(clock);
        let loaded = file::read(&path, &geometry);
        let mut store = Self {
            vms: BTreeMap::new(),
            geometry,
            last_closed: loaded.last_closed,
            path: Some(path),
        };
        for (name, rollup) in loaded.rollups {
            store.vms.insert(
                name,
                VmState {
                    rollup: Some(rollup),
                    pending: None,
                },
            );
        }
        for p in &loaded.problems {
            tracing::warn!(path = %p.path.display(), vm = p.vm.as_deref().unwrap_or("-"), "demand rollups: {}", p.what);
        }
        (store, loaded.problems)
    }

    /// Writes every VM's rollup to the store's file, crash-safe (temporary file, fsync,
    /// rename, fsync of the directory). Open steps are not written: after a restart a
    /// step is the mean of the ticks it got since. A memory-only store does nothing.
    pub fn save(&self) -> Result<(), file::SaveError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let rollups = self
            .vms
            .iter()
            .filter_map(|(name, s)| s.rollup.as_ref().map(|r| (name.as_str(), r)));
        file::write(path, &self.geometry, self.last_closed, rollups)
    }

    /// The file [`RollupStore::save`] writes, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The step length the store's values are means over.
    pub fn step(&self) -> Duration {
        Duration::from_nanos(self.geometry.step_ns)
    }

    /// The last step [`RollupStore::close_step`] ended (also read back from the file).
    pub fn last_closed(&self) -> Option<i64> {
        self.last_closed
    }

    /// Counts one tick's demand (percent of the VM's allocated cores) in `step`, the
    /// step the tick measured. A VM seen for the first time is created; a tick for a
    /// later step than the VM's open one closes that open step for this VM first.
    pub fn record(&mut self, vm: &str, step: i64, demand_percent: f64) -> TickOutcome {
        if !(demand_percent.is_finite() && demand_percent >= 0.0) {
            return TickOutcome::Invalid;
        }
        if self.last_closed.is_some_and(|c| step <= c) {
            return TickOutcome::Late;
        }
        let state = match self.vms.get_mut(vm) {
            Some(s) => s,
            None => self.vms.entry(vm.to_string()).or_default(),
        };
        if state
            .rollup
            .as_ref()
            .is_some_and(|r| step <= r.newest_step())
        {
            return TickOutcome::Late;
        }
        match &mut state.pending {
            Some(p) if p.step == step => {
                p.sum += demand_percent;
                p.ticks += 1;
                return TickOutcome::Accepted;
            }
            Some(p) if p.step > step => return TickOutcome::Late,
            Some(_) => state.commit_pending(),
            None => {}
        }
        state.pending = Some(Pending {
            step,
            sum: demand_percent,
            ticks: 1,
        });
        TickOutcome::Accepted
    }

    /// Ends step `t` for every VM: its ticks' mean, or its previous value when it had
    /// none (and one copy per step for any steps in between). VMs without any value
    /// yet stay unborn. VMs that have had no tick for more than `HISTORY_STEPS` steps
    /// are dropped.
    pub fn close_step(&mut self, t: i64) -> ClosedStep {
        let mut closed = ClosedStep {
            step: t,
            ..ClosedStep::default()
        };
        for state in self.vms.values_mut() {
            if state.pending.is_some_and(|p| p.step <= t) {
                state.commit_pending();
            }
            let Some(r) = &mut state.rollup else {
                continue;
            };
            if r.newest_step() == t && r.last_seen_step() == t {
                closed.measured += 1;
            } else if r.push_step(t, None) {
                closed.filled += 1;
            }
        }
        let horizon = HISTORY_STEPS as i64;
        self.vms.retain(|name, state| {
            let stale = state.pending.is_none()
                && state
                    .rollup
                    .as_ref()
                    .is_some_and(|r| t.saturating_sub(r.last_seen_step()) > horizon);
            if stale {
                closed.dropped.push(name.clone());
            }
            !stale
        });
        self.mark_closed(t);
        closed
    }

    /// A VM's rollup, once its first step has been closed.
    pub fn get(&self, vm: &str) -> Option<&VmRollup> {
        self.vms.get(vm).and_then(|s| s.rollup.as_ref())
    }

    /// The VMs that have a rollup, by name.
    pub fn vms(&self) -> impl Iterator<Item = (&str, &VmRollup)> {
        self.vms
            .iter()
            .filter_map(|(n, s)| s.rollup.as_ref().map(|r| (n.as_str(), r)))
    }

    /// Puts a whole rollup in place of the VM's (history imported from elsewhere,
    /// [`crate::import`]); its open step, if any, is dropped. True when it replaced one.
    pub fn insert(&mut self, vm: &str, rollup: VmRollup) -> bool {
        let old = self.vms.insert(
            vm.to_string(),
            VmState {
                rollup: Some(rollup),
                pending: None,
            },
        );
        old.is_some_and(|s| s.rollup.is_some())
    }

    /// Records that every step up to `t` has been closed (an import covered them): ticks
    /// for those steps are late from now on, and the next step to close is `t + 1`.
    pub fn mark_closed(&mut self, t: i64) {
        self.last_closed = Some(self.last_closed.map_or(t, |c| c.max(t)));
    }

    /// Forgets a VM (e.g. deleted for good): its rollup goes at the next save.
    pub fn remove(&mut self, vm: &str) -> bool {
        self.vms.remove(vm).is_some()
    }

    pub fn len(&self) -> usize {
        self.vms().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn clock() -> Clock {
        Clock::new(
            Duration::from_secs(1),
            Duration::from_secs(288),
            UNIX_EPOCH,
            288,
        )
        .expect("lab clock")
    }

    #[test]
    fn a_step_is_the_mean_of_its_ticks() {
        let mut s = RollupStore::in_memory(&clock());
        for d in [10.0, 20.0, 60.0] {
            assert_eq!(s.record("a", 5, d), TickOutcome::Accepted);
        }
        assert!(
            s.get("a").is_none(),
            "not born before its first step closes"
        );
        let c = s.close_step(5);
        assert_eq!((c.measured, c.filled), (1, 0));
        let r = s.get("a").expect("born");
        assert_eq!((r.age(), r.value(0)), (1, Some(30.0)));
    }

    #[test]
    fn a_step_without_ticks_repeats_the_previous_value() {
        let mut s = RollupStore::in_memory(&clock());
        s.record("a", 1, 4.0);
        s.close_step(1);
        let c = s.close_step(2);
        assert_eq!((c.measured, c.filled), (0, 1));
        s.record("a", 5, 8.0);
        s.close_step(5);
        let r = s.get("a").expect("born");
        let got: Vec<f32> = r.available().collect();
        assert_eq!(got, vec![4.0, 4.0, 4.0, 4.0, 8.0]);
    }

    #[test]
    fn late_and_invalid_ticks_are_dropped() {
        let mut s = RollupStore::in_memory(&clock());
        s.record("a", 3, 1.0);
        s.close_step(3);
        assert_eq!(s.record("a", 3, 2.0), TickOutcome::Late);
        assert_eq!(s.record("b", 2, 2.0), TickOutcome::Late);
        assert_eq!(s.record("a", 4, f64::NAN), TickOutcome::Invalid);
        assert_eq!(s.record("a", 4, -1.0), TickOutcome::Invalid);
        s.record("a", 5, 2.0);
        assert_eq!(s.record("a", 4, 2.0), TickOutcome::Late);
    }

    #[test]
    fn a_tick_of_the_next_step_closes_the_open_one_for_that_vm() {
        let mut s = RollupStore::in_memory(&clock());
        s.record("a", 1, 2.0);
        s.record("a", 2, 6.0);
        s.close_step(2);
        let got: Vec<f32> = s.get("a").expect("born").available().collect();
        assert_eq!(got, vec![2.0, 6.0]);
    }

    #[test]
    fn a_vm_born_later_does_not_exist_before() {
        let mut s = RollupStore::in_memory(&clock());
        s.record("a", 1, 1.0);
        s.close_step(1);
        s.record("b", 2, 9.0);
        s.close_step(2);
        assert_eq!(s.get("b").expect("born").age(), 1);
        assert_eq!(s.get("a").expect("born").age(), 2);
    }

    #[test]
    fn a_vm_gone_for_more_than_the_history_is_dropped_and_starts_again() {
        let mut s = RollupStore::in_memory(&clock());
        s.record("a", 0, 1.0);
        s.close_step(0);
        let last = HISTORY_STEPS as i64;
        assert!(s.close_step(last).dropped.is_empty());
        assert_eq!(s.close_step(last + 1).dropped, vec!["a".to_string()]);
        s.record("a", last + 2, 5.0);
        s.close_step(last + 2);
        assert_eq!(s.get("a").expect("born again").age(), 1);
    }
}
