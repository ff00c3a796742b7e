//! Scoring inside the tick loop: every tick's samples go into what the scorer reads
//! (each VM's CPU accounts for the nowcast, the feature windows for the models), and
//! every `score.interval` all ordered pairs are scored in one round.
//!
//! The nowcast reads the last ticks of each VM and scores every pair whose aggressor
//! took something from the victim. A model was trained on model ticks of
//! `tick_seconds`; the collector may tick faster (its interval must divide the model
//! tick), and the windows aggregate its samples back into model ticks, so the model
//! sees what it was trained on whatever the collector's interval.

use std::time::{Duration, Instant};

use interference_forecast::pairs::PairForecast;
use thiserror::Error;

use crate::export::prometheus::ScoreMetrics;
use crate::features::{CpuAccounts, FeatureError, FeatureWindows, PairWindows, FEATURE_NAMES};
use crate::predict::{
    contention_scores, ContentionScore, DirectedScore, Nowcast, NowcastScore, PairScorer, Scorer,
    WITHOUT_PMU,
};
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
    /// The nowcast's two windows of each direction it scored (empty for the models).
    pub nowcast: Vec<NowcastScore>,
    /// Each VM's contention dimensions its scores cannot see.
    pub unobservable: Vec<(String, &'static str)>,
    /// VMs present but not yet scored because their window is not full.
    pub warming_up: Vec<String>,
    /// With forecasting on: every ordered pair's forecast score and what explains it
    /// (already folded into `contention`).
    pub forecasts: Vec<PairForecast>,
    /// Feature assembly plus inference.
    pub duration: Duration,
}

pub struct Scoring {
    input: Input,
    scorer: Scorer,
    /// Collector ticks per scoring round, and ticks since the last round.
    every: u64,
    since: u64,
    metrics: ScoreMetrics,
}

/// What the scorer reads, fed every tick.
enum Input {
    Accounts {
        nowcast: Nowcast,
        accounts: CpuAccounts,
    },
    Windows {
        windows: FeatureWindows,
        batch: PairWindows,
    },
}

impl Scoring {
    /// `tick` is the collector's interval, `every` the scoring interval (a multiple).
    pub fn new(scorer: Scorer, tick: Duration, every: Duration) -> Result<Self, ScoringError> {
        let tick_ms = tick.as_millis();
        let every_ms = every.as_millis();
        if tick_ms == 0 || every_ms == 0 || !every_ms.is_multiple_of(tick_ms) {
            return Err(ScoringError::Interval { every, tick });
        }
        let input = match &scorer {
            Scorer::Nowcast { smoothing } => {
                let nowcast = Nowcast::new(tick, *smoothing);
                Input::Accounts {
                    accounts: nowcast.accounts(),
                    nowcast,
                }
            }
            _ => {
                // The heuristic has no trained tick: its one "model tick" is the
                // scoring interval.
                let model_tick = scorer
                    .tick_seconds()
                    .map(|s| s as f64)
                    .unwrap_or(every.as_secs_f64());
                Input::Windows {
                    windows: FeatureWindows::for_model(scorer.window(), model_tick, tick)?,
                    batch: PairWindows::default(),
                }
            }
        };
        let (model, version) = match &scorer {
            Scorer::Lstm(m) => (m.sidecar().name.clone(), m.sidecar().version.clone()),
            Scorer::Heuristic(_) | Scorer::Nowcast { .. } => (String::new(), String::new()),
        };
        Ok(Self {
            input,
            every: (every_ms / tick_ms) as u64,
            since: 0,
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
        match &mut self.input {
            Input::Accounts { accounts, .. } => accounts.push_tick(samples),
            Input::Windows { windows, .. } => windows.push_tick(samples),
        }
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
                self.metrics.unobservable = r.unobservable.clone();
                self.metrics.duration_seconds = Some(r.duration.as_secs_f64());
            }
            Err(_) => {
                self.metrics.failures += 1;
                self.metrics.contention.clear();
                self.metrics.directed.clear();
                self.metrics.unobservable.clear();
            }
        }
        Some(result)
    }

    fn round(
        &mut self,
        samples: &[VmSample],
        started: Instant,
    ) -> Result<ScoreRound, crate::predict::PredictError> {
        let mut unobservable = Vec::new();
        let (directed, nowcast, warming_up) = match &mut self.input {
            Input::Accounts { nowcast, accounts } => {
                for vm in accounts.vms() {
                    if !accounts.counters_observed(vm) {
                        unobservable.extend(WITHOUT_PMU.iter().map(|d| (vm.to_owned(), *d)));
                    }
                }
                let scores = nowcast.score(accounts);
                let directed = scores
                    .iter()
                    .map(|n| DirectedScore {
                        victim: n.victim.clone(),
                        aggressor: n.aggressor.clone(),
                        slowdown: n.smoothed,
                        unobservable: n.unobservable.clone(),
                    })
                    .collect();
                (directed, scores, Vec::new())
            }
            Input::Windows { windows, batch } => {
                windows.pairs_into(batch);
                let b = &*batch;
                let directed =
                    self.scorer
                        .score_pairs(&b.pairs, &FEATURE_NAMES, &b.data, b.t, b.f)?;
                let ready = windows.ready_vms();
                let warming_up = samples
                    .iter()
                    .map(|s| s.vm.clone())
                    .filter(|vm| !ready.iter().any(|r| r == vm))
                    .collect();
                (directed, Vec::new(), warming_up)
            }
        };
        let contention = contention_scores(&directed);
        Ok(ScoreRound {
            timestamp_ms: samples.iter().map(|s| s.timestamp_ms).max().unwrap_or(0),
            contention,
            directed,
            nowcast,
            unobservable,
            warming_up,
            forecasts: Vec::new(),
            duration: started.elapsed(),
        })
    }
}
