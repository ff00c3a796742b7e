//! Horizons in time, mapped to the model's output columns (docs/forecast.md, sections
//! 6 and 8).
//!
//! Output column k is the mean demand forecast over the step k + 1 steps ahead
//! (k = 0..11). A horizon must be a whole number of steps within 1..=12; a horizon
//! shorter than one step (the "next tick" and "30 s" on a 300 s step) is
//! answered by column 0, the mean over the next step, where the caller allows it (the
//! agent does; a replay does not, since its lines name the target's minute).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

use crate::contract::HORIZON_STEPS;

/// A horizon as configured: a duration and the text it was written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Horizon {
    pub duration: Duration,
    text: String,
}

impl fmt::Display for Horizon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What to do with a horizon shorter than one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubStep {
    /// Answer it with the next step's forecast (column 0): the agent.
    NextStep,
    /// Refuse it: a replay, whose lines name the target's minute.
    Refuse,
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum HorizonError {
    #[error("horizon {text:?}: expected a number and a unit (s, m, h or d; a bare number is minutes), e.g. 5m or 1h")]
    Syntax { text: String },
    #[error("horizon {horizon} is zero")]
    Zero { horizon: String },
    #[error(
        "horizon {horizon} is not a whole number of the {step_seconds} s steps the forecaster \
         runs on (valid: {valid})"
    )]
    NotWholeSteps {
        horizon: String,
        step_seconds: f64,
        valid: String,
    },
    #[error(
        "horizon {horizon} is longer than the model forecasts: at most {max_steps} steps of \
         {step_seconds} s ({valid})"
    )]
    TooLong {
        horizon: String,
        step_seconds: f64,
        max_steps: usize,
        valid: String,
    },
}

impl FromStr for Horizon {
    type Err = HorizonError;

    /// `Ns`, `Nm` (or `Nmin`), `Nh`, `Nd`, a bare number being minutes; N may have
    /// decimals (`1.5h`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let syntax = || HorizonError::Syntax {
            text: s.to_string(),
        };
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit_seconds: u128 = match unit.trim() {
            "s" => 1,
            "" | "m" | "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(syntax()),
        };
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if int.is_empty() || frac.contains('.') || frac.len() > 9 {
            return Err(syntax());
        }
        let digits = format!("{int}{frac}");
        let mantissa: u128 = digits.parse().map_err(|_| syntax())?;
        let scale = 10u128.pow(frac.len() as u32);
        let nanos = mantissa
            .checked_mul(unit_seconds * 1_000_000_000)
            .ok_or_else(syntax)?
            / scale;
        let nanos = u64::try_from(nanos).map_err(|_| syntax())?;
        Ok(Self {
            duration: Duration::from_nanos(nanos),
            text: text.to_string(),
        })
    }
}

impl Horizon {
    pub fn from_duration(duration: Duration) -> Self {
        Self {
            duration,
            text: format!("{} s", duration.as_secs_f64()),
        }
    }

    /// The model's output column for this horizon on steps of `step`.
    pub fn column(&self, step: Duration, sub_step: SubStep) -> Result<usize, HorizonError> {
        let (h, s) = (self.duration.as_nanos(), step.as_nanos().max(1));
        let valid = || valid_horizons(step);
        if h == 0 {
            return Err(HorizonError::Zero {
                horizon: self.text.clone(),
            });
        }
        if h < s && sub_step == SubStep::NextStep {
            return Ok(0);
        }
        if h % s != 0 {
            return Err(HorizonError::NotWholeSteps {
                horizon: self.text.clone(),
                step_seconds: step.as_secs_f64(),
                valid: valid(),
            });
        }
        let k = h / s;
        if k > HORIZON_STEPS as u128 {
            return Err(HorizonError::TooLong {
                horizon: self.text.clone(),
                step_seconds: step.as_secs_f64(),
                max_steps: HORIZON_STEPS,
                valid: valid(),
            });
        }
        Ok(k as usize - 1)
    }
}

/// `"5m, 10m, ..., 1h"`-like text of the horizons a step allows, for error messages.
fn valid_horizons(step: Duration) -> String {
    let secs = step.as_secs_f64();
    format!(
        "{} to {} s in steps of {secs} s",
        secs,
        secs * HORIZON_STEPS as f64
    )
}

/// Parses a comma-separated list (`"5m,1h"`).
pub fn parse_list(spec: &str) -> Result<Vec<Horizon>, HorizonError> {
    spec.split(',').map(str::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_secs(300);

    fn h(s: &str) -> Horizon {
        s.parse().expect("valid horizon")
    }

    #[test]
    fn units_and_bare_minutes() {
        assert_eq!(h("30s").duration, Duration::from_secs(30));
        assert_eq!(h("5").duration, Duration::from_secs(300));
        assert_eq!(h("5m").duration, Duration::from_secs(300));
        assert_eq!(h(" 10min ").duration, Duration::from_secs(600));
        assert_eq!(h("1h").duration, Duration::from_secs(3600));
        assert_eq!(h("1.5h").duration, Duration::from_secs(5400));
        assert_eq!(h("0.5d").duration, Duration::from_secs(43_200));
        for bad in ["", "h", "5 x", "-5m", "1.2.3h", "5mm"] {
            assert!(bad.parse::<Horizon>().is_err(), "{bad:?}");
        }
        let list = parse_list("5m,1h").expect("list");
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].to_string(), "1h");
    }

    #[test]
    fn horizons_map_to_columns() {
        assert_eq!(h("5m").column(STEP, SubStep::Refuse), Ok(0));
        assert_eq!(h("1h").column(STEP, SubStep::Refuse), Ok(11));
        assert_eq!(h("30m").column(STEP, SubStep::NextStep), Ok(5));
    }

    #[test]
    fn shorter_than_a_step_is_the_next_step_for_the_agent_only() {
        assert_eq!(h("30s").column(STEP, SubStep::NextStep), Ok(0));
        assert_eq!(h("1s").column(STEP, SubStep::NextStep), Ok(0));
        let e = h("30s").column(STEP, SubStep::Refuse).unwrap_err();
        assert!(
            e.to_string().contains("\"30s\"") || e.to_string().contains("30s"),
            "{e}"
        );
    }

    #[test]
    fn too_long_or_between_steps_is_refused_naming_the_horizon() {
        let e = h("2h").column(STEP, SubStep::NextStep).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, HorizonError::TooLong { .. }) && text.contains("2h"),
            "{text}"
        );
        let e = h("7m").column(STEP, SubStep::NextStep).unwrap_err();
        assert!(matches!(e, HorizonError::NotWholeSteps { .. }) && e.to_string().contains("7m"));
        assert!(matches!(
            h("0m").column(STEP, SubStep::NextStep),
            Err(HorizonError::Zero { .. })
        ));
        // The lab's 1 s steps: 5 min is 300 steps, beyond the model.
        assert!(h("5m")
            .column(Duration::from_secs(1), SubStep::NextStep)
            .is_err());
        assert_eq!(
            h("12s").column(Duration::from_secs(1), SubStep::NextStep),
            Ok(11)
        );
    }
}
