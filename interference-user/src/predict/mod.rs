//! The prediction stage: raw feature windows of ordered VM pairs in, predicted
//! slowdowns and Contention Scores out (models/README.md;
//! docs/dataset.md for the features and the heuristic).
//!
//! The input is plain data: feature names, a row-major `[n, t, f]` slice of raw
//! (un-normalised) values, and the `(victim, aggressor)` of each window. The stage knows
//! nothing of how features are computed; it only refuses windows whose feature names are
//! not the ones its model was trained on.
//!
//! | module      | job                                                              |
//! |-------------|------------------------------------------------------------------|
//! | (core)      | the model's JSON sidecar (`interference_core::sidecar`)          |
//! | `graph`     | checks on the ONNX graph; zero initial states for tract          |
//! | `lstm`      | load the ONNX model once with tract, score batches of windows    |
//! | `golden`    | a model reproduces its golden vectors before it is used          |
//! | `nowcast`   | the default score: the share of runnable time a neighbour took   |
//! | `heuristic` | the threshold baseline, no model needed                          |
//! | `score`     | directed slowdowns -> Contention Score per unordered pair        |
//! | `error`     | `SidecarError`, `ModelError`, `PredictError`                     |

mod builtin;
mod error;
mod golden;
mod graph;
mod heuristic;
mod lstm;
mod nowcast;
mod score;

use std::fmt;
use std::str::FromStr;

pub use error::{ModelError, PredictError, SidecarError};
pub use golden::{check_golden, GoldenError, GOLDEN_TOLERANCE};
pub use heuristic::HeuristicScorer;
pub use interference_core::sidecar::{
    self, Architecture, Dim, Normalisation, Sidecar, TensorSpec, SIDECAR_FORMAT,
};
pub use lstm::{LstmScorer, DEFAULT_MAX_BATCH};
pub use nowcast::{share_taken, Nowcast, NowcastScore, DEFAULT_SMOOTHING, WITHOUT_PMU};
pub use score::{
    contention_scores, directed_scores, with_forecasts, ContentionScore, DirectedForecast,
    DirectedScore, ForecastPart,
};

/// The seam between the pipeline and whatever predicts: the two scorers implement it,
/// and tests of later stages can fake it.
pub trait PairScorer {
    /// Predicted slowdowns (0-100), one per window, of `n` raw windows `[n, t, f]`
    /// (row-major) whose last axis holds the features `names`, in that order.
    fn score(
        &self,
        names: &[&str],
        raw: &[f32],
        n: usize,
        t: usize,
        f: usize,
    ) -> Result<Vec<f32>, PredictError>;

    /// [`PairScorer::score`] with each window's `(victim, aggressor)` attached.
    fn score_pairs(
        &self,
        pairs: &[(String, String)],
        names: &[&str],
        raw: &[f32],
        t: usize,
        f: usize,
    ) -> Result<Vec<DirectedScore>, PredictError> {
        let slowdowns = self.score(names, raw, pairs.len(), t, f)?;
        directed_scores(pairs, &slowdowns)
    }
}

/// Which scorer `--scorer` and `[score] scorer` select.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ScorerKind {
    /// The attributed nowcast: the share of each VM's runnable time each neighbour
    /// took, from the scheduler's preemption matrix (no model).
    #[default]
    Nowcast,
    /// The LSTM (ONNX, run by tract): predicts the slowdown of the next horizon.
    Lstm,
    /// The reactive baseline: run-queue steal attributed by preemptions (docs/dataset.md).
    Heuristic,
}

impl ScorerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nowcast => "nowcast",
            Self::Lstm => "lstm",
            Self::Heuristic => "heuristic",
        }
    }
}

impl fmt::Display for ScorerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ScorerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nowcast" => Ok(Self::Nowcast),
            "lstm" => Ok(Self::Lstm),
            "heuristic" => Ok(Self::Heuristic),
            other => Err(format!(
                "unknown scorer {other:?}: expected nowcast, lstm or heuristic"
            )),
        }
    }
}

/// The scorer the agent runs.
#[derive(Debug)]
pub enum Scorer {
    /// Over the ticks of the last `smoothing`.
    Nowcast {
        smoothing: std::time::Duration,
    },
    Lstm(Box<LstmScorer>),
    Heuristic(HeuristicScorer),
}

impl Scorer {
    pub fn kind(&self) -> ScorerKind {
        match self {
            Self::Nowcast { .. } => ScorerKind::Nowcast,
            Self::Lstm(_) => ScorerKind::Lstm,
            Self::Heuristic(_) => ScorerKind::Heuristic,
        }
    }

    /// Model ticks per window the scorer needs: the sidecar's T for the LSTM; the
    /// heuristic reads only the last tick.
    pub fn window(&self) -> usize {
        match self {
            Self::Lstm(m) => m.sidecar().window,
            Self::Heuristic(_) | Self::Nowcast { .. } => 1,
        }
    }

    /// Seconds per model tick, when the scorer was trained on a fixed one.
    pub fn tick_seconds(&self) -> Option<u64> {
        match self {
            Self::Lstm(m) => Some(m.sidecar().tick_seconds),
            Self::Heuristic(_) | Self::Nowcast { .. } => None,
        }
    }

    /// One line for the log: which scorer, which model.
    pub fn describe(&self) -> String {
        match self {
            Self::Lstm(m) => {
                let s = m.sidecar();
                format!(
                    "lstm: {} {} from {} (T = {} x {} s, horizon {}, {} features)",
                    s.name,
                    s.version,
                    m.origin(),
                    s.window,
                    s.tick_seconds,
                    s.horizon,
                    s.features.len()
                )
            }
            Self::Heuristic(_) => "heuristic: run-queue wait x preemption share".to_string(),
            Self::Nowcast { smoothing } => format!(
                "nowcast: share of each VM's runnable time each neighbour took, over {}",
                humantime::format_duration(*smoothing)
            ),
        }
    }
}

impl From<LstmScorer> for Scorer {
    fn from(m: LstmScorer) -> Self {
        Self::Lstm(Box::new(m))
    }
}

impl From<HeuristicScorer> for Scorer {
    fn from(h: HeuristicScorer) -> Self {
        Self::Heuristic(h)
    }
}

impl PairScorer for Scorer {
    fn score(
        &self,
        names: &[&str],
        raw: &[f32],
        n: usize,
        t: usize,
        f: usize,
    ) -> Result<Vec<f32>, PredictError> {
        match self {
            Self::Lstm(m) => m.score(names, raw, n, t, f),
            Self::Heuristic(h) => h.score(names, raw, n, t, f),
            Self::Nowcast { .. } => Err(PredictError::NotAWindowScorer),
        }
    }
}

/// The batch is what it says: `f` names, `n * t * f` values.
pub(crate) fn check_batch(
    names: &[&str],
    raw: &[f32],
    n: usize,
    t: usize,
    f: usize,
) -> Result<(), PredictError> {
    if names.len() != f {
        return Err(PredictError::Shape {
            what: format!("{} feature names for f = {f}", names.len()),
        });
    }
    let expected = n.checked_mul(t).and_then(|nt| nt.checked_mul(f));
    if expected != Some(raw.len()) {
        return Err(PredictError::Shape {
            what: format!("{} values for {n} windows of [{t}, {f}]", raw.len()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scorer_kind_parses_and_prints() {
        for k in [ScorerKind::Nowcast, ScorerKind::Lstm, ScorerKind::Heuristic] {
            assert_eq!(k.to_string().parse::<ScorerKind>(), Ok(k));
        }
        assert!("gru"
            .parse::<ScorerKind>()
            .unwrap_err()
            .contains("nowcast, lstm or heuristic"));
    }

    #[test]
    fn heuristic_scorer_scores_pairs() {
        let scorer = Scorer::from(HeuristicScorer::new());
        assert_eq!(scorer.kind(), ScorerKind::Heuristic);
        assert_eq!(scorer.window(), 1);
        let names = [
            "v_cpu_cores",
            "v_rq_wait_ratio",
            "v_preempted_ratio",
            "pair_preempted_by_ratio",
        ];
        let pairs = vec![
            ("a".to_string(), "b".to_string()),
            ("b".to_string(), "a".to_string()),
        ];
        let raw = [0.5, 0.5, 0.2, 0.1, 0.9, 0.1, 0.2, 0.2];
        let ds = scorer
            .score_pairs(&pairs, &names, &raw, 1, 4)
            .expect("scores");
        assert_eq!(ds.len(), 2);
        assert!((ds[0].slowdown - 25.0).abs() < 1e-4, "{ds:?}");
        assert!((ds[1].slowdown - 10.0).abs() < 1e-4, "{ds:?}");
        let cs = contention_scores(&ds);
        assert_eq!((cs[0].victim.as_str(), cs[0].score), ("a", ds[0].slowdown));
    }

    #[test]
    fn check_batch_refuses_inconsistent_shapes() {
        assert!(check_batch(&["a", "b"], &[0.0; 12], 2, 3, 2).is_ok());
        assert!(check_batch(&["a"], &[0.0; 12], 2, 3, 2).is_err());
        assert!(check_batch(&["a", "b"], &[0.0; 11], 2, 3, 2).is_err());
        assert!(check_batch(&["a", "b"], &[], usize::MAX, 3, 2).is_err());
    }
}
