//! Forecasting inside the tick loop (issue 16, `[forecast]`): every tick's demand goes
//! into each VM's rollups; at the end of each forecaster step, one batched model run
//! forecasts every VM's demand; every scoring round maps the forecast demands onto the
//! host's CPUs (fair share per cpuset, calibrated on the nowcast) and folds the forecast
//! pair scores into the round's Contention Scores, which the policy then acts on.
//!
//! The pair mapping runs with every VM at the default cpu.weight: the forecast answers
//! "will this pair contend if nothing is done", so a weight the agent set does not
//! argue its own rollback. The same mapping from the *current* demands is the
//! "realised" score a forecast-started mitigation is checked against.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use interference_forecast::pairs::{
    forecast_pairs, Calibration, NowShares, PairForecast, PairNowcast, VmPlacement,
};
use interference_forecast::{
    demand_percent, ClockError, DemandModel, ForecastEngine, Forecaster, Horizon, HorizonError,
    ModelError, SubStep,
};
use thiserror::Error;

use super::ScoreRound;
use crate::config::ForecastConfig;
use crate::export::prometheus::ForecastMetrics;
use crate::inventory::Vm;
use crate::predict::{with_forecasts, DirectedForecast};
use crate::telemetry::VmSample;

/// The file of the pair calibration in the state directory.
pub const CALIBRATION_FILE: &str = "pair-calibration.json";

/// The cgroup v2 default: the weight every VM is mapped with (see the module doc).
const NEUTRAL_WEIGHT: u32 = 100;

#[derive(Debug, Error)]
pub enum ForecastingError {
    #[error("loading the built-in demand model")]
    Model(#[from] ModelError),
    #[error(transparent)]
    Clock(#[from] ClockError),
    #[error("[forecast] horizon")]
    Horizon(#[from] HorizonError),
    #[error("creating the forecast state directory {path}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct Forecasting {
    engine: ForecastEngine,
    calibration: Calibration,
    calibration_path: PathBuf,
    horizon: Duration,
    column: usize,
    /// Each VM's forecast demand at the horizon, percent of its allocated cores, from
    /// the last closed step.
    latest: HashMap<String, f64>,
    /// The host's online CPUs: the cpuset of a VM whose cgroup has none.
    host_cpus: Vec<u32>,
    metrics: ForecastMetrics,
    /// Each VM's forecast of the next step: (that step, demand percent).
    next_step: HashMap<String, (i64, f64)>,
    /// |forecast - measured| of the last closed step, per VM measured in it.
    step_errors: BTreeMap<String, f64>,
}

impl Forecasting {
    /// The forecaster with the built-in model, its rollups and calibration read from
    /// `config.state_dir` (what cannot be read starts afresh, logged).
    pub fn open(config: &ForecastConfig, host_cpus: Vec<u32>) -> Result<Self, ForecastingError> {
        let model = DemandModel::builtin()?;
        let clock = config.clock(model.sidecar().clock.day_steps)?;
        let column =
            Horizon::from_duration(config.horizon).column(config.step, SubStep::NextStep)?;
        std::fs::create_dir_all(&config.state_dir).map_err(|source| {
            ForecastingError::StateDir {
                path: config.state_dir.clone(),
                source,
            }
        })?;
        let (engine, problems) =
            ForecastEngine::open(clock, &config.state_dir, Forecaster::new(model));
        for p in problems {
            tracing::warn!("demand rollups: {p}");
        }
        // Steps shorter than a minute (the lab's compressed days) save every minute.
        let every = (60.0 / config.step.as_secs_f64()).ceil().max(1.0) as u32;
        let calibration_path = config.state_dir.join(CALIBRATION_FILE);
        let calibration = load_calibration(&calibration_path);
        Ok(Self {
            engine: engine.save_every(every),
            calibration,
            calibration_path,
            horizon: config.horizon,
            column,
            latest: HashMap::new(),
            next_step: HashMap::new(),
            step_errors: BTreeMap::new(),
            host_cpus,
            metrics: ForecastMetrics {
                horizon_seconds: config.horizon.as_secs_f64(),
                ..ForecastMetrics::default()
            },
        })
    }

    pub fn metrics(&self) -> &ForecastMetrics {
        &self.metrics
    }

    /// The one-step-ahead error of the last round, per VM (percent points of its
    /// allocated cores), with the round's number: what the fleet's rollouts compare.
    pub fn step_errors(&self) -> (u64, &BTreeMap<String, f64>) {
        (self.metrics.rounds, &self.step_errors)
    }

    /// Every tick: each VM's demand into its rollups; at a step's end, a round.
    pub fn tick(&mut self, vms: &[Vm], samples: &[VmSample], now: SystemTime) {
        for s in samples {
            let Some(vcpus) = allocated_cores(vms, s, &self.host_cpus) else {
                continue;
            };
            let (Some(cpu), true) = (s.cpu.as_ref(), s.interval_seconds > 0.0) else {
                continue;
            };
            let demand = demand_percent(
                seconds_to_ns(cpu.usage_seconds),
                seconds_to_ns(s.runqueue.wait_seconds),
                seconds_to_ns(s.interval_seconds),
                vcpus,
            );
            let at = UNIX_EPOCH + Duration::from_millis(s.timestamp_ms);
            self.engine.record_tick(&s.vm, at, demand);
        }
        let running = samples.iter().map(|s| s.vm.as_str());
        let Some(end) = self.engine.end_steps(now, running) else {
            return;
        };
        self.metrics.rounds += 1;
        // The previous round's forecast of this step against what the step measured.
        let closed = end.closed.step;
        let store = self.engine.store();
        self.step_errors = self
            .next_step
            .iter()
            .filter(|(_, (step, _))| *step == closed)
            .filter_map(|(vm, (_, forecast))| {
                let r = store.get(vm)?;
                let measured = r.value(0).filter(|_| r.last_seen_step() == closed)?;
                Some((vm.clone(), (f64::from(measured) - forecast).abs()))
            })
            .collect();
        self.next_step = end
            .round
            .forecasts
            .iter()
            .map(|f| (f.vm.clone(), (closed + 1, f.demand[0])))
            .collect();
        if let Some(e) = &end.round.run_error {
            self.metrics.run_failures += 1;
            tracing::warn!("demand forecast: {e}; every VM forecast at its level");
        }
        self.metrics.vms = end.round.forecasts.len();
        self.metrics.vms_at_level = end
            .round
            .forecasts
            .iter()
            .filter(|f| f.scaled_output.is_none())
            .count();
        self.latest = end
            .round
            .forecasts
            .iter()
            .map(|f| (f.vm.clone(), f.at(self.column)))
            .collect();
        if let Err(e) = self.calibration.save(&self.calibration_path) {
            tracing::warn!(
                "saving the pair calibration {}: {e}",
                self.calibration_path.display()
            );
        }
    }

    /// Every scoring round: calibrates the pair mapping on the round's nowcast, forecasts
    /// every ordered pair and folds the forecasts into the round's scores. Returns the
    /// pair forecasts (for the outputs and `explain`).
    pub fn attach(
        &mut self,
        round: &mut ScoreRound,
        vms: &[Vm],
        samples: &[VmSample],
    ) -> Vec<PairForecast> {
        let placements: Vec<VmPlacement> = samples
            .iter()
            .filter_map(|s| self.placement(vms, s))
            .collect();
        let nowcasts: Vec<PairNowcast> = round
            .nowcast
            .iter()
            .map(|n| PairNowcast {
                victim: n.victim.to_string(),
                aggressor: n.aggressor.to_string(),
                score: f64::from(n.smoothed),
            })
            .collect();
        // One fair-share pass over the current demands serves the calibration and the
        // realised scores.
        let now = NowShares::new(&placements);
        self.calibration
            .observe(&now.calibration_samples(&nowcasts));
        self.metrics.calibration_rounds = self.calibration.rounds;
        let forecasts = forecast_pairs(&placements, self.horizon, &self.calibration);
        let realised: HashMap<(String, String), f64> = now
            .realised(&self.calibration)
            .into_iter()
            .map(|p| ((p.victim, p.aggressor), p.score))
            .collect();
        let directed: Vec<DirectedForecast> = forecasts
            .iter()
            .map(|f| DirectedForecast {
                victim: f.victim.clone(),
                aggressor: f.aggressor.clone(),
                forecast: f.score as f32,
                realised: realised
                    .get(&(f.victim.clone(), f.aggressor.clone()))
                    .copied()
                    .unwrap_or(0.0) as f32,
            })
            .collect();
        let scores = std::mem::take(&mut round.contention);
        round.contention = with_forecasts(scores, &directed, self.horizon.as_millis() as u64);
        forecasts
    }

    /// One VM as the pair mapping sees it; None without a CPU usage this tick.
    fn placement(&self, vms: &[Vm], s: &VmSample) -> Option<VmPlacement> {
        let cpu = s.cpu.as_ref()?;
        if s.interval_seconds <= 0.0 {
            return None;
        }
        let now = (cpu.usage_seconds + s.runqueue.wait_seconds) / s.interval_seconds;
        // No forecast yet (the VM's first step): its demand now stands for it.
        let forecast = match (
            self.latest.get(&s.vm),
            allocated_cores(vms, s, &self.host_cpus),
        ) {
            (Some(percent), Some(cores)) => percent / 100.0 * f64::from(cores),
            _ => now,
        };
        Some(VmPlacement {
            name: s.vm.clone(),
            cpus: s.cpus.clone().unwrap_or_else(|| self.host_cpus.clone()),
            weight: NEUTRAL_WEIGHT,
            demand_now_cores: now,
            demand_forecast_cores: forecast,
        })
    }

    /// Saves the rollups and the calibration (clean exit).
    pub fn save(&mut self) {
        if let Err(e) = self.engine.save() {
            tracing::warn!("demand rollups: {e}");
        }
        if let Err(e) = self.calibration.save(&self.calibration_path) {
            tracing::warn!(
                "saving the pair calibration {}: {e}",
                self.calibration_path.display()
            );
        }
    }
}

/// The cores a VM's demand percent is relative to: its vCPUs, else the CPUs its cgroup
/// may use (a cgroup-only VM), else the host's.
fn allocated_cores(vms: &[Vm], s: &VmSample, host_cpus: &[u32]) -> Option<u32> {
    vms.iter()
        .find(|v| v.name == s.vm)
        .and_then(Vm::vcpus)
        .or_else(|| s.cpus.as_ref().and_then(|c| u32::try_from(c.len()).ok()))
        .or_else(|| u32::try_from(host_cpus.len()).ok())
        .filter(|&n| n > 0)
}

fn seconds_to_ns(seconds: f64) -> u64 {
    (seconds.max(0.0) * 1e9) as u64
}

/// The saved calibration, or a fresh one (logged) when it is missing or unreadable.
fn load_calibration(path: &Path) -> Calibration {
    if !path.exists() {
        return Calibration::default();
    }
    match Calibration::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("the pair calibration {} starts afresh: {e}", path.display());
            Calibration::default()
        }
    }
}
