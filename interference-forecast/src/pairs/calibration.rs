//! The host's online calibration of the fair-share model against the nowcast.
//!
//! The fair-share model is a simplification (even spread over a VM's CPUs, no wake-up
//! latency, no SMT, no cache), so the agent corrects it per host from what it measures:
//! each round, the model's prediction **now** (from current demands) of every ordered
//! pair sharing CPUs is paired with that pair's measured nowcast, and the correction is
//! fitted from those pairs, then applied to the predictions from forecast demands.
//!
//! The correction is an isotonic (monotone non-decreasing) map from predicted to
//! measured score, one per [`Layout`]: ten bins of the predicted score (0-10, ...,
//! 90-100), each holding exponentially forgotten sums of its samples (weight, predicted,
//! measured), evaluated as the bins' means made monotone by pool-adjacent-violators and
//! linearly interpolated. It is bounded: every bin also holds a prior of
//! `prior_weight` samples on the identity that is never forgotten, so a bin with little
//! data stays near "the model is right", and the output is clamped to 0-100. Plain
//! serde data: the agent persists it as JSON next to the rollups.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::fair_share::Layout;
use crate::rollup::SaveError;

const BINS: usize = 10;
const BIN_WIDTH: f64 = 100.0 / BINS as f64;
/// This crate writes and reads calibration format 1.
pub const CALIBRATION_FORMAT: u32 = 1;

/// One (prediction now, measured nowcast) pair of one ordered VM pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationSample {
    pub layout: Layout,
    /// The fair-share model's score from current demands (0-100).
    pub predicted: f64,
    /// The measured nowcast of the same ordered pair (0-100).
    pub measured: f64,
}

/// Exponentially forgotten sums of one bin's samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Bin {
    weight: f64,
    sum_predicted: f64,
    sum_measured: f64,
}

/// A per-host, per-layout isotonic correction; see the module comment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub format: u32,
    /// Per-round factor on the old sums: `0.5^(1 / half_life_rounds)`.
    pub forgetting: f64,
    /// Samples' worth of identity prior in every bin.
    pub prior_weight: f64,
    /// Rounds observed.
    pub rounds: u64,
    layouts: BTreeMap<Layout, [Bin; BINS]>,
}

/// A calibration file that cannot be used (the agent starts a fresh calibration).
#[derive(Debug, Error)]
pub enum CalibrationLoadError {
    #[error("cannot read pair calibration {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("pair calibration {path} is not valid calibration JSON: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("pair calibration {path}: {what}")]
    Invalid { path: String, what: String },
}

impl Default for Calibration {
    /// A half-life of 288 rounds (a day of 5-minute steps) and a prior of 5 samples.
    fn default() -> Self {
        Self::new(288.0, 5.0)
    }
}

impl Calibration {
    /// No data yet: the identity. `half_life_rounds` is how many rounds halve an old
    /// sample's weight; `prior_weight` how many samples of identity each bin holds.
    pub fn new(half_life_rounds: f64, prior_weight: f64) -> Self {
        let half_life = if half_life_rounds.is_finite() && half_life_rounds > 0.0 {
            half_life_rounds
        } else {
            288.0
        };
        Self {
            format: CALIBRATION_FORMAT,
            forgetting: 0.5f64.powf(1.0 / half_life),
            prior_weight: if prior_weight.is_finite() {
                prior_weight.max(0.1)
            } else {
                5.0
            },
            rounds: 0,
            layouts: BTreeMap::new(),
        }
    }

    /// One round of samples: old sums decay once, then the samples are added.
    /// Non-finite samples are ignored; scores are clamped to 0-100.
    pub fn observe(&mut self, samples: &[CalibrationSample]) {
        for bins in self.layouts.values_mut() {
            for b in bins.iter_mut() {
                b.weight *= self.forgetting;
                b.sum_predicted *= self.forgetting;
                b.sum_measured *= self.forgetting;
            }
        }
        for s in samples {
            if !(s.predicted.is_finite() && s.measured.is_finite()) {
                continue;
            }
            let (p, m) = (s.predicted.clamp(0.0, 100.0), s.measured.clamp(0.0, 100.0));
            let bins = self.layouts.entry(s.layout).or_default();
            let b = &mut bins[bin_of(p)];
            b.weight += 1.0;
            b.sum_predicted += p;
            b.sum_measured += m;
        }
        self.rounds += 1;
    }

    /// The calibrated score (0-100) of a fair-share prediction for this layout.
    pub fn apply(&self, layout: Layout, predicted: f64) -> f64 {
        if !predicted.is_finite() {
            return 0.0;
        }
        let p = predicted.clamp(0.0, 100.0);
        let Some(bins) = self.layouts.get(&layout) else {
            return p;
        };
        let (xs, ys) = self.curve(bins);
        interpolate(&xs, &ys, p).clamp(0.0, 100.0)
    }

    /// The calibration's points for a layout (predicted, calibrated), for explanations.
    pub fn points(&self, layout: Layout) -> Vec<(f64, f64)> {
        let bins = self.layouts.get(&layout).copied().unwrap_or_default();
        let (xs, ys) = self.curve(&bins);
        xs.into_iter().zip(ys).collect()
    }

    /// Bin means with the identity prior, made monotone.
    fn curve(&self, bins: &[Bin; BINS]) -> (Vec<f64>, Vec<f64>) {
        let mut xs = Vec::with_capacity(BINS);
        let mut ys = Vec::with_capacity(BINS);
        let mut ws = Vec::with_capacity(BINS);
        for (i, b) in bins.iter().enumerate() {
            let center = (i as f64 + 0.5) * BIN_WIDTH;
            let w = self.prior_weight + b.weight;
            xs.push((self.prior_weight * center + b.sum_predicted) / w);
            ys.push((self.prior_weight * center + b.sum_measured) / w);
            ws.push(w);
        }
        (xs, pool_adjacent_violators(&ys, &ws))
    }

    /// Reads a calibration saved by [`Calibration::save`].
    pub fn load(path: &Path) -> Result<Self, CalibrationLoadError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| CalibrationLoadError::Read {
            path: name.clone(),
            source,
        })?;
        let c: Self =
            serde_json::from_slice(&bytes).map_err(|source| CalibrationLoadError::Parse {
                path: name.clone(),
                source,
            })?;
        let invalid = |what: String| CalibrationLoadError::Invalid {
            path: name.clone(),
            what,
        };
        if c.format != CALIBRATION_FORMAT {
            return Err(invalid(format!(
                "format {}, this agent reads {CALIBRATION_FORMAT}",
                c.format
            )));
        }
        if !(c.forgetting > 0.0 && c.forgetting < 1.0 && c.prior_weight > 0.0) {
            return Err(invalid(
                "forgetting must be in (0, 1) and prior_weight > 0".into(),
            ));
        }
        let bad = c.layouts.values().flatten().any(|b| {
            !(b.weight.is_finite()
                && b.weight >= 0.0
                && b.sum_predicted.is_finite()
                && b.sum_measured.is_finite())
        });
        if bad {
            return Err(invalid("a bin holds a negative or non-finite sum".into()));
        }
        Ok(c)
    }

    /// Writes the calibration as JSON, crash-safe (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), SaveError> {
        // Plain numbers and maps with string keys: serialising fails only on a bug, and
        // then the old file must stay rather than be replaced by an empty one.
        let json = serde_json::to_vec_pretty(self).map_err(|e| SaveError {
            action: "serialise the calibration for",
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        crate::rollup::file::write_atomically(path, &json)
    }
}

fn bin_of(p: f64) -> usize {
    ((p / BIN_WIDTH) as usize).min(BINS - 1)
}

/// Weighted isotonic regression (non-decreasing) of `ys`.
fn pool_adjacent_violators(ys: &[f64], ws: &[f64]) -> Vec<f64> {
    // Blocks of (mean, weight, count).
    let mut blocks: Vec<(f64, f64, usize)> = Vec::with_capacity(ys.len());
    for (&y, &w) in ys.iter().zip(ws) {
        blocks.push((y, w, 1));
        while blocks.len() >= 2 {
            let (m2, w2, c2) = blocks[blocks.len() - 1];
            let (m1, w1, c1) = blocks[blocks.len() - 2];
            if m1 <= m2 {
                break;
            }
            blocks.truncate(blocks.len() - 2);
            blocks.push(((m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2));
        }
    }
    blocks
        .into_iter()
        .flat_map(|(m, _, c)| std::iter::repeat_n(m, c))
        .collect()
}

/// Piecewise-linear through the points, extended linearly past the ends.
fn interpolate(xs: &[f64], ys: &[f64], x: f64) -> f64 {
    let n = xs.len();
    let seg = (1..n).find(|&i| x <= xs[i]).unwrap_or(n - 1);
    let (x0, x1, y0, y1) = (xs[seg - 1], xs[seg], ys[seg - 1], ys[seg]);
    if x1 - x0 <= f64::EPSILON {
        return y1;
    }
    y0 + (y1 - y0) * (x - x0) / (x1 - x0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic generator: uniform in [0, 1).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn feed(c: &mut Calibration, rounds: usize, truth: impl Fn(f64) -> f64, rng: &mut Rng) {
        for _ in 0..rounds {
            let samples: Vec<CalibrationSample> = (0..20)
                .map(|_| {
                    let p = 100.0 * rng.next();
                    CalibrationSample {
                        layout: Layout::SameCpus,
                        predicted: p,
                        measured: (truth(p) + 4.0 * (rng.next() - 0.5)).clamp(0.0, 100.0),
                    }
                })
                .collect();
            c.observe(&samples);
        }
    }

    #[test]
    fn without_data_it_is_the_identity() {
        let c = Calibration::default();
        for p in [0.0, 3.0, 50.0, 97.0, 100.0] {
            assert!((c.apply(Layout::SameCpus, p) - p).abs() < 1e-9, "{p}");
        }
    }

    #[test]
    fn converges_to_a_linear_overestimate() {
        let mut c = Calibration::default();
        let mut rng = Rng(7);
        feed(&mut c, 500, |p| 0.5 * p, &mut rng);
        for p in [10.0, 30.0, 50.0, 70.0, 90.0] {
            let got = c.apply(Layout::SameCpus, p);
            assert!((got - 0.5 * p).abs() < 1.5, "p {p}: {got}");
        }
        // Another layout has no data: still the identity.
        assert!((c.apply(Layout::Overlapping, 40.0) - 40.0).abs() < 1e-9);
    }

    #[test]
    fn converges_to_a_saturating_curve_and_stays_monotone() {
        let truth = |p: f64| 100.0 * (1.0 - (-p / 30.0).exp());
        let mut c = Calibration::default();
        let mut rng = Rng(11);
        feed(&mut c, 500, truth, &mut rng);
        let mut last = -1.0;
        for p in (5..=95).step_by(10) {
            let p = f64::from(p);
            let got = c.apply(Layout::SameCpus, p);
            assert!((got - truth(p)).abs() < 4.0, "p {p}: {got} vs {}", truth(p));
            assert!(got >= last);
            last = got;
        }
    }

    #[test]
    fn forgets_an_old_relation() {
        let mut c = Calibration::new(50.0, 5.0);
        let mut rng = Rng(3);
        feed(&mut c, 300, |p| 0.2 * p, &mut rng);
        feed(&mut c, 600, |p| 0.8 * p, &mut rng);
        let got = c.apply(Layout::SameCpus, 50.0);
        assert!((got - 40.0).abs() < 1.5, "{got}");
    }

    #[test]
    fn pav_pools_violators() {
        assert_eq!(
            pool_adjacent_violators(&[1.0, 3.0, 2.0], &[1.0, 1.0, 1.0]),
            vec![1.0, 2.5, 2.5]
        );
        assert_eq!(
            pool_adjacent_violators(&[3.0, 1.0], &[1.0, 3.0]),
            vec![1.5, 1.5]
        );
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pair-calibration.json");
        let mut c = Calibration::default();
        let mut rng = Rng(5);
        feed(&mut c, 10, |p| p / 2.0, &mut rng);
        c.save(&path).expect("save");
        let back = Calibration::load(&path).expect("load");
        assert_eq!(back.rounds, 10);
        assert!(
            (back.apply(Layout::SameCpus, 60.0) - c.apply(Layout::SameCpus, 60.0)).abs() < 1e-9
        );
        std::fs::write(&path, b"{\"format\": 2}").expect("write");
        let e = Calibration::load(&path).unwrap_err().to_string();
        assert!(e.contains("pair-calibration.json"), "{e}");
    }
}
