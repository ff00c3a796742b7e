//! The constants of the demand forecaster's contract (docs/forecast.md), model format 1.
//!
//! The sidecar repeats every one of them; [`crate::model::sidecar`] refuses a sidecar
//! that disagrees, because these numbers are baked into the code that builds the
//! inputs (`scripts/forecast/features.py` is the Python twin of this module and of
//! [`crate::inputs`]).

/// Steps per day the model was trained with (300 s steps on a 24 h day).
pub const DAY_STEPS: usize = 288;
/// Steps per week.
pub const WEEK_STEPS: usize = 7 * DAY_STEPS;
/// E: positions of known steps; the origin is the last of them.
pub const PAST: usize = 24;
/// K: steps forecast; output column k is the forecast k + 1 steps ahead.
pub const HORIZON_STEPS: usize = 12;
/// T: positions per VM, the E known steps then the K steps ahead.
pub const WINDOW: usize = PAST + HORIZON_STEPS;
/// L is the median of the last `LEVEL_STEPS` values.
pub const LEVEL_STEPS: usize = 12;
/// S is the mean |first difference| over the last `SCALE_STEPS` values; the day
/// median M reads as many.
pub const SCALE_STEPS: usize = 288;
/// S is at least this, in percentage points.
pub const SCALE_FLOOR: f64 = 0.1;
/// Values kept per VM, the origin included: the oldest lag read (23 + a week) plus one.
pub const HISTORY_STEPS: usize = PAST - 1 + WEEK_STEPS + 1;

/// The input features, in the order of the model's last axis.
pub const FEATURES: [&str; 12] = [
    "value",
    "day",
    "week",
    "value_mask",
    "day_mask",
    "week_mask",
    "ahead",
    "day_sin",
    "day_cos",
    "week_sin",
    "week_cos",
    "day_median",
];
/// F: features per position.
pub const FEATURE_COUNT: usize = FEATURES.len();

/// Index of each feature in [`FEATURES`].
pub(crate) mod feature {
    pub const VALUE: usize = 0;
    pub const DAY: usize = 1;
    pub const WEEK: usize = 2;
    pub const VALUE_MASK: usize = 3;
    pub const DAY_MASK: usize = 4;
    pub const WEEK_MASK: usize = 5;
    pub const AHEAD: usize = 6;
    pub const DAY_SIN: usize = 7;
    pub const DAY_COS: usize = 8;
    pub const WEEK_SIN: usize = 9;
    pub const WEEK_COS: usize = 10;
    pub const DAY_MEDIAN: usize = 11;
}

/// The lag (origin step minus the position's step) of position `j`: 23 down to -12.
pub const fn lag(j: usize) -> i64 {
    PAST as i64 - 1 - j as i64
}

/// The lags of all positions, as the sidecar lists them.
pub fn lags() -> [i64; WINDOW] {
    std::array::from_fn(lag)
}

/// The horizons of the output columns, in steps: `[1, ..., 12]`.
pub fn horizons_steps() -> [usize; HORIZON_STEPS] {
    std::array::from_fn(|k| k + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_the_contract() {
        assert_eq!(WEEK_STEPS, 2016);
        assert_eq!(WINDOW, 36);
        assert_eq!(HISTORY_STEPS, 2040);
        let lags = lags();
        assert_eq!((lags[0], lags[23], lags[24], lags[35]), (23, 0, -1, -12));
        assert_eq!(horizons_steps()[11], 12);
        assert_eq!(FEATURES[feature::DAY_MEDIAN], "day_median");
        assert_eq!(FEATURES[feature::WEEK_MASK], "week_mask");
    }
}
