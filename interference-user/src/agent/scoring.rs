//! Scoring inside the tick loop: every tick's samples go into what the scorer reads
//! (each VM's CPU accounts for the nowcast, the feature windows for the models), and
//! every `score.interval` all ordered pairs are scored in one round.
//!
//! The nowcast reads the last ticks of each VM and scores every pair whose aggressor
//! took something from the victim. A model was trained on model ticks of
//! `tick_seconds`; the collector may tick faster (its interval must divide the model
//! tick), and the windows aggregate its samples back into model ticks, so the model
//! sees what it was trained on whatever the collector's interval.
//!
//! With a controller, the scorer can change between ticks: a model bundle acts in
//! place of the host's own scorer (kept aside, for a rollback to the built-in), and
//! a bundle in shadow scores the same ticks beside it, from feature windows of its
//! own, its scores reported and never acted on.

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
    /// The shadow model's pair scores of the same round (empty without one, or while
    /// its windows fill).
    pub shadow: Vec<ContentionScore>,
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
    tick: Duration,
    interval: Duration,
    /// The bundle acting (its sha256) and, meanwhile, the host's own scorer.
    bundle: Option<(String, Scorer)>,
    shadow: Option<Shadow>,
}

/// A model scoring beside the acting one.
struct Shadow {
    sha: String,
    scorer: Scorer,
    windows: FeatureWindows,
    batch: PairWindows,
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

/// What `scorer` reads: each VM's CPU accounts (the nowcast) or feature windows.
fn input_for(scorer: &Scorer, tick: Duration, every: Duration) -> Result<Input, ScoringError> {
    match scorer {
        Scorer::Nowcast { smoothing } => {
            let nowcast = Nowcast::new(tick, *smoothing);
            Ok(Input::Accounts {
                accounts: nowcast.accounts(),
                nowcast,
            })
        }
        _ => input_windows(scorer, tick, every),
    }
}

fn input_windows(scorer: &Scorer, tick: Duration, every: Duration) -> Result<Input, ScoringError> {
    if matches!(scorer, Scorer::Nowcast { .. }) {
        return input_for(scorer, tick, every);
    }
    // The heuristic has no trained tick: its one "model tick" is the scoring interval.
    let model_tick = scorer
        .tick_seconds()
        .map(|s| s as f64)
        .unwrap_or(every.as_secs_f64());
    Ok(Input::Windows {
        windows: FeatureWindows::for_model(scorer.window(), model_tick, tick)?,
        batch: PairWindows::default(),
    })
}

/// The scorer's labels in `interference_scorer_info`.
fn describe(metrics: &mut ScoreMetrics, scorer: &Scorer) {
    let (model, version) = match scorer {
        Scorer::Lstm(m) => (m.sidecar().name.clone(), m.sidecar().version.clone()),
        Scorer::Heuristic(_) | Scorer::Nowcast { .. } => (String::new(), String::new()),
    };
    metrics.scorer = scorer.kind().to_string();
    metrics.model = model;
    metrics.version = version;
}

impl Scoring {
    /// `tick` is the collector's interval, `every` the scoring interval (a multiple).
    pub fn new(scorer: Scorer, tick: Duration, every: Duration) -> Result<Self, ScoringError> {
        let tick_ms = tick.as_millis();
        let every_ms = every.as_millis();
        if tick_ms == 0 || every_ms == 0 || !every_ms.is_multiple_of(tick_ms) {
            return Err(ScoringError::Interval { every, tick });
        }
        let input = input_for(&scorer, tick, every)?;
        let mut metrics = ScoreMetrics::default();
        describe(&mut metrics, &scorer);
        Ok(Self {
            input,
            every: (every_ms / tick_ms) as u64,
            since: 0,
            metrics,
            scorer,
            tick,
            interval: every,
            bundle: None,
            shadow: None,
        })
    }

    /// Acts with a model bundle (`Some((sha256, scorer))`) or goes back to the host's
    /// own scorer (`None`), from the next round on. A scorer that reads other inputs
    /// (another window, another model tick) starts filling them: its pairs warm up.
    pub fn act_with(&mut self, model: Option<(String, Scorer)>) -> Result<(), ScoringError> {
        let (next, bundle) = match (model, self.bundle.take()) {
            (Some((sha, scorer)), Some((_, host))) => (scorer, Some((sha, host))),
            (Some((sha, scorer)), None) => {
                let host = std::mem::replace(
                    &mut self.scorer,
                    Scorer::Nowcast {
                        smoothing: Duration::ZERO,
                    },
                );
                (scorer, Some((sha, host)))
            }
            (None, Some((_, host))) => (host, None),
            (None, None) => return Ok(()),
        };
        let same_input = match (&self.input, &next) {
            (Input::Accounts { .. }, Scorer::Nowcast { .. }) => true,
            (Input::Windows { .. }, Scorer::Nowcast { .. }) | (Input::Accounts { .. }, _) => false,
            (Input::Windows { .. }, _) => {
                next.window() == self.scorer.window()
                    && next.tick_seconds() == self.scorer.tick_seconds()
                    && !matches!(self.scorer, Scorer::Nowcast { .. })
            }
        };
        if !same_input {
            self.input = input_for(&next, self.tick, self.interval)?;
        }
        describe(&mut self.metrics, &next);
        self.scorer = next;
        self.bundle = bundle;
        Ok(())
    }

    /// Scores with a model in shadow beside the acting one (`None`: no shadow).
    pub fn shadow_with(&mut self, model: Option<(String, Scorer)>) -> Result<(), ScoringError> {
        self.shadow = match model {
            None => None,
            Some((sha, scorer)) => {
                let Input::Windows { windows, batch } =
                    input_windows(&scorer, self.tick, self.interval)?
                else {
                    // The nowcast needs no shadow: it is the default everywhere.
                    return Ok(());
                };
                Some(Shadow {
                    sha,
                    scorer,
                    windows,
                    batch,
                })
            }
        };
        Ok(())
    }

    /// The sha256 of the bundle acting and of the one in shadow (None: the host's own
    /// scorer; no shadow).
    pub fn model_shas(&self) -> (Option<&str>, Option<&str>) {
        (
            self.bundle.as_ref().map(|(sha, _)| sha.as_str()),
            self.shadow.as_ref().map(|s| s.sha.as_str()),
        )
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
        if let Some(s) = self.shadow.as_mut() {
            s.windows.push_tick(samples);
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
                for vm in accounts.vm_ids() {
                    if !accounts.counters_observed(vm) {
                        let name = accounts.name(vm);
                        unobservable.extend(WITHOUT_PMU.iter().map(|d| (name.to_owned(), *d)));
                    }
                }
                let scores = nowcast.score(accounts);
                let directed = scores
                    .iter()
                    .map(|n| DirectedScore {
                        victim: n.victim.to_string(),
                        aggressor: n.aggressor.to_string(),
                        slowdown: n.smoothed,
                        unobservable: n.unobservable.to_vec(),
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
        let shadow = match self.shadow.as_mut() {
            Some(s) => {
                s.windows.pairs_into(&mut s.batch);
                let b = &s.batch;
                match s
                    .scorer
                    .score_pairs(&b.pairs, &FEATURE_NAMES, &b.data, b.t, b.f)
                {
                    Ok(directed) => contention_scores(&directed),
                    Err(e) => {
                        tracing::warn!("the shadow model {} failed this round: {e}", s.sha);
                        Vec::new()
                    }
                }
            }
            None => Vec::new(),
        };
        Ok(ScoreRound {
            shadow,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::{LstmScorer, ScorerKind};

    fn lstm() -> Scorer {
        LstmScorer::builtin().expect("the built-in model").into()
    }

    #[test]
    fn a_bundle_acts_in_place_of_the_hosts_scorer_and_gives_it_back() {
        let tick = Duration::from_secs(1);
        let own = Scorer::Nowcast {
            smoothing: Duration::from_secs(5),
        };
        let mut s = Scoring::new(own, tick, Duration::from_secs(5)).unwrap();
        assert_eq!(s.model_shas(), (None, None));
        s.act_with(Some(("a".into(), lstm()))).unwrap();
        assert_eq!(s.scorer().kind(), ScorerKind::Lstm);
        assert!(matches!(s.input, Input::Windows { .. }));
        assert_eq!(s.metrics().scorer, "lstm");
        // Another bundle: the host's scorer stays aside, not the first bundle.
        s.act_with(Some(("b".into(), lstm()))).unwrap();
        s.shadow_with(Some(("c".into(), lstm()))).unwrap();
        assert_eq!(s.model_shas(), (Some("b"), Some("c")));
        s.act_with(None).unwrap();
        assert_eq!(s.scorer().kind(), ScorerKind::Nowcast);
        assert!(matches!(s.input, Input::Accounts { .. }));
        assert_eq!(s.metrics().scorer, "nowcast");
        assert_eq!(s.model_shas(), (None, Some("c")));
        s.shadow_with(None).unwrap();
        assert_eq!(s.model_shas(), (None, None));
    }
}
