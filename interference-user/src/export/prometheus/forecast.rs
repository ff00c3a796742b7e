//! The forecast families of the textfile (`[forecast] enabled`): how the forecaster
//! runs, and the last round's forecast slowdown of every ordered pair the pair mapping
//! expects to contend. Pairs forecast at 0 are absent, not zero.

use interference_forecast::pairs::PairForecast;

use super::text::TextWriter;

/// What the forecast stage counts, as the exporter shows it.
#[derive(Debug, Clone, Default)]
pub struct ForecastMetrics {
    /// Forecaster rounds (one per closed step) and those whose model run failed.
    pub rounds: u64,
    pub run_failures: u64,
    /// VMs forecast in the last round, and those forecast at their level (no model
    /// output: too little history, a failed run, a non-finite output).
    pub vms: usize,
    pub vms_at_level: usize,
    /// Rounds of nowcast the pair calibration has seen.
    pub calibration_rounds: u64,
    pub horizon_seconds: f64,
}

pub fn render_forecast(w: &mut TextWriter, m: &ForecastMetrics, pairs: &[PairForecast]) {
    w.counter(
        "interference_forecast_rounds_total",
        "Demand forecasting rounds (one per forecaster step, every VM in one batch).",
    )
    .sample(&[], m.rounds);
    w.counter(
        "interference_forecast_run_failures_total",
        "Forecasting rounds whose model run failed (every VM then forecast at its level).",
    )
    .sample(&[], m.run_failures);
    {
        let mut f = w.gauge(
            "interference_forecast_vms",
            "VMs forecast in the last round, by source: the model, or their level (too little history or no usable output).",
        );
        f.sample(
            &[("source", "model")],
            m.vms.saturating_sub(m.vms_at_level) as u64,
        );
        f.sample(&[("source", "level")], m.vms_at_level as u64);
    }
    w.gauge(
        "interference_forecast_calibration_rounds",
        "Scoring rounds of nowcast the pair mapping's calibration has learnt from.",
    )
    .sample(&[], m.calibration_rounds);
    let horizon = format!("{}s", m.horizon_seconds);
    let mut f = w.gauge(
        "interference_pair_forecast_slowdown_ratio",
        "Forecast share of the victim's runnable time the aggressor will take at the horizon, 0-1 (calibrated fair share of the forecast demands).",
    );
    for p in pairs.iter().filter(|p| p.score > 0.0) {
        f.sample(
            &[
                ("victim", &p.victim),
                ("aggressor", &p.aggressor),
                ("horizon", &horizon),
            ],
            p.score / 100.0,
        );
    }
}
