//! Raw feature windows of every ordered pair of ready VMs, in one batch for the scorer.
//!
//! With `n` VMs there are `n (n - 1)` pairs but only `n` VMs, so everything that
//! depends on one VM (its `T` aggregates, its 20 features, its time features) is
//! computed once per call, and so is every victim's preemption by every aggressor
//! (two `n x n` matrices per model tick); filling a pair's window is then copying and
//! one CPU-set intersection per tick. The output buffer is reused between calls.

use std::collections::HashMap;
use std::sync::Arc;

use super::aggregate::{
    aggregate_into, per_dt, rate_log, shared_cpus, time_features, vm_features, Aggregate,
};
use super::cpumask::CpuMask;
use super::extract::VmId;
use super::names::{AGGRESSOR_AT, FEATURES, PAIR_AT, PER_VM, TIME, TIME_AT, VICTIM_AT};
use super::window::FeatureWindows;

/// Raw (un-normalised) windows of ordered pairs: `data` is row-major `[n, t, f]`, window
/// `i` is that of `pairs[i]` = (victim, aggressor), sorted by victim then aggressor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairWindows {
    pub pairs: Vec<(String, String)>,
    pub t: usize,
    pub f: usize,
    pub data: Vec<f32>,
}

impl PairWindows {
    /// Number of windows.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Window `i`, `t * f` values (model tick after model tick).
    pub fn window(&self, i: usize) -> Option<&[f32]> {
        let size = self.t * self.f;
        self.data.get(i * size..(i + 1) * size)
    }

    /// Index of the window of (victim, aggressor).
    pub fn position(&self, victim: &str, aggressor: &str) -> Option<usize> {
        self.pairs
            .binary_search_by(|(v, a)| (v.as_str(), a.as_str()).cmp(&(victim, aggressor)))
            .ok()
    }
}

/// What a pair's row needs of one VM in one model tick, computed once per call.
struct VmTick {
    own: [f32; PER_VM],
    time: [f32; TIME],
    host: f32,
    cpus: Option<Arc<CpuMask>>,
}

impl FeatureWindows {
    /// The windows of every ordered pair of ready VMs.
    pub fn pairs(&self) -> PairWindows {
        let mut out = PairWindows::default();
        self.pairs_into(&mut out);
        out
    }

    /// [`FeatureWindows::pairs`] into `out`, reusing its allocations (the pair names'
    /// too, when the VMs are the same as last time).
    pub fn pairs_into(&self, out: &mut PairWindows) {
        let (t, k, f) = (self.t, self.k, FEATURES);
        let mut ready: Vec<(&str, VmId, &super::window::VmWindow)> = self
            .vms
            .iter()
            .filter(|(_, w)| w.ring.len() == self.capacity())
            .map(|(name, w)| (name.as_str(), w.id, w))
            .collect();
        ready.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let n = ready.len();
        let index: HashMap<VmId, usize> = ready.iter().enumerate().map(|(i, r)| (r.1, i)).collect();

        // Per VM and model tick; and per model tick, victim x aggressor, the victim's
        // preempted-by ratio and rate: [j][v][a].
        let mut ticks: Vec<VmTick> = Vec::with_capacity(n * t);
        let mut by_ratio = vec![0f32; t * n * n];
        let mut by_rate = vec![0f32; t * n * n];
        let mut agg = Aggregate::default();
        for (v, (_, id, w)) in ready.iter().enumerate() {
            for j in 0..t {
                aggregate_into(*id, w.ring.range(j * k..(j + 1) * k), &mut agg);
                for p in &agg.by {
                    if let Some(&a) = index.get(&p.by) {
                        let cell = (j * n + v) * n + a;
                        by_ratio[cell] = per_dt(p.seconds, agg.dt) as f32;
                        by_rate[cell] = rate_log(p.count, agg.dt) as f32;
                    }
                }
                ticks.push(VmTick {
                    own: vm_features(&agg).map(|x| x as f32),
                    time: time_features(agg.timestamp_ms).map(|x| x as f32),
                    host: per_dt(agg.by(VmId::HOST).seconds, agg.dt) as f32,
                    cpus: agg.cpus.clone(),
                });
            }
        }

        let n_pairs = n * n.saturating_sub(1);
        out.t = t;
        out.f = f;
        out.pairs.truncate(n_pairs);
        // Every value is overwritten below: resizing only grows or shrinks.
        out.data.resize(n_pairs * t * f, 0.0);
        let mut windows = out.data.chunks_exact_mut(t * f);
        let mut p = 0;
        for (v, victim) in ready.iter().enumerate() {
            for (a, aggressor) in ready.iter().enumerate() {
                if a == v {
                    continue;
                }
                set_pair(&mut out.pairs, p, victim.0, aggressor.0);
                p += 1;
                let Some(window) = windows.next() else {
                    return; // sized above; cannot happen
                };
                for (j, row) in window.chunks_exact_mut(f).enumerate() {
                    let (vt, at) = (&ticks[v * t + j], &ticks[a * t + j]);
                    row[VICTIM_AT..VICTIM_AT + PER_VM].copy_from_slice(&vt.own);
                    row[AGGRESSOR_AT..AGGRESSOR_AT + PER_VM].copy_from_slice(&at.own);
                    row[PAIR_AT] = by_ratio[(j * n + v) * n + a];
                    row[PAIR_AT + 1] = by_rate[(j * n + v) * n + a];
                    row[PAIR_AT + 2] = by_ratio[(j * n + a) * n + v];
                    row[PAIR_AT + 3] = vt.host;
                    row[PAIR_AT + 4] = shared_cpus(vt.cpus.as_deref(), at.cpus.as_deref()) as f32;
                    row[TIME_AT..TIME_AT + TIME].copy_from_slice(&vt.time);
                }
            }
        }
    }
}

/// Sets `pairs[p]`, reusing the strings already there.
fn set_pair(pairs: &mut Vec<(String, String)>, p: usize, victim: &str, aggressor: &str) {
    match pairs.get_mut(p) {
        Some((v, a)) => {
            if v != victim {
                v.clear();
                v.push_str(victim);
            }
            if a != aggressor {
                a.clear();
                a.push_str(aggressor);
            }
        }
        None => pairs.push((victim.to_string(), aggressor.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::super::aggregate::{aggregate, pair_features};
    use super::super::extract::testutil::sample;
    use super::super::names::FEATURE_NAMES;
    use super::*;
    use crate::telemetry::VmSample;

    /// Three VMs preempting each other, with cpus and labels that differ per tick.
    fn ticks(n: u64) -> Vec<Vec<VmSample>> {
        (0..n)
            .map(|i| {
                let ts = 1_795_392_000_000 + i * 1000;
                let mut a = sample(
                    "a",
                    ts,
                    &[("b", 2 + i, 0.01 * i as f64), ("host", 1, 0.002)],
                );
                let mut b = sample("b", ts, &[("a", 1, 0.003), ("c", i, 0.004), ("b", 9, 0.9)]);
                let mut c = sample("c", ts, &[("departed", 5, 0.5)]);
                a.cpus = Some(vec![0, 1, 2, 3]);
                b.cpus = Some(if i % 2 == 0 {
                    vec![2, 3]
                } else {
                    vec![3, 4, 5]
                });
                c.cpus = None;
                a.workload = Some("database".into());
                c.workload = if i % 3 == 0 {
                    Some("fsync".into())
                } else {
                    None
                };
                if let Some(c) = a.cpu.as_mut() {
                    c.usage_seconds = 0.1 * i as f64;
                }
                b.runqueue.waits = 7 * i;
                if let Some(m) = c.memory.as_mut() {
                    m.usage_bytes = i << 28;
                }
                c.interval_seconds = 1.0 + 0.001 * i as f64;
                vec![a, b, c]
            })
            .collect()
    }

    /// The reference: every window straight from the pure functions, pair by pair.
    fn reference(w: &FeatureWindows, victim: &str, aggressor: &str) -> Vec<f64> {
        let (v, a) = (&w.vms[victim], &w.vms[aggressor]);
        let k = w.samples_per_tick();
        let mut out = vec![];
        for j in 0..w.window() {
            let va = aggregate(v.id, v.ring.range(j * k..(j + 1) * k));
            let aa = aggregate(a.id, a.ring.range(j * k..(j + 1) * k));
            out.extend(vm_features(&va));
            out.extend(vm_features(&aa));
            out.extend(pair_features(&va, &aa));
            out.extend(time_features(va.timestamp_ms));
        }
        out
    }

    #[test]
    fn pairs_are_every_ordered_pair_of_ready_vms_in_order() {
        let mut w = FeatureWindows::new(2, 2);
        let all = ticks(5);
        for tick in &all[..3] {
            w.push_tick(tick);
        }
        assert!(w.pairs().is_empty());
        w.push_tick(&all[3]);
        let p = w.pairs();
        let names: Vec<(&str, &str)> = p
            .pairs
            .iter()
            .map(|(v, a)| (v.as_str(), a.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("a", "b"),
                ("a", "c"),
                ("b", "a"),
                ("b", "c"),
                ("c", "a"),
                ("c", "b")
            ]
        );
        assert_eq!((p.t, p.f, p.data.len()), (2, 49, 6 * 2 * 49));
        assert_eq!(p.position("b", "c"), Some(3));
        assert_eq!(p.position("b", "b"), None);
        assert_eq!(p.window(5).map(<[f32]>::len), Some(98));
        assert_eq!(p.window(6), None);
    }

    #[test]
    fn pair_windows_match_the_pure_functions() {
        let mut w = FeatureWindows::new(2, 2);
        let mut out = PairWindows::default();
        for tick in ticks(6) {
            w.push_tick(&tick);
            w.pairs_into(&mut out);
            for (i, (v, a)) in out.pairs.iter().enumerate() {
                let want = reference(&w, v, a);
                let got = out.window(i).expect("window i");
                for (c, (g, r)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        *g,
                        *r as f32,
                        "{v} <- {a}, tick {}, {}",
                        c / FEATURES,
                        FEATURE_NAMES[c % FEATURES]
                    );
                }
            }
        }
        // some pair features are not trivially zero in this data
        let ab = out
            .window(out.position("a", "b").expect("a <- b"))
            .expect("window");
        assert!(ab[PAIR_AT] > 0.0 && ab[PAIR_AT + 1] > 0.0 && ab[PAIR_AT + 2] > 0.0);
        assert!(ab[PAIR_AT + 3] > 0.0 && ab[PAIR_AT + 4] > 0.0 && ab[PAIR_AT + 4] < 1.0);
        let ca = out
            .window(out.position("c", "a").expect("c <- a"))
            .expect("window");
        assert_eq!(ca[PAIR_AT + 4], 1.0, "c's cpus are unknown");
    }

    #[test]
    fn pairs_into_shrinks_and_grows_with_the_vms() {
        let mut w = FeatureWindows::new(1, 1);
        let mut out = PairWindows::default();
        let all = ticks(3);
        w.push_tick(&all[0]);
        w.pairs_into(&mut out);
        assert_eq!(out.len(), 6);
        // c leaves
        w.push_tick(&all[1][..2]);
        w.pairs_into(&mut out);
        assert_eq!(out, w.pairs());
        assert_eq!(out.len(), 2);
        assert_eq!(out.data.len(), 2 * 49);
        w.push_tick(&all[2]);
        w.pairs_into(&mut out);
        assert_eq!(out, w.pairs());
        assert_eq!(out.len(), 6);
    }
}
