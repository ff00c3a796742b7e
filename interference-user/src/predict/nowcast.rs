//! The attributed nowcast: the Contention Score that is right about the present, with
//! no model (models/README.md, "Contention Score").
//!
//! For the ordered pair (victim `v`, aggressor `a`), over a window of `v`'s collector
//! ticks: the share of `v`'s runnable time that `a` took,
//!
//! ```text
//! score = 100 * clamp(by[v][a] / (run_v + wait_v - by[v][v]), 0, 1)
//! ```
//!
//! where `by[v][x]` is the run-queue wait of `v`'s threads after `x` preempted them (the
//! eBPF preemption matrix), `run_v` its CPU time and `wait_v` its whole run-queue wait.
//! The victim's own threads are taken out of the denominator: a multi-vCPU VM whose
//! vCPUs queue behind each other is not contended by anyone, and neither is a VM that
//! is only short of CPU because its own threads outnumber its CPUs. A victim that ran
//! or waited less than 1% of the window scores 0 (nothing to take from it).
//!
//! Two windows: the latest tick alone (`tick`, the fastest to see a step) and the
//! ticks of the last `smoothing` (`smoothed`, 5 s by default; the score the policy
//! acts on). Both are exact arithmetic over what the scheduler recorded, O(pairs) per
//! round, and the same formula as `scripts/model/nowcast.py` (golden test:
//! `tests/nowcast_golden.rs`).
//!
//! What the scheduler cannot see is said, not guessed: without hardware counters for
//! the victim (no PMU, as on these build machines), cache and memory-bandwidth
//! contention are unobservable, and every score of that victim carries
//! `unobservable = ["llc", "membw"]`; a 0 there means "no CPU contention", not "no
//! contention".

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::features::{CpuAccounts, NameId, Window};

/// The default smoothing window.
pub const DEFAULT_SMOOTHING: Duration = Duration::from_secs(5);

/// Dimensions a score cannot see on a victim without hardware counters.
pub const WITHOUT_PMU: [&str; 2] = ["llc", "membw"];

/// The nowcast of one ordered pair. Names are shared with the accounts (a round of a
/// full host has ten thousand pairs: no copy of a name per pair).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NowcastScore {
    pub victim: Arc<str>,
    pub aggressor: Arc<str>,
    /// Over the latest tick alone.
    pub tick: f32,
    /// Over the smoothing window.
    pub smoothed: f32,
    /// Contention dimensions this score cannot see for this victim.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub unobservable: &'static [&'static str],
}

/// The share of a victim's runnable time (`runnable` seconds, own threads' wait
/// excluded, over `dt` seconds) that `taken` seconds were, 0-100.
pub fn share_taken(dt: f64, runnable: f64, taken: f64) -> f32 {
    if !(runnable.is_finite() && runnable > 0.0 && runnable >= 0.01 * dt && taken.is_finite()) {
        return 0.0;
    }
    let share = taken / runnable;
    (100.0 * share.clamp(0.0, 1.0)) as f32
}

/// The nowcast configured: how many ticks make the smoothing window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nowcast {
    /// Collector ticks in the smoothing window.
    pub ticks: usize,
}

impl Nowcast {
    /// The smoothing window `smoothing` at a collector tick of `interval`:
    /// ceil(smoothing / interval) ticks, at least one.
    pub fn new(interval: Duration, smoothing: Duration) -> Self {
        let i = interval.as_nanos().max(1);
        let ticks = smoothing.as_nanos().div_ceil(i).max(1);
        Self {
            ticks: usize::try_from(ticks).unwrap_or(usize::MAX),
        }
    }

    /// The accounts the nowcast needs: this many ticks per VM.
    pub fn accounts(&self) -> CpuAccounts {
        CpuAccounts::new(self.ticks)
    }

    /// Every ordered pair of VMs in `accounts` where the aggressor took something from
    /// the victim in the window (the other pairs score 0 and are left out), by victim
    /// then aggressor. `host` is not a VM: what it takes is not any neighbour's doing.
    pub fn score(&self, accounts: &CpuAccounts) -> Vec<NowcastScore> {
        let vms = accounts.vm_ids();
        // Each VM's place in name order, by number (None: not a VM).
        let mut rank: Vec<Option<usize>> = Vec::new();
        for (i, vm) in vms.iter().enumerate() {
            let at = vm.index();
            if rank.len() <= at {
                rank.resize(at + 1, None);
            }
            rank[at] = Some(i);
        }
        let rank_of = |id: NameId| rank.get(id.index()).copied().flatten();
        let mut out = Vec::new();
        let mut window = Window::default();
        let mut aggressors: Vec<(usize, NameId)> = Vec::new();
        for &victim in &vms {
            let Some(last) = accounts.last(victim) else {
                continue;
            };
            if !accounts.window_into(victim, &mut window) {
                continue;
            }
            let unobservable: &'static [&'static str] = if accounts.counters_observed(victim) {
                &[]
            } else {
                &WITHOUT_PMU
            };
            aggressors.clear();
            aggressors.extend(
                window
                    .preemptors()
                    .iter()
                    .filter(|a| **a != victim)
                    .filter_map(|a| Some((rank_of(*a)?, *a))),
            );
            aggressors.sort_unstable();
            let victim_name = accounts.shared_name(victim);
            let (runnable_tick, runnable) = (last.runnable(), window.runnable());
            for &(_, a) in &aggressors {
                out.push(NowcastScore {
                    victim: victim_name.clone(),
                    aggressor: accounts.shared_name(a),
                    tick: share_taken(last.dt, runnable_tick, last.by(a)),
                    smoothed: share_taken(window.dt, runnable, window.by(a)),
                    unobservable,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::accounts_testing::sample;

    #[test]
    fn a_single_thread_victim_sharing_its_cpu_half_and_half_scores_50() {
        // run 0.5 + wait 0.5, nothing own; the neighbour took 0.5.
        assert_eq!(share_taken(1.0, 0.5 + 0.5, 0.5), 50.0);
        assert_eq!(share_taken(1.0, 0.5 + 0.5, 0.0), 0.0);
    }

    #[test]
    fn own_threads_are_not_contention() {
        // Two threads on one CPU, alone: each waits for the other. Nothing is
        // runnable beyond the own threads' wait, so nobody can have taken anything.
        let mut acc = CpuAccounts::new(1);
        acc.push_tick(&[sample("v", 1.0, 1.0, &[("v", 1.0)])]);
        let v = acc.last(acc.id("v").unwrap()).unwrap();
        assert_eq!((v.own, v.runnable()), (1.0, 1.0));
        assert!(v.by.is_empty());
        assert!(Nowcast { ticks: 1 }.score(&acc).is_empty());
        // The same with a neighbour taking a third of the CPU.
        let mut acc = CpuAccounts::new(1);
        acc.push_tick(&[
            sample("v", 0.667, 1.333, &[("v", 0.667), ("b", 0.667)]),
            sample("b", 0.333, 0.0, &[]),
        ]);
        let s = Nowcast { ticks: 1 }.score(&acc);
        assert_eq!(s.len(), 1, "{s:?}");
        assert!((s[0].tick - 50.0).abs() < 0.1, "{s:?}");
    }

    #[test]
    fn an_idle_victim_and_bad_numbers_score_0() {
        // Ran and waited 0.5% of the tick: nothing to take from it.
        assert_eq!(share_taken(1.0, 0.005, 0.004), 0.0);
        assert_eq!(share_taken(1.0, f64::NAN, 0.5), 0.0);
        assert_eq!(share_taken(1.0, 0.5, f64::NAN), 0.0);
        // More attributed than runnable (clock skew between sources): capped.
        assert_eq!(share_taken(1.0, 0.2, 0.5), 100.0);
    }

    #[test]
    fn the_window_is_a_ratio_of_sums_and_host_is_nobody() {
        let n = Nowcast::new(Duration::from_secs(1), DEFAULT_SMOOTHING);
        assert_eq!(n.ticks, 5);
        assert_eq!(
            Nowcast::new(Duration::from_secs(2), DEFAULT_SMOOTHING).ticks,
            3
        );
        assert_eq!(
            Nowcast::new(Duration::from_secs(5), DEFAULT_SMOOTHING).ticks,
            1
        );
        let mut acc = n.accounts();
        // Four quiet ticks, then the neighbour arrives.
        for _ in 0..4 {
            acc.push_tick(&[sample("v", 1.0, 0.0, &[]), sample("b", 0.0, 0.0, &[])]);
        }
        acc.push_tick(&[
            sample("v", 0.5, 0.5, &[("b", 0.4), ("host", 0.1)]),
            sample("b", 0.5, 0.0, &[]),
        ]);
        let s = n.score(&acc);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!((&*s[0].victim, &*s[0].aggressor), ("v", "b"));
        assert!((s[0].tick - 40.0).abs() < 1e-4);
        // 0.4 of the 5 s window's 5.0 runnable seconds.
        assert!((s[0].smoothed - 8.0).abs() < 1e-4);
        assert_eq!(s[0].unobservable, WITHOUT_PMU, "no PMU in these samples");
    }
}
