//! Forecast pair scores (issue 16): per-VM forecast demands and the host's CPU layout
//! turned into the forecast slowdown of every ordered pair, calibrated per host from
//! the nowcast.
//!
//! [`fair_share`](mod@fair_share) predicts, from demands, cpu.weight and cpusets, the share of a
//! victim's runnable time each aggressor would take, the nowcast's own quantity;
//! [`calibration`] learns this host's correction by comparing that prediction from
//! *current* demands with the measured nowcast, round after round. The agent then
//! applies the correction to the prediction from *forecast* demands:
//!
//! ```text
//! each round:  calibration.observe(&calibration_samples(&placements, &nowcasts));
//!              let forecasts = forecast_pairs(&placements, horizon, &calibration);
//! ```
//!
//! O(CPUs x VMs + pairs sharing CPUs); pure functions of plain data.

pub mod calibration;
pub mod fair_share;

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

pub use calibration::{Calibration, CalibrationLoadError, CalibrationSample};
pub use fair_share::{fair_share, water_fill, DemandOf, FairShare, Layout};

/// One VM as the pair mapping sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmPlacement {
    pub name: String,
    /// CPUs it may run on (its cgroup's effective cpuset).
    pub cpus: Vec<u32>,
    /// Its cgroup's cpu.weight (cgroup v2 scale 1..=10000, default 100).
    pub weight: u32,
    /// Demand now (CPU usage + run-queue wait), in cores.
    pub demand_now_cores: f64,
    /// Forecast demand at the horizon, in cores (forecast percent / 100 x vCPUs).
    pub demand_forecast_cores: f64,
}

/// The measured nowcast of one ordered pair: the share (0-100) of the victim's runnable
/// time the aggressor took (DESIGN.md, "Contention score"; scripts/model/nowcast.py).
#[derive(Debug, Clone, PartialEq)]
pub struct PairNowcast {
    pub victim: String,
    pub aggressor: String,
    pub score: f64,
}

/// What explains a forecast pair score (for `interference explain`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairExplanation {
    pub layout: Layout,
    pub shared_cpus: Vec<u32>,
    pub victim_weight: u32,
    pub aggressor_weight: u32,
    pub victim_demand_cores: f64,
    pub aggressor_demand_cores: f64,
    /// The victim's demand it could run alone (its own queueing excluded).
    pub victim_runnable_cores: f64,
    /// What the victim gets under fair share, over all its CPUs.
    pub victim_expected_cores: f64,
    pub victim_shortfall_cores: f64,
    /// The part of the shortfall attributed to this aggressor.
    pub attributed_cores: f64,
    /// The fair-share score before the host's calibration.
    pub uncalibrated_score: f64,
    /// Rounds of nowcast the calibration has seen.
    pub calibration_rounds: u64,
}

/// The forecast slowdown of one ordered pair at one horizon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairForecast {
    pub victim: String,
    pub aggressor: String,
    pub horizon: Duration,
    /// Forecast share (0-100) of the victim's runnable time the aggressor will take.
    pub score: f64,
    pub explanation: PairExplanation,
}

/// The forecast score of every ordered pair sharing CPUs, from the forecast demands,
/// calibrated. Pairs absent share no CPU (score 0). Ordered by victim, then aggressor,
/// as `vms` lists them.
pub fn forecast_pairs(
    vms: &[VmPlacement],
    horizon: Duration,
    calibration: &Calibration,
) -> Vec<PairForecast> {
    fair_share(vms, DemandOf::Forecast)
        .into_iter()
        .map(|p| {
            let (v, a) = (&vms[p.victim], &vms[p.aggressor]);
            PairForecast {
                victim: v.name.clone(),
                aggressor: a.name.clone(),
                horizon,
                score: calibration.apply(p.layout, p.slowdown),
                explanation: PairExplanation {
                    layout: p.layout,
                    shared_cpus: p.shared_cpus,
                    victim_weight: v.weight,
                    aggressor_weight: a.weight,
                    victim_demand_cores: v.demand_forecast_cores,
                    aggressor_demand_cores: a.demand_forecast_cores,
                    victim_runnable_cores: p.victim_runnable_cores,
                    victim_expected_cores: p.victim_expected_cores,
                    victim_shortfall_cores: p.victim_shortfall_cores,
                    attributed_cores: p.attributed_cores,
                    uncalibrated_score: p.slowdown,
                    calibration_rounds: calibration.rounds,
                },
            }
        })
        .collect()
}

/// The fair-share mapping of the *current* demands, computed once a round: the
/// calibration's samples and the realised scores both read it.
pub struct NowShares<'a> {
    vms: &'a [VmPlacement],
    shares: Vec<FairShare>,
}

impl<'a> NowShares<'a> {
    pub fn new(vms: &'a [VmPlacement]) -> Self {
        Self {
            vms,
            shares: fair_share(vms, DemandOf::Now),
        }
    }

    /// The calibration's samples of one round: for every ordered pair sharing CPUs
    /// that has a measured nowcast, the fair-share prediction from current demands and
    /// the measurement. Pairs without a nowcast are left out (not measured is not 0).
    pub fn calibration_samples(&self, nowcasts: &[PairNowcast]) -> Vec<CalibrationSample> {
        let measured: HashMap<(&str, &str), f64> = nowcasts
            .iter()
            .map(|n| ((n.victim.as_str(), n.aggressor.as_str()), n.score))
            .collect();
        self.shares
            .iter()
            .filter_map(|p| {
                let key = (
                    self.vms[p.victim].name.as_str(),
                    self.vms[p.aggressor].name.as_str(),
                );
                measured.get(&key).map(|&m| CalibrationSample {
                    layout: p.layout,
                    predicted: p.slowdown,
                    measured: m,
                })
            })
            .collect()
    }

    /// The calibrated fair-share score of every ordered pair sharing CPUs from the
    /// current demands: what the forecast is checked against. Demand is usage plus
    /// run-queue wait, so a mitigation that only moves CPU time between the two VMs
    /// does not hide it: a forecast came true when this reached the alarm, mitigated
    /// or not. Ordered as [`forecast_pairs`].
    pub fn realised(&self, calibration: &Calibration) -> Vec<PairNowcast> {
        self.shares
            .iter()
            .map(|p| PairNowcast {
                victim: self.vms[p.victim].name.clone(),
                aggressor: self.vms[p.aggressor].name.clone(),
                score: calibration.apply(p.layout, p.slowdown),
            })
            .collect()
    }
}

/// [`NowShares::realised`] of `vms`.
pub fn realised_pairs(vms: &[VmPlacement], calibration: &Calibration) -> Vec<PairNowcast> {
    NowShares::new(vms).realised(calibration)
}

/// [`NowShares::calibration_samples`] of `vms`.
pub fn calibration_samples(
    vms: &[VmPlacement],
    nowcasts: &[PairNowcast],
) -> Vec<CalibrationSample> {
    NowShares::new(vms).calibration_samples(nowcasts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(name: &str, cpus: &[u32], now: f64, forecast: f64) -> VmPlacement {
        VmPlacement {
            name: name.to_string(),
            cpus: cpus.to_vec(),
            weight: 100,
            demand_now_cores: now,
            demand_forecast_cores: forecast,
        }
    }

    #[test]
    fn forecasts_use_forecast_demand_and_the_calibration() {
        let vms = [vm("v", &[0], 0.2, 1.0), vm("a", &[0], 1.0, 1.0)];
        let fresh = Calibration::default();
        let f = forecast_pairs(&vms, Duration::from_secs(300), &fresh);
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].victim.as_str(), f[0].aggressor.as_str()), ("v", "a"));
        assert!((f[0].score - 50.0).abs() < 1e-9);
        assert_eq!(f[0].explanation.shared_cpus, vec![0]);
        assert!((f[0].explanation.victim_expected_cores - 0.5).abs() < 1e-12);

        // A host where the nowcast always reads half the model's prediction.
        let mut c = Calibration::default();
        for _ in 0..400 {
            let now = [vm("v", &[0], 1.0, 1.0), vm("a", &[0], 1.0, 1.0)];
            let nowcasts = [
                PairNowcast {
                    victim: "v".into(),
                    aggressor: "a".into(),
                    score: 25.0,
                },
                PairNowcast {
                    victim: "a".into(),
                    aggressor: "v".into(),
                    score: 25.0,
                },
            ];
            let samples = calibration_samples(&now, &nowcasts);
            assert_eq!(samples.len(), 2);
            c.observe(&samples);
        }
        let f = forecast_pairs(&vms, Duration::from_secs(300), &c);
        // Within a point: the bins below, still at their identity prior (35, 45), are
        // pooled into the measured one to keep the map monotone, and lift it a little.
        assert!((f[0].score - 25.0).abs() < 1.0, "{}", f[0].score);
        assert!((f[0].explanation.uncalibrated_score - 50.0).abs() < 1e-9);
    }

    #[test]
    fn realised_pairs_use_current_demand() {
        let vms = [vm("v", &[0], 1.0, 0.1), vm("a", &[0], 1.0, 0.1)];
        let r = realised_pairs(&vms, &Calibration::default());
        assert_eq!(r.len(), 2);
        assert!((r[0].score - 50.0).abs() < 1e-9, "{}", r[0].score);
        let f = forecast_pairs(&vms, Duration::from_secs(300), &Calibration::default());
        assert!(f[0].score < r[0].score);
    }

    #[test]
    fn pairs_without_a_nowcast_are_not_samples() {
        let vms = [vm("v", &[0], 1.0, 1.0), vm("a", &[0], 1.0, 1.0)];
        assert!(calibration_samples(&vms, &[]).is_empty());
    }
}
