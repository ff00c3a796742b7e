//! The model's inputs for one VM at one origin (docs/forecast.md, section 4): level L,
//! scale S, day median M, and the `[36, 12]` features, from the VM's rollup alone.
//!
//! Arithmetic is float64 from the float32 ring values, as the contract says, and each
//! feature is cast to float32 at the end: `scripts/forecast/features.py` does exactly
//! this, and the golden vectors (`models/demand-forecast.golden.json`) hold its numbers.
//! The medians use selection, not sorting: 100 VMs' inputs must stay well under the
//! model's own millisecond.

use std::f64::consts::TAU;

use crate::contract::{
    feature, lag, DAY_STEPS, FEATURE_COUNT, HORIZON_STEPS, LEVEL_STEPS, PAST, SCALE_FLOOR,
    SCALE_STEPS, WEEK_STEPS, WINDOW,
};
use crate::rollup::VmRollup;

/// Values of one VM's raw inputs: `WINDOW * FEATURE_COUNT`, position-major.
pub const ROW_LEN: usize = WINDOW * FEATURE_COUNT;

/// A VM's history as the inputs read it: the value `lag` steps before the origin, if
/// the VM has one. Lags `0..age` are available, the others are not.
pub trait History {
    fn age(&self) -> usize;
    fn value(&self, lag: usize) -> Option<f32>;
}

impl History for VmRollup {
    fn age(&self) -> usize {
        VmRollup::age(self)
    }
    #[inline]
    fn value(&self, lag: usize) -> Option<f32> {
        VmRollup::value(self, lag)
    }
}

/// L, S and M of one VM at its origin (float64).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelScale {
    /// Median of the available values among lags 0..11.
    pub level: f64,
    /// Mean |v(l) - v(l+1)| over lags 0..287 with both available, at least 0.1.
    pub scale: f64,
    /// Median of the available values among lags 0..287.
    pub day_median: f64,
}

/// Median of `v` (mean of the two middle values for an even count), reordering `v`.
/// `v` must not be empty.
fn median(v: &mut [f64]) -> f64 {
    let n = v.len();
    let mid = n / 2;
    let (lower, &mut upper_mid, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    if n % 2 == 1 {
        return upper_mid;
    }
    let lower_mid = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lower_mid + upper_mid) / 2.0
}

/// L, S and M of a VM with at least one value.
pub fn level_scale(h: &impl History) -> LevelScale {
    let n = h.age().min(SCALE_STEPS);
    let mut buf = [0.0f64; SCALE_STEPS];
    for (lag, slot) in buf.iter_mut().enumerate().take(n) {
        *slot = f64::from(h.value(lag).unwrap_or(0.0));
    }
    let values = &mut buf[..n.max(1)];
    let mut sum = 0.0;
    for pair in values.windows(2) {
        sum += (pair[0] - pair[1]).abs();
    }
    let pairs = n.saturating_sub(1);
    let scale = if pairs > 0 {
        (sum / pairs as f64).max(SCALE_FLOOR)
    } else {
        SCALE_FLOOR
    };
    let mut recent = [0.0f64; LEVEL_STEPS];
    let k = n.clamp(1, LEVEL_STEPS);
    recent[..k].copy_from_slice(&values[..k]);
    let level = median(&mut recent[..k]);
    let day_median = median(values);
    LevelScale {
        level,
        scale,
        day_median,
    }
}

/// `asinh((v - L) / S)`, in float64.
#[inline]
fn scaled(v: f64, ls: &LevelScale) -> f64 {
    ((v - ls.level) / ls.scale).asinh()
}

/// Writes the raw (not normalised) inputs of one VM at origin step `t_abs` into `out`
/// (`ROW_LEN` values) and returns its L, S and M. The VM must have at least one value
/// (lag 0 is the origin's).
pub fn raw_inputs(h: &impl History, t_abs: i64, out: &mut [f32]) -> LevelScale {
    debug_assert_eq!(out.len(), ROW_LEN);
    let ls = level_scale(h);
    let age = h.age().max(1);
    let get = |l: usize| h.value(l).map(f64::from);
    let earliest = get(age - 1).unwrap_or(ls.level);
    let day_median = scaled(ls.day_median, &ls) as f32;
    for (j, row) in out.chunks_exact_mut(FEATURE_COUNT).enumerate() {
        let lag_j = lag(j);
        // Lags of the seasonal values are >= 0 even for the steps ahead: -12 + 288.
        let day_lag = (lag_j + DAY_STEPS as i64) as usize;
        let week_lag = (lag_j + WEEK_STEPS as i64) as usize;
        let (value, value_mask) = if lag_j >= 0 {
            match get(lag_j as usize) {
                Some(v) => (scaled(v, &ls), 1.0),
                None => (scaled(earliest, &ls), 0.0),
            }
        } else {
            (0.0, 0.0)
        };
        let day_value = get(day_lag);
        let y = day_value.unwrap_or(ls.level);
        let week_value = get(week_lag);
        let w = week_value.unwrap_or(y);
        let tau = t_abs - lag_j;
        let day_phase = tau.rem_euclid(DAY_STEPS as i64) as f64 / DAY_STEPS as f64;
        let week_phase = tau.rem_euclid(WEEK_STEPS as i64) as f64 / WEEK_STEPS as f64;
        let (day_angle, week_angle) = (TAU * day_phase, TAU * week_phase);
        row[feature::VALUE] = value as f32;
        row[feature::DAY] = scaled(y, &ls) as f32;
        row[feature::WEEK] = scaled(w, &ls) as f32;
        row[feature::VALUE_MASK] = value_mask;
        row[feature::DAY_MASK] = if day_value.is_some() { 1.0 } else { 0.0 };
        row[feature::WEEK_MASK] = if week_value.is_some() { 1.0 } else { 0.0 };
        row[feature::AHEAD] = ((-lag_j).max(0) as f64 / HORIZON_STEPS as f64) as f32;
        row[feature::DAY_SIN] = day_angle.sin() as f32;
        row[feature::DAY_COS] = day_angle.cos() as f32;
        row[feature::WEEK_SIN] = week_angle.sin() as f32;
        row[feature::WEEK_COS] = week_angle.cos() as f32;
        row[feature::DAY_MEDIAN] = day_median;
    }
    debug_assert_eq!(lag(PAST - 1), 0);
    ls
}

/// `(raw - mean[i]) / std[i]` per feature, in float32, subtract then divide (the
/// trainer's order: the golden vectors hold exactly these numbers).
pub fn normalise(raw: &[f32], mean: &[f32], std: &[f32], out: &mut [f32]) {
    for (row_in, row_out) in raw
        .chunks_exact(mean.len())
        .zip(out.chunks_exact_mut(mean.len()))
    {
        for (((o, x), m), s) in row_out.iter_mut().zip(row_in).zip(mean).zip(std) {
            *o = (x - m) / s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history from values oldest first; the newest is lag 0.
    struct Vals(Vec<f32>);
    impl History for Vals {
        fn age(&self) -> usize {
            self.0.len()
        }
        fn value(&self, lag: usize) -> Option<f32> {
            self.0.len().checked_sub(lag + 1).map(|i| self.0[i])
        }
    }

    #[test]
    fn medians_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut [7.0]), 7.0);
    }

    #[test]
    fn level_scale_by_hand() {
        // Newest last: lags 0..3 are 4, 1, 3, 2.
        let ls = level_scale(&Vals(vec![2.0, 3.0, 1.0, 4.0]));
        assert_eq!(ls.level, 2.5);
        assert_eq!(ls.day_median, 2.5);
        // |4-1| + |1-3| + |3-2| = 6 over 3 pairs.
        assert_eq!(ls.scale, 2.0);
        let one = level_scale(&Vals(vec![5.0]));
        assert_eq!((one.level, one.scale, one.day_median), (5.0, 0.1, 5.0));
        let flat = level_scale(&Vals(vec![5.0; 40]));
        assert_eq!(flat.scale, 0.1);
    }

    #[test]
    fn level_reads_only_the_last_twelve() {
        let mut v = vec![100.0; 30];
        v.extend([1.0; 12]);
        let ls = level_scale(&Vals(v));
        assert_eq!(ls.level, 1.0);
        // The day median reads all 42: 30 of them are 100.
        assert_eq!(ls.day_median, 100.0);
    }

    #[test]
    fn a_single_value_vm_gets_its_value_everywhere() {
        let mut out = vec![0.0f32; ROW_LEN];
        let ls = raw_inputs(&Vals(vec![5.0]), 0, &mut out);
        assert_eq!(ls.level, 5.0);
        for j in 0..WINDOW {
            let row = &out[j * FEATURE_COUNT..][..FEATURE_COUNT];
            assert_eq!(&row[..3], &[0.0, 0.0, 0.0], "position {j}");
            let value_mask = if j == PAST - 1 { 1.0 } else { 0.0 };
            assert_eq!(&row[3..6], &[value_mask, 0.0, 0.0], "position {j}");
            assert_eq!(row[11], 0.0);
        }
        // The origin (step 0 of the clock) has phase 0; the last position 12 steps on.
        let origin = &out[(PAST - 1) * FEATURE_COUNT..][..FEATURE_COUNT];
        assert_eq!(&origin[6..11], &[0.0, 0.0, 1.0, 0.0, 1.0]);
        let last = &out[(WINDOW - 1) * FEATURE_COUNT..][..FEATURE_COUNT];
        assert_eq!(last[6], 1.0);
        assert!((f64::from(last[7]) - (TAU * 12.0 / 288.0).sin()).abs() < 1e-7);
    }

    #[test]
    fn young_vm_fills_earliest_value_then_level() {
        // Three values: 10 (lag 2), 20 (lag 1), 40 (lag 0). L = 20, S = 15.
        let mut out = vec![0.0f32; ROW_LEN];
        let ls = raw_inputs(&Vals(vec![10.0, 20.0, 40.0]), 1000, &mut out);
        assert_eq!((ls.level, ls.scale), (20.0, 15.0));
        let at = |j: usize, f: usize| out[j * FEATURE_COUNT + f];
        let a = |v: f64| ((v - 20.0) / 15.0).asinh() as f32;
        // Position 0 (lag 23): before the VM, the earliest value 10, mask 0.
        assert_eq!((at(0, 0), at(0, 3)), (a(10.0), 0.0));
        assert_eq!((at(21, 0), at(21, 3)), (a(10.0), 1.0));
        assert_eq!((at(23, 0), at(23, 3)), (a(40.0), 1.0));
        // No day or week: both the level, masks 0.
        assert_eq!(
            (at(5, 1), at(5, 2), at(5, 4), at(5, 5)),
            (0.0, 0.0, 0.0, 0.0)
        );
        // A step ahead: no value, ahead = 1/12.
        assert_eq!(
            (at(24, 0), at(24, 3), at(24, 6)),
            (0.0, 0.0, (1.0f64 / 12.0) as f32)
        );
    }

    #[test]
    fn a_week_old_vm_reads_yesterday_and_last_week() {
        // Values equal to their own step index: lag l has value (n - 1 - l).
        let n = WEEK_STEPS + PAST;
        let v: Vec<f32> = (0..n).map(|k| k as f32).collect();
        let mut out = vec![0.0f32; ROW_LEN];
        let ls = raw_inputs(&Vals(v), 5000, &mut out);
        let origin = (n - 1) as f64;
        assert_eq!(ls.level, origin - 5.5);
        assert_eq!(ls.scale, 1.0);
        let at = |j: usize, f: usize| out[j * FEATURE_COUNT + f];
        let a = |x: f64| (x - ls.level).asinh() as f32;
        // Position 0 (lag 23): day lag 311, week lag 2039 (available: age n = 2040).
        assert_eq!(at(0, 1), a(origin - 311.0));
        assert_eq!(at(0, 2), a(origin - 2039.0));
        assert_eq!((at(0, 4), at(0, 5)), (1.0, 1.0));
        // The last position (lag -12): day lag 276, week lag 2004.
        assert_eq!(at(35, 1), a(origin - 276.0));
        assert_eq!(at(35, 2), a(origin - 2004.0));
    }

    #[test]
    fn normalise_subtracts_then_divides() {
        let raw = [1.0f32, 2.0, 3.0, 4.0];
        let mut out = [0.0f32; 4];
        normalise(&raw, &[1.0, 0.5], &[2.0, 0.5], &mut out);
        assert_eq!(out, [0.0, 3.0, 1.0, 7.0]);
    }
}
