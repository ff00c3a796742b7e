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
