//! Scoring inside the tick loop: every tick's samples go into the feature windows, and
//! every `score.interval` all ordered pairs with a full window are scored in one batch.
//!
//! The model was trained on model ticks of `tick_seconds`; the collector may tick
//! faster (its interval must divide the model tick), and the windows aggregate its
//! samples back into model ticks, so the model sees what it was trained on whatever
//! the collector's interval.

use std::time::{Duration, Instant};

use thiserror::Error;

use crate::export::prometheus::ScoreMetrics;
use crate::features::{FeatureError, FeatureWindows, PairWindows, FEATURE_NAMES};
use crate::predict::{contention_scores, ContentionScore, DirectedScore, PairScorer, Scorer};
use crate::telemetry::VmSample;

#[derive(Debug, Error)]
pub enum ScoringError {
    #[error(transparent)]
    Windows(#[from] FeatureError),
    #[error(
        "score interval {} is not a multiple of the collector interval {}",
        humantime::format_duration(*every),
        humantime::format_duration(*tick)
    )]
    Interval { every: Duration, tick: Duration },
}

/// One scoring round's results (plain data for the outputs and the policy).
#[derive(Debug, Clone)]
pub struct ScoreRound {
    /// End of the window: the newest sample's timestamp.
    pub timestamp_ms: u64,
    /// Unordered pairs, highest score first.
    pub contention: Vec<ContentionScore>,
    /// Every scored direction.
    pub directed: Vec<DirectedScore>,
    /// VMs present but not yet scored because their window is not full.
    pub warming_up: Vec<String>,
    /// Feature assembly plus inference.
    pub duration: Duration,
}

pub struct Scoring {
    windows: FeatureWindows,
    scorer: Scorer,
    /// Collector ticks per scoring round, and ticks since the last round.
    every: u64,
    since: u64,
    batch: PairWindows,
    metrics: ScoreMetrics,
}

impl Scoring {
    /// `tick` is the collector's interval, `every` the scoring interval (a multiple).
    pub fn new(scorer: Scorer, tick: Duration, every: Duration) -> Result<Self, ScoringError> {
        let tick_ms = tick.as_millis();
        let every_ms = every.as_millis();
        if tick_ms == 0 || every_ms == 0 || !every_ms.is_multiple_of(tick_ms) {
            return Err(ScoringError::Interval { every, tick });
        }
        // The heuristic has no trained tick: its one "model tick" is the scoring interval.
        let model_tick = scorer
            .tick_seconds()
            .map(|s| s as f64)
            .unwrap_or(every.as_secs_f64());
        let windows = FeatureWindows::for_model(scorer.window(), model_tick, tick)?;
        let (model, version) = match &scorer {
            Scorer::Lstm(m) => (m.sidecar().name.clone(), m.sidecar().version.clone()),
            Scorer::Heuristic(_) => (String::new(), String::new()),
        };
        Ok(Self {
            windows,
            every: (every_ms / tick_ms) as u64,
            since: 0,
            batch: PairWindows::default(),
            metrics: ScoreMetrics {
                scorer: scorer.kind().to_string(),
                model,
                version,
                ..Default::default()
            },
            scorer,
        })
    }

    pub fn scorer(&self) -> &Scorer {
        &self.scorer
    }

    /// The metrics families of the last round, for the textfile.
    pub fn metrics(&self) -> &ScoreMetrics {
        &self.metrics
    }

    /// Feeds one tick; scores when a round is due. A failed round is counted in the
    /// metrics, its scores left out, and the error returned for the caller to log.
    pub fn push(
        &mut self,
        samples: &[VmSample],
    ) -> Option<Result<ScoreRound, crate::predict::PredictError>> {
        self.windows.push_tick(samples);
        self.since += 1;
        if self.since < self.every {
            return None;
        }
        self.since = 0;
        let started = Instant::now();
        let result = self.round(samples, started);
        match &result {
            Ok(r) => {
                self.metrics.rounds += 1;
                self.metrics.contention = r.contention.clone();
                self.metrics.directed = r.directed.clone();
                self.metrics.duration_seconds = Some(r.duration.as_secs_f64());
            }
            Err(_) => {
                self.metrics.failures += 1;
                self.metrics.contention.clear();
                self.metrics.directed.clear();
            }
        }
        Some(result)
    }

    fn round(
        &mut self,
        samples: &[VmSample],
        started: Instant,
    ) -> Result<ScoreRound, crate::predict::PredictError> {
        self.windows.pairs_into(&mut self.batch);
        let b = &self.batch;
        let directed = self
            .scorer
            .score_pairs(&b.pairs, &FEATURE_NAMES, &b.data, b.t, b.f)?;
        let contention = contention_scores(&directed);
        let ready = self.windows.ready_vms();
        let warming_up = samples
            .iter()
            .map(|s| s.vm.clone())
            .filter(|vm| !ready.iter().any(|r| r == vm))
            .collect();
        Ok(ScoreRound {
            timestamp_ms: samples.iter().map(|s| s.timestamp_ms).max().unwrap_or(0),
            contention,
            directed,
            warming_up,
            duration: started.elapsed(),
        })
    }
}
