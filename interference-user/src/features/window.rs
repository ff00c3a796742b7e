//! Per-VM rings of the last `T * k` collector samples: what a pair's window is cut from.
//!
//! A window must be contiguous (docs/dataset.md: both VMs have a sample in each of the
//! last `T * k` collector ticks), so a VM missing from a tick is dropped, and starts an
//! empty ring under a new [`VmId`] when it comes back. The rings hold
//! [`SampleExtract`]s, a couple of hundred bytes each, and recycle the oldest one's
//! allocations when full.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::telemetry::VmSample;

use super::error::FeatureError;
use super::extract::{SampleExtract, VmId};

/// How far the collector interval times `k` may be from the model tick.
const TICK_TOLERANCE_S: f64 = 1e-3;

/// One VM's recent samples.
#[derive(Debug)]
pub(super) struct VmWindow {
    pub(super) id: VmId,
    /// The last collector tick (of [`FeatureWindows::push_tick`]) with a sample of it.
    seen: u64,
    /// The last tick whose sample is in `ring` (to replace a duplicate's).
    pushed: u64,
    /// Oldest first; at most `T * k`.
    pub(super) ring: VecDeque<SampleExtract>,
}

/// The feature windows of every VM on the host, fed one collector tick at a time.
#[derive(Debug)]
pub struct FeatureWindows {
    pub(super) t: usize,
    pub(super) k: usize,
    pub(super) vms: HashMap<String, VmWindow>,
    /// Ticks pushed so far.
    tick: u64,
    /// The last id handed out (0 is [`VmId::HOST`]).
    last_id: u64,
}

impl FeatureWindows {
    /// Windows of `window_ticks` model ticks (`T`) of `k` collector samples each.
    ///
    /// # Panics
    /// When either is 0; [`FeatureWindows::for_model`] checks a model's values.
    pub fn new(window_ticks: usize, k: usize) -> Self {
        assert!(
            window_ticks > 0 && k > 0,
            "feature windows of {window_ticks} x {k} samples"
        );
        Self {
            t: window_ticks,
            k,
            vms: HashMap::new(),
            tick: 0,
            last_id: VmId::HOST.0,
        }
    }

    /// Windows for a model of `window` ticks of `tick_seconds` (its sidecar's values),
    /// fed by a collector ticking every `collector_interval`, which must divide
    /// `tick_seconds` within 1 ms.
    pub fn for_model(
        window: usize,
        tick_seconds: f64,
        collector_interval: Duration,
    ) -> Result<Self, FeatureError> {
        if window == 0 {
            return Err(FeatureError::EmptyWindow { window });
        }
        if !(tick_seconds.is_finite() && tick_seconds > 0.0) {
            return Err(FeatureError::TickSeconds { tick_seconds });
        }
        let interval = collector_interval.as_secs_f64();
        let k = (tick_seconds / interval).round();
        if !(k >= 1.0 && (k * interval - tick_seconds).abs() <= TICK_TOLERANCE_S) {
            return Err(FeatureError::Interval {
                interval: collector_interval,
                tick_seconds,
            });
        }
        // k >= 1 and k * interval is within 1 ms of a finite tick: k is a small integer.
        Ok(Self::new(window, k as usize))
    }

    /// Model ticks per window (`T`).
    pub fn window(&self) -> usize {
        self.t
    }

    /// Collector samples per model tick (`k`).
    pub fn samples_per_tick(&self) -> usize {
        self.k
    }

    /// Collector samples a VM needs before its windows exist (`T * k`).
    pub fn capacity(&self) -> usize {
        self.t * self.k
    }

    /// VMs in the windows (present in the last tick).
    pub fn len(&self) -> usize {
        self.vms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vms.is_empty()
    }

    /// VMs with a full window, sorted by name: the ones [`FeatureWindows::pairs`] pairs.
    pub fn ready_vms(&self) -> Vec<&str> {
        let mut ready: Vec<&str> = self
            .vms
            .iter()
            .filter(|(_, w)| w.ring.len() == self.capacity())
            .map(|(name, _)| name.as_str())
            .collect();
        ready.sort_unstable();
        ready
    }

    /// Adds one collector tick: every VM's sample of it (all with the tick's timestamp).
    /// A VM without a sample in it is dropped; if a VM has two, the later one counts.
    pub fn push_tick(&mut self, samples: &[VmSample]) {
        self.tick += 1;
        let tick = self.tick;
        for s in samples {
            match self.vms.get_mut(s.vm.as_str()) {
                Some(w) => w.seen = tick,
                None => {
                    self.last_id += 1;
                    self.vms.insert(
                        s.vm.clone(),
                        VmWindow {
                            id: VmId(self.last_id),
                            seen: tick,
                            pushed: 0,
                            ring: VecDeque::new(),
                        },
                    );
                }
            }
        }
        self.vms.retain(|_, w| w.seen == tick);

        let capacity = self.capacity();
        for s in samples {
            let Some(w) = self.vms.get_mut(s.vm.as_str()) else {
                continue; // registered above; cannot happen
            };
            let duplicate = w.pushed == tick;
            w.pushed = tick;
            let recycled = if duplicate {
                w.ring.pop_back()
            } else if w.ring.len() >= capacity {
                w.ring.pop_front()
            } else {
                None
            };
            let prev_cpus = w.ring.back().and_then(|e| e.cpus.clone());
            let mut e = recycled.unwrap_or_default();
            let vms = &self.vms;
            // An aggressor counts only if it has a sample in this tick: a name from an
            // earlier tick is either gone or a different incarnation.
            e.fill(s, prev_cpus.as_ref(), |name| {
                vms.get(name).filter(|a| a.seen == tick).map(|a| a.id)
            });
            if let Some(w) = self.vms.get_mut(s.vm.as_str()) {
                w.ring.push_back(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::extract::testutil::sample;
    use super::*;

    fn tick(ts: u64, vms: &[&str]) -> Vec<VmSample> {
        vms.iter().map(|vm| sample(vm, ts, &[])).collect()
    }

    #[test]
    fn a_vm_is_ready_once_its_ring_is_full() {
        let mut w = FeatureWindows::new(2, 2);
        for i in 0..3 {
            w.push_tick(&tick(i * 1000, &["b", "a"]));
            assert!(w.ready_vms().is_empty(), "tick {i}");
        }
        w.push_tick(&tick(3000, &["b", "a"]));
        assert_eq!(w.ready_vms(), ["a", "b"]);
        // the ring stays at T * k, oldest dropped
        w.push_tick(&tick(4000, &["b", "a"]));
        let ring = &w.vms["a"].ring;
        assert_eq!(ring.len(), 4);
        assert_eq!(ring.front().map(|e| e.timestamp_ms), Some(1000));
        assert_eq!(ring.back().map(|e| e.timestamp_ms), Some(4000));
    }

    #[test]
    fn a_vm_that_skips_a_tick_starts_over_under_a_new_id() {
        let mut w = FeatureWindows::new(1, 2);
        w.push_tick(&tick(0, &["a", "b"]));
        w.push_tick(&tick(1000, &["a", "b"]));
        assert_eq!(w.ready_vms(), ["a", "b"]);
        let old = w.vms["b"].id;
        w.push_tick(&tick(2000, &["a"]));
        assert_eq!(w.len(), 1, "b is dropped");
        assert_eq!(w.ready_vms(), ["a"]);
        w.push_tick(&tick(3000, &["a", "b"]));
        assert_eq!(w.ready_vms(), ["a"], "b's window restarts");
        assert_ne!(w.vms["b"].id, old);
        assert_eq!(w.vms["b"].ring.len(), 1);
        w.push_tick(&tick(4000, &["a", "b"]));
        assert_eq!(w.ready_vms(), ["a", "b"]);
        // an empty tick drops everyone
        w.push_tick(&[]);
        assert!(w.is_empty());
    }

    #[test]
    fn aggressors_resolve_to_vms_of_the_same_tick() {
        let mut w = FeatureWindows::new(1, 1);
        let s = vec![
            sample(
                "a",
                0,
                &[
                    ("b", 1, 0.1),
                    ("host", 2, 0.2),
                    ("gone", 3, 0.3),
                    ("a", 4, 0.4),
                ],
            ),
            sample("b", 0, &[("c", 1, 0.1)]),
        ];
        w.push_tick(&s);
        let (a, b) = (w.vms["a"].id, w.vms["b"].id);
        let by: Vec<VmId> = w.vms["a"].ring[0].by.iter().map(|p| p.by).collect();
        assert_eq!(by, [b, VmId::HOST, a]);
        assert!(
            w.vms["b"].ring[0].by.is_empty(),
            "c has no sample in the tick"
        );
        assert!(a != VmId::HOST && b != VmId::HOST && a != b);
    }

    #[test]
    fn a_duplicate_sample_replaces_the_earlier_one() {
        let mut w = FeatureWindows::new(1, 2);
        let mut second = sample("a", 0, &[]);
        if let Some(c) = second.cpu.as_mut() {
            c.usage_seconds = 0.75;
        }
        w.push_tick(&[sample("a", 0, &[]), second]);
        let ring = &w.vms["a"].ring;
        assert_eq!(ring.len(), 1);
        assert_eq!(ring[0].cpu_s, 0.75);
    }

    #[test]
    fn for_model_derives_k() {
        let w = FeatureWindows::for_model(6, 5.0, Duration::from_secs(1)).expect("1 s divides 5 s");
        assert_eq!((w.window(), w.samples_per_tick(), w.capacity()), (6, 5, 30));
        let w = FeatureWindows::for_model(6, 5.0, Duration::from_secs(5)).expect("5 s divides 5 s");
        assert_eq!(w.samples_per_tick(), 1);
        let w = FeatureWindows::for_model(2, 1.0, Duration::from_millis(250)).expect("divides");
        assert_eq!(w.samples_per_tick(), 4);
        // within 1 ms
        let w = FeatureWindows::for_model(6, 5.0, Duration::from_micros(1_000_150)).expect("close");
        assert_eq!(w.samples_per_tick(), 5);
    }

    #[test]
    fn for_model_refuses_an_interval_that_does_not_divide_the_tick() {
        for (interval, tick) in [
            (Duration::from_secs(2), 5.0),
            (Duration::from_secs(10), 5.0),
            (Duration::from_millis(1500), 5.0),
            (Duration::from_millis(1002), 5.0),
            (Duration::ZERO, 5.0),
        ] {
            let e = FeatureWindows::for_model(6, tick, interval).expect_err("does not divide");
            assert!(matches!(e, FeatureError::Interval { .. }), "{e:?}");
            let msg = e.to_string();
            let shown = humantime::format_duration(interval).to_string();
            assert!(msg.contains(&shown) && msg.contains("5 s"), "{msg}");
        }
        let msg = FeatureWindows::for_model(6, 5.0, Duration::from_secs(2))
            .expect_err("does not divide")
            .to_string();
        assert!(
            msg.starts_with("the collector interval 2s does not divide the model tick of 5 s"),
            "{msg}"
        );
        assert!(matches!(
            FeatureWindows::for_model(0, 5.0, Duration::from_secs(1)),
            Err(FeatureError::EmptyWindow { window: 0 })
        ));
        for tick in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                FeatureWindows::for_model(6, tick, Duration::from_secs(1)),
                Err(FeatureError::TickSeconds { .. })
            ));
        }
    }
}
