//! One forecasting round (docs/forecast.md, sections 4 to 6): every VM's inputs from
//! its rollup, normalised, one batched model run for all of them (O(VMs)), then
//! `forecast = max(0, L + S * out[k])` per horizon.
//!
//! A VM whose output is not finite gets its level L for every horizon (the
//! recent-median baseline, itself better than persistence on the traces), said once per
//! VM in the log and every round in its [`ForecastSource`]; a run that fails, or no
//! model at all, does the same for every VM. Buffers are kept between rounds: the
//! round allocates only its result.

use std::collections::HashSet;

use crate::contract::{FEATURE_COUNT, HORIZON_STEPS};
use crate::inputs::{normalise, raw_inputs, LevelScale, ROW_LEN};
use crate::model::{DemandModel, RunError};
use crate::rollup::RollupStore;

/// Where a VM's forecast came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForecastSource {
    /// The model's output, post-processed.
    Model,
    /// L for every horizon: the model's output for this VM was not finite.
    LevelNonFiniteOutput,
    /// L for every horizon: the model's run failed this round.
    LevelRunFailed,
    /// L for every horizon: no model is loaded.
    LevelNoModel,
}

/// One VM's forecast at one origin.
#[derive(Debug, Clone, PartialEq)]
pub struct VmForecast {
    pub vm: String,
    /// L: median of the last 12 values (percent of the VM's allocated cores).
    pub level: f64,
    /// S: the VM's mean step-to-step change over the last day, at least 0.1.
    pub scale: f64,
    /// Forecast demand (percent of allocated cores, >= 0, finite) of the step
    /// `k + 1` steps after the origin, k = 0..11.
    pub demand: [f64; HORIZON_STEPS],
    pub source: ForecastSource,
    /// The model's raw output (`scaled_forecast`) when it ran, for explanations and the
    /// replay (which prints `null` where `L + S * out` is not finite).
    pub scaled_output: Option<[f32; HORIZON_STEPS]>,
}

impl VmForecast {
    /// The forecast of output column `column` (see [`crate::horizon`]).
    pub fn at(&self, column: usize) -> f64 {
        self.demand[column.min(HORIZON_STEPS - 1)]
    }
}

/// Why a VM asked for was not forecast this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// The store has no rollup for it (never seen, or its first step is still open).
    NoHistory,
    /// Its newest value is not of the round's origin step (the step was not closed).
    NotAtOrigin { newest_step: i64 },
}

/// The result of one round.
#[derive(Debug)]
pub struct Round {
    /// The origin: the last complete step.
    pub origin_step: i64,
    /// In the order the VMs were asked for.
    pub forecasts: Vec<VmForecast>,
    pub skipped: Vec<(String, Skipped)>,
    /// The model's run failed (every forecast is then L).
    pub run_error: Option<RunError>,
}

/// The model and the round's buffers.
#[derive(Debug)]
pub struct Forecaster {
    model: Option<DemandModel>,
    mean: [f32; FEATURE_COUNT],
    std: [f32; FEATURE_COUNT],
    raw: Vec<f32>,
    normalised: Vec<f32>,
    levels: Vec<LevelScale>,
    /// VMs already reported for a non-finite output.
    warned: HashSet<String>,
}

impl Forecaster {
    pub fn new(model: DemandModel) -> Self {
        let norm = &model.sidecar().normalisation;
        // Lengths are validated with the sidecar.
        let mean = std::array::from_fn(|i| norm.mean.get(i).copied().unwrap_or(0.0));
        let std = std::array::from_fn(|i| norm.std.get(i).copied().unwrap_or(1.0));
        Self {
            model: Some(model),
            mean,
            std,
            raw: Vec::new(),
            normalised: Vec::new(),
            levels: Vec::new(),
            warned: HashSet::new(),
        }
    }

    /// A forecaster with no model: every forecast is the VM's level L (the agent's
    /// fallback when the model cannot be loaded; it says so in its status).
    pub fn without_model() -> Self {
        Self {
            model: None,
            mean: [0.0; FEATURE_COUNT],
            std: [1.0; FEATURE_COUNT],
            raw: Vec::new(),
            normalised: Vec::new(),
            levels: Vec::new(),
            warned: HashSet::new(),
        }
    }

    pub fn model(&self) -> Option<&DemandModel> {
        self.model.as_ref()
    }

    /// Forecasts `vms` at `origin_step`, the step the store last closed. VMs without
    /// a value at that step are skipped (listed in the round).
    pub fn round<'a>(
        &mut self,
        store: &RollupStore,
        origin_step: i64,
        vms: impl IntoIterator<Item = &'a str>,
    ) -> Round {
        let mut names = Vec::new();
        let mut skipped = Vec::new();
        self.raw.clear();
        self.levels.clear();
        for vm in vms {
            let Some(r) = store.get(vm) else {
                skipped.push((vm.to_string(), Skipped::NoHistory));
                continue;
            };
            if r.newest_step() != origin_step {
                skipped.push((
                    vm.to_string(),
                    Skipped::NotAtOrigin {
                        newest_step: r.newest_step(),
                    },
                ));
                continue;
            }
            let at = self.raw.len();
            self.raw.resize(at + ROW_LEN, 0.0);
            self.levels
                .push(raw_inputs(r, origin_step, &mut self.raw[at..]));
            names.push(vm);
        }
        let n = names.len();
        let (outputs, run_error) = self.run(n);
        let mut forecasts = Vec::with_capacity(n);
        for (i, vm) in names.into_iter().enumerate() {
            let ls = self.levels[i];
            let out: Option<[f32; HORIZON_STEPS]> = outputs
                .as_ref()
                .map(|o| std::array::from_fn(|k| o[i * HORIZON_STEPS + k]));
            let (demand, source) = self.post_process(vm, &ls, out.as_ref(), run_error.is_some());
            forecasts.push(VmForecast {
                vm: vm.to_string(),
                level: ls.level,
                scale: ls.scale,
                demand,
                source,
                scaled_output: out,
            });
        }
        Round {
            origin_step,
            forecasts,
            skipped,
            run_error,
        }
    }

    /// Forecasts every VM of the store at `origin_step`, by name.
    pub fn round_all(&mut self, store: &RollupStore, origin_step: i64) -> Round {
        let names: Vec<String> = store.vms().map(|(n, _)| n.to_string()).collect();
        self.round(store, origin_step, names.iter().map(String::as_str))
    }

    /// Normalises the batch and runs the model once.
    fn run(&mut self, n: usize) -> (Option<Vec<f32>>, Option<RunError>) {
        let Some(model) = &self.model else {
            return (None, None);
        };
        self.normalised.resize(self.raw.len(), 0.0);
        normalise(&self.raw, &self.mean, &self.std, &mut self.normalised);
        match model.run_normalised(&self.normalised, n) {
            Ok(out) => (Some(out), None),
            Err(e) => {
                tracing::warn!(
                    "demand forecast: {e}; every VM is forecast at its level this round"
                );
                (None, Some(e))
            }
        }
    }

    fn post_process(
        &mut self,
        vm: &str,
        ls: &LevelScale,
        out: Option<&[f32; HORIZON_STEPS]>,
        run_failed: bool,
    ) -> ([f64; HORIZON_STEPS], ForecastSource) {
        let level_only = [ls.level.max(0.0); HORIZON_STEPS];
        let Some(out) = out else {
            let why = if run_failed {
                ForecastSource::LevelRunFailed
            } else {
                ForecastSource::LevelNoModel
            };
            return (level_only, why);
        };
        let mut demand = [0.0; HORIZON_STEPS];
        for (d, &o) in demand.iter_mut().zip(out) {
            let f = ls.level + ls.scale * f64::from(o);
            if !f.is_finite() {
                if self.warned.insert(vm.to_string()) {
                    tracing::warn!(
                        vm,
                        "demand forecast: the model returned a non-finite value; the VM is \
                         forecast at its level L = {:.3} while that lasts",
                        ls.level
                    );
                }
                return (level_only, ForecastSource::LevelNonFiniteOutput);
            }
            *d = if f > 0.0 { f } else { 0.0 };
        }
        (demand, ForecastSource::Model)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::clock::Clock;
    use crate::model::{builtin_sidecar_json, PreparedModel};

    /// A fake model: output column k of row i is `f(i, k)`; counts its runs.
    struct Fake {
        f: fn(usize, usize) -> f32,
        runs: Arc<AtomicUsize>,
    }
    impl PreparedModel for Fake {
        fn run(&self, normalised: &[f32], n: usize) -> Result<Vec<f32>, RunError> {
            assert_eq!(normalised.len(), n * ROW_LEN);
            self.runs.fetch_add(1, Ordering::SeqCst);
            Ok((0..n * HORIZON_STEPS)
                .map(|x| (self.f)(x / HORIZON_STEPS, x % HORIZON_STEPS))
                .collect())
        }
    }

    fn forecaster(f: fn(usize, usize) -> f32) -> (Forecaster, Arc<AtomicUsize>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let fake = Fake {
            f,
            runs: runs.clone(),
        };
        let model = DemandModel::from_prepared(builtin_sidecar_json(), "fake", Box::new(fake))
            .expect("shipped sidecar");
        (Forecaster::new(model), runs)
    }

    fn store() -> RollupStore {
        let clock = Clock::new(
            Duration::from_secs(300),
            Duration::from_secs(86_400),
            UNIX_EPOCH,
            288,
        )
        .expect("clock");
        let mut s = RollupStore::in_memory(&clock);
        for t in 0..20 {
            s.record("a", t, 10.0);
            s.record("b", t, if t % 2 == 0 { 1.0 } else { 3.0 });
            s.close_step(t);
        }
        s
    }

    #[test]
    fn all_vms_in_one_run_and_forecast_is_level_plus_scale_times_output() {
        let (mut f, runs) = forecaster(|i, k| if i == 0 { 1.0 } else { -100.0 + k as f32 });
        let r = f.round(&store(), 19, ["a", "b", "ghost"]);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(r.forecasts.len(), 2);
        assert_eq!(r.skipped, vec![("ghost".to_string(), Skipped::NoHistory)]);
        let a = &r.forecasts[0];
        assert_eq!((a.level, a.scale), (10.0, 0.1));
        assert!((a.demand[0] - 10.1).abs() < 1e-12);
        assert_eq!(a.source, ForecastSource::Model);
        // b: L = 2 (median of 1s and 3s), S = 2; 2 + 2 * (-100) clamps at 0.
        let b = &r.forecasts[1];
        assert_eq!((b.level, b.scale), (2.0, 2.0));
        assert_eq!(b.demand[0], 0.0);
    }

    #[test]
    fn a_non_finite_output_falls_back_to_the_level() {
        let (mut f, _) = forecaster(|i, k| if i == 1 && k == 3 { f32::NAN } else { 0.5 });
        let r = f.round(&store(), 19, ["a", "b"]);
        let b = &r.forecasts[1];
        assert_eq!(b.source, ForecastSource::LevelNonFiniteOutput);
        assert_eq!(b.demand, [2.0; HORIZON_STEPS]);
        assert!(b.scaled_output.is_some_and(|o| o[3].is_nan()));
        assert_eq!(r.forecasts[0].source, ForecastSource::Model);
        // Said once per VM.
        f.round(&store(), 19, ["b"]);
        assert_eq!(f.warned.len(), 1);
    }

    #[test]
    fn without_a_model_every_vm_gets_its_level() {
        let mut f = Forecaster::without_model();
        let r = f.round_all(&store(), 19);
        assert_eq!(r.forecasts.len(), 2);
        assert!(r
            .forecasts
            .iter()
            .all(|v| v.source == ForecastSource::LevelNoModel && v.demand[11] == v.level));
    }

    #[test]
    fn a_vm_not_closed_at_the_origin_is_skipped() {
        let (mut f, _) = forecaster(|_, _| 0.0);
        let r = f.round(&store(), 25, ["a"]);
        assert!(r.forecasts.is_empty());
        assert_eq!(
            r.skipped,
            vec![("a".to_string(), Skipped::NotAtOrigin { newest_step: 19 })]
        );
    }
}
