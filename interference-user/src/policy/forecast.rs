//! Acting on forecasts, with care (issue 16): the rules that apply only when a pair's
//! score carries a forecast part (`ContentionScore::forecast`).
//!
//! - An alarm raised by the forecast alone (the measured part below the on threshold)
//!   may take only the cpu.weight rung: it is cheap and undone in one write. Its actions
//!   carry [`Trigger::Forecast`] into the journal and the ledger.
//! - Pin, balloon and migration wait until the measured score has been at or above the
//!   on threshold for [`CONFIRM_TICKS`] consecutive ticks, whatever the forecast says.
//! - A mitigation started on a forecast is watched: if neither the measured score nor
//!   the realised one (the pair mapping applied to the current demands, which a weight
//!   change does not hide) reaches the on threshold within the forecast's horizon, the
//!   forecast missed: the pair is released (its changes roll back) and its forecasts
//!   are muted for one horizon.

use super::action::{Rung, Trigger};
use super::config::{rung_name, Thresholds};
use super::decision::ForecastResult;
use super::state::{ForecastWatch, PairState};
use crate::predict::ContentionScore;

/// Consecutive ticks of measured contention before a rung beyond cpu.weight.
pub const CONFIRM_TICKS: u32 = 2;

/// What raised this pair's alarm: the forecast when the measured part alone is below
/// the on threshold.
pub(super) fn trigger(score: &ContentionScore, th: Thresholds) -> Trigger {
    match &score.forecast {
        Some(f) if f.now < th.on => Trigger::Forecast,
        _ => Trigger::Now,
    }
}

/// Why `rung` must wait for this pair, if it must (forecasting on only).
pub(super) fn rung_waits(
    rung: Rung,
    score: &ContentionScore,
    th: Thresholds,
    ps: &PairState,
) -> Option<String> {
    let f = score.forecast.as_ref()?;
    if rung == Rung::Weight {
        return None;
    }
    if f.now < th.on {
        return Some(format!(
            "{} waits: a forecast alarm (forecast {:.0}, measured {:.0} < {:.0}) takes only \
             the cpu.weight rung",
            rung_name(rung),
            f.forecast,
            f.now,
            th.on
        ));
    }
    (ps.now_ticks_above < CONFIRM_TICKS).then(|| {
        format!(
            "{} waits for the measured score to stay >= {:.0} for {CONFIRM_TICKS} ticks ({} so far)",
            rung_name(rung),
            th.on,
            ps.now_ticks_above
        )
    })
}

/// Starts watching a pair whose first change was decided on a forecast.
pub(super) fn watch(ps: &mut PairState, score: &ContentionScore, now_ms: u64) {
    if ps.forecast_watch.is_some() {
        return;
    }
    if let Some(f) = &score.forecast {
        ps.forecast_watch = Some(ForecastWatch {
            deadline_ms: now_ms.saturating_add(f.horizon_ms),
            forecast: f.forecast,
            horizon_ms: f.horizon_ms,
        });
    }
}

/// A missed forecast: why (for the rollback's reason), and how long to mute the pair.
pub(super) struct Missed {
    pub why: String,
    pub mute_ms: u64,
}

/// Updates the measured-ticks counter and settles a watched forecast with this tick's
/// score (None: not scored). Confirmed or missed, the result goes to `outcomes`.
pub(super) fn settle(
    ps: &mut PairState,
    score: Option<&ContentionScore>,
    th: Thresholds,
    now_ms: u64,
    key: &str,
    outcomes: &mut Vec<(String, ForecastResult)>,
) -> Option<Missed> {
    let (measured, realised) = match score {
        Some(s) => (s.now(), s.forecast.as_ref().map_or(0.0, |f| f.realised)),
        None => (0.0, 0.0),
    };
    ps.now_ticks_above = if measured >= th.on {
        ps.now_ticks_above + 1
    } else {
        0
    };
    let w = ps.forecast_watch.as_ref()?;
    if measured >= th.on || realised >= th.on {
        ps.forecast_watch = None;
        outcomes.push((key.to_owned(), ForecastResult::Confirmed));
        return None;
    }
    if now_ms < w.deadline_ms {
        return None;
    }
    let within = humantime::format_duration(std::time::Duration::from_millis(w.horizon_ms));
    let why = match score {
        Some(_) => format!(
            "forecast {:.0} did not come true within {within} (measured {measured:.0}, \
             realised {realised:.0} < {:.0})",
            w.forecast, th.on
        ),
        None => format!(
            "forecast {:.0} did not come true within {within} (the pair is no longer scored)",
            w.forecast
        ),
    };
    let missed = Missed {
        why,
        mute_ms: w.horizon_ms,
    };
    ps.forecast_watch = None;
    outcomes.push((key.to_owned(), ForecastResult::Missed));
    Some(missed)
}
