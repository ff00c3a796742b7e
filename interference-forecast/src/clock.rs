//! The forecaster's clock (docs/forecast.md, section 2): instants become absolute steps.
//!
//! Everything the model reads is in steps and in fractions of a day and a week of
//! steps, never in wall-clock constants, so one trained model serves a real host (300 s
//! steps, 86400 s days) and the lab (1 s steps, 288 s days) alike, provided a day is
//! the sidecar's `clock.day_steps` steps. The clock refuses anything else: resampling
//! would feed the model rhythms it never saw.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// 1970-01-05T00:00:00Z, the first Monday of the Unix epoch: step 0 of a real host's
/// clock (before its offset).
pub const MONDAY_EPOCH_SECONDS: u64 = 4 * 86_400;

/// A clock configuration the model cannot be run on.
#[derive(Debug, Error, PartialEq)]
pub enum ClockError {
    #[error("forecast clock: step_seconds is 0")]
    ZeroStep,
    #[error(
        "forecast clock: day_seconds = {day_seconds} is not a whole number of steps of \
         step_seconds = {step_seconds}"
    )]
    DayNotWholeSteps { step_seconds: f64, day_seconds: f64 },
    #[error(
        "forecast clock: step_seconds = {step_seconds} and day_seconds = {day_seconds} make \
         a day of {day_steps} steps, but the model was trained on days of {model_day_steps} \
         steps (its sidecar's clock.day_steps): set day_seconds = step_seconds x \
         {model_day_steps}"
    )]
    DayStepsMismatch {
        step_seconds: f64,
        day_seconds: f64,
        day_steps: u128,
        model_day_steps: usize,
    },
}

/// Step geometry and origin. Step `k` covers `[origin + k*step, origin + (k+1)*step)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    origin: SystemTime,
    step: Duration,
    day_steps: usize,
}

impl Clock {
    /// A clock whose step 0 starts at `origin` (a Monday 00:00 of the tenants' day).
    /// `model_day_steps` is the sidecar's `clock.day_steps`: `day / step` must equal it.
    pub fn new(
        step: Duration,
        day: Duration,
        origin: SystemTime,
        model_day_steps: usize,
    ) -> Result<Self, ClockError> {
        if step.is_zero() {
            return Err(ClockError::ZeroStep);
        }
        let (step_ns, day_ns) = (step.as_nanos(), day.as_nanos());
        let (step_seconds, day_seconds) = (step.as_secs_f64(), day.as_secs_f64());
        if day_ns % step_ns != 0 {
            return Err(ClockError::DayNotWholeSteps {
                step_seconds,
                day_seconds,
            });
        }
        let day_steps = day_ns / step_ns;
        if day_steps != model_day_steps as u128 {
            return Err(ClockError::DayStepsMismatch {
                step_seconds,
                day_seconds,
                day_steps,
                model_day_steps,
            });
        }
        Ok(Self {
            origin,
            step,
            day_steps: model_day_steps,
        })
    }

    /// A real host's clock: step 0 at 1970-01-05T00:00:00Z plus `origin_offset_seconds`.
    /// For days that start at the tenants' local midnight, the offset is minus their UTC
    /// offset (UTC+2: local midnight is 22:00 UTC, so -7200).
    pub fn host(
        step: Duration,
        day: Duration,
        origin_offset_seconds: i64,
        model_day_steps: usize,
    ) -> Result<Self, ClockError> {
        let monday = UNIX_EPOCH + Duration::from_secs(MONDAY_EPOCH_SECONDS);
        let shift = Duration::from_secs(origin_offset_seconds.unsigned_abs());
        let origin = if origin_offset_seconds >= 0 {
            monday + shift
        } else {
            monday - shift
        };
        Self::new(step, day, origin, model_day_steps)
    }

    pub fn step(&self) -> Duration {
        self.step
    }

    pub fn origin(&self) -> SystemTime {
        self.origin
    }

    pub fn day_steps(&self) -> usize {
        self.day_steps
    }

    pub fn week_steps(&self) -> usize {
        7 * self.day_steps
    }

    /// The absolute step of an instant: `floor((at - origin) / step)`, negative before
    /// the origin.
    pub fn step_of(&self, at: SystemTime) -> i64 {
        let ns = self.nanos_since_origin(at);
        clamp_i64(ns.div_euclid(self.step.as_nanos() as i128))
    }

    /// The step a tick measured: the one its interval ends in, a tick that ends exactly
    /// on a step boundary counting for the step before (it measured that step's last
    /// interval, not the next one's first).
    pub fn tick_step(&self, observed_at: SystemTime) -> i64 {
        let ns = self.nanos_since_origin(observed_at) - 1;
        clamp_i64(ns.div_euclid(self.step.as_nanos() as i128))
    }

    /// The instant step `k` starts.
    pub fn step_start(&self, k: i64) -> SystemTime {
        let ns = k as i128 * self.step.as_nanos() as i128;
        let d = Duration::from_nanos(ns.unsigned_abs().min(u64::MAX as u128) as u64);
        if ns >= 0 {
            self.origin + d
        } else {
            self.origin - d
        }
    }

    fn nanos_since_origin(&self, at: SystemTime) -> i128 {
        match at.duration_since(self.origin) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        }
    }
}

fn clamp_i64(x: i128) -> i64 {
    x.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(300);
    const DAY: Duration = Duration::from_secs(86_400);

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn real_host_steps_start_on_monday() {
        let c = Clock::host(S, DAY, 0, 288).expect("valid clock");
        assert_eq!(c.week_steps(), 2016);
        assert_eq!(c.step_of(at(MONDAY_EPOCH_SECONDS)), 0);
        assert_eq!(c.step_of(at(MONDAY_EPOCH_SECONDS + 299)), 0);
        assert_eq!(c.step_of(at(MONDAY_EPOCH_SECONDS + 300)), 1);
        assert_eq!(c.step_of(at(MONDAY_EPOCH_SECONDS - 1)), -1);
        // 2026-11-30 is a Monday: its 00:00 UTC is a whole number of weeks later.
        let monday = 1_795_996_800;
        assert_eq!(c.step_of(at(monday)).rem_euclid(2016), 0);
        assert_eq!(c.step_start(c.step_of(at(monday + 301))), at(monday + 300));
    }

    #[test]
    fn origin_offset_shifts_the_day() {
        // UTC+2: local midnight is 22:00 UTC the day before.
        let c = Clock::host(S, DAY, -7200, 288).expect("valid clock");
        assert_eq!(c.step_of(at(MONDAY_EPOCH_SECONDS - 7200)), 0);
        assert_eq!(c.step_of(at(MONDAY_EPOCH_SECONDS)), 24);
    }

    #[test]
    fn a_tick_ending_on_a_boundary_counts_for_the_step_it_measured() {
        let c = Clock::new(
            Duration::from_secs(1),
            Duration::from_secs(288),
            UNIX_EPOCH,
            288,
        )
        .expect("lab clock");
        assert_eq!(c.tick_step(at(10)), 9);
        assert_eq!(c.tick_step(UNIX_EPOCH + Duration::from_millis(10_001)), 10);
        assert_eq!(c.step_of(at(10)), 10);
    }

    #[test]
    fn a_day_that_is_not_the_models_is_refused_naming_the_settings() {
        let e = Clock::new(Duration::from_secs(60), DAY, UNIX_EPOCH, 288).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("step_seconds = 60")
                && text.contains("day_seconds = 86400")
                && text.contains("1440 steps")
                && text.contains("288"),
            "{text}"
        );
        let e = Clock::new(Duration::from_secs(7), DAY, UNIX_EPOCH, 288).unwrap_err();
        assert!(matches!(e, ClockError::DayNotWholeSteps { .. }), "{e}");
        assert_eq!(
            Clock::new(Duration::ZERO, DAY, UNIX_EPOCH, 288).unwrap_err(),
            ClockError::ZeroStep
        );
    }
}
