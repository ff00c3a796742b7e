//! The threshold heuristic (docs/dataset.md, "Baselines"): what run-queue monitors do
//! without a model. The victim's share of time spent waiting for a CPU, times the share
//! of its preemptions that the aggressor caused, from the last tick of the raw window.
//! It needs no model file, so `--scorer heuristic` works on a host without one, and it
//! is the baseline the LSTM's evaluation is compared against: the Python evaluator
//! computes the same numbers.

use super::error::PredictError;
use super::{check_batch, PairScorer};

const V_CPU_CORES: &str = "v_cpu_cores";
const V_RQ_WAIT_RATIO: &str = "v_rq_wait_ratio";
const V_PREEMPTED_RATIO: &str = "v_preempted_ratio";
const PAIR_PREEMPTED_BY_RATIO: &str = "pair_preempted_by_ratio";

/// Scores pairs by the threshold heuristic; stateless.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeuristicScorer;

impl HeuristicScorer {
    pub fn new() -> Self {
        Self
    }

    /// The heuristic on one tick's raw features, 0-100.
    pub fn score_tick(
        v_cpu_cores: f32,
        v_rq_wait_ratio: f32,
        v_preempted_ratio: f32,
        pair_preempted_by_ratio: f32,
    ) -> f32 {
        let busy = v_cpu_cores + v_rq_wait_ratio;
        let steal = if busy > 0.0 {
            v_rq_wait_ratio / busy
        } else {
            0.0
        };
        let share = if v_preempted_ratio > 0.0 {
            (pair_preempted_by_ratio / v_preempted_ratio).min(1.0)
        } else {
            0.0
        };
        (100.0 * steal * share).clamp(0.0, 100.0)
    }
}

fn index_of(names: &[&str], name: &'static str) -> Result<usize, PredictError> {
    names
        .iter()
        .position(|n| *n == name)
        .ok_or(PredictError::MissingFeature {
            scorer: "heuristic",
            name,
        })
}

impl PairScorer for HeuristicScorer {
    fn score(
        &self,
        names: &[&str],
        raw: &[f32],
        n: usize,
        t: usize,
        f: usize,
    ) -> Result<Vec<f32>, PredictError> {
        check_batch(names, raw, n, t, f)?;
        let cols = [
            (V_CPU_CORES, index_of(names, V_CPU_CORES)?),
            (V_RQ_WAIT_RATIO, index_of(names, V_RQ_WAIT_RATIO)?),
            (V_PREEMPTED_RATIO, index_of(names, V_PREEMPTED_RATIO)?),
            (
                PAIR_PREEMPTED_BY_RATIO,
                index_of(names, PAIR_PREEMPTED_BY_RATIO)?,
            ),
        ];
        if n > 0 && t == 0 {
            return Err(PredictError::Shape {
                what: "windows of 0 ticks: the heuristic needs the last tick".to_string(),
            });
        }
        let mut scores = Vec::with_capacity(n);
        for window in 0..n {
            let last = &raw[(window * t + t - 1) * f..][..f];
            let mut v = [0.0f32; 4];
            for (slot, (name, col)) in v.iter_mut().zip(cols) {
                *slot = last[col];
                if !slot.is_finite() {
                    return Err(PredictError::NonFinite {
                        window,
                        tick: t - 1,
                        feature: name.to_string(),
                        value: *slot,
                    });
                }
            }
            scores.push(Self::score_tick(v[0], v[1], v[2], v[3]));
        }
        Ok(scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up feature order, different from the model's: the heuristic looks names up.
    const NAMES: [&str; 5] = [
        "pair_preempted_by_ratio",
        "v_cpu_cores",
        "noise",
        "v_preempted_ratio",
        "v_rq_wait_ratio",
    ];

    fn tick(cpu: f32, wait: f32, preempted: f32, by: f32) -> [f32; 5] {
        [by, cpu, 7.0, preempted, wait]
    }

    #[test]
    fn hand_computed_windows() {
        // Window 0, last tick: cpu 0.6, wait 0.2 -> steal 0.25; preempted 0.4 of which
        // the aggressor 0.1 -> share 0.25; score 6.25. Earlier ticks are ignored.
        // Window 1: steal 0.5 (1.0 / 2.0), share capped at 1 (0.5 / 0.3): 50.
        // Window 2: idle victim, nothing preempted: 0.
        // Window 3: waiting but never preempted by anyone: share 0 -> 0.
        // Window 4: all waiting (cpu 0), aggressor the only preemptor: 100.
        let windows = [
            [tick(9.0, 9.0, 9.0, 9.0), tick(0.6, 0.2, 0.4, 0.1)],
            [tick(0.0, 0.0, 0.0, 0.0), tick(1.0, 1.0, 0.3, 0.5)],
            [tick(0.5, 0.5, 0.5, 0.5), tick(0.0, 0.0, 0.0, 0.0)],
            [tick(0.5, 0.5, 0.5, 0.5), tick(0.5, 0.5, 0.0, 0.0)],
            [tick(0.5, 0.5, 0.5, 0.5), tick(0.0, 0.8, 0.2, 0.2)],
        ];
        let raw: Vec<f32> = windows.iter().flatten().flatten().copied().collect();
        let scores = HeuristicScorer::new()
            .score(&NAMES, &raw, windows.len(), 2, NAMES.len())
            .expect("scores");
        let expected = [6.25, 50.0, 0.0, 0.0, 100.0];
        for (i, (s, e)) in scores.iter().zip(expected).enumerate() {
            assert!((s - e).abs() < 1e-4, "window {i}: {s} != {e}");
        }
        assert_eq!(scores.len(), expected.len());
    }

    #[test]
    fn missing_feature_is_named() {
        let names = ["v_cpu_cores", "v_rq_wait_ratio", "v_preempted_ratio"];
        let e = HeuristicScorer::new()
            .score(&names, &[0.0; 3], 1, 1, 3)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"pair_preempted_by_ratio\"") && e.contains("heuristic"),
            "{e}"
        );
    }

    #[test]
    fn non_finite_last_tick_is_named() {
        let raw: Vec<f32> = tick(0.5, f32::NAN, 0.1, 0.1).to_vec();
        let e = HeuristicScorer::new()
            .score(&NAMES, &raw, 1, 1, NAMES.len())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"v_rq_wait_ratio\"") && e.contains("NaN"),
            "{e}"
        );
    }

    #[test]
    fn empty_batch_and_bad_lengths() {
        let s = HeuristicScorer::new();
        assert!(s
            .score(&NAMES, &[], 0, 6, NAMES.len())
            .expect("empty")
            .is_empty());
        assert!(s.score(&NAMES, &[0.0; 4], 1, 1, NAMES.len()).is_err());
        assert!(s.score(&NAMES, &[0.0; 5], 1, 1, 4).is_err());
    }
}
