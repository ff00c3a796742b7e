//! What the engine hands the enforcer each tick: plain data, shared by every step of
//! the tick (rules, escalation, rollback) and by the engine that assembles it.

use serde::Serialize;

use super::action::{Action, ActionResult, Outcome};

/// One tick's decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Decision {
    /// In the order to apply them.
    pub actions: Vec<Action>,
    /// (pair, why): what was due and did not happen, rungs passed over, failures
    /// reported by the outcomes.
    pub skipped: Vec<(String, String)>,
    /// What became of forecasts that started a mitigation, settled this tick.
    pub forecast_outcomes: Vec<(String, ForecastResult)>,
}

/// What became of a forecast that started a mitigation
/// (`interference_forecast_outcomes_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ForecastResult {
    /// The measured (or realised) score reached the on threshold within the horizon.
    Confirmed,
    /// It did not: the mitigation is rolled back and the pair's forecasts are muted for
    /// one horizon.
    Missed,
    /// The pair calmed down (forecast and measurement below off) before the horizon.
    Withdrawn,
}

impl ForecastResult {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Missed => "missed",
            Self::Withdrawn => "withdrawn",
        }
    }
}

impl Decision {
    /// Outcomes as if every action ended with `result` at `at_ms`, for dry runs that
    /// skip the enforcement stage, and for tests.
    pub fn outcomes_as(&self, result: ActionResult, at_ms: u64) -> Vec<Outcome> {
        self.actions
            .iter()
            .map(|a| Outcome {
                action_id: a.id.clone(),
                result,
                at_ms,
                effects: Vec::new(),
                error: (result == ActionResult::Failed).then(|| "failed".to_owned()),
            })
            .collect()
    }
}
