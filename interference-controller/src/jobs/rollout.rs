//! The rollout job: the running rollout's outcomes against its baseline, through the
//! rules of `domain::rollout`, and the transition they call for.

use std::time::Duration;

use tracing::{info, warn};

use crate::db::sql::now_ms;
use crate::db::{Db, DbError};
use crate::domain::rollout::{evaluate, Decision, Stage};
use crate::metrics::Metrics;
use crate::store::rollouts;

/// Evaluates the running rollout once; returns the decision taken (None: no rollout).
pub async fn evaluate_once(db: &Db, metrics: &Metrics) -> Result<Option<Decision>, DbError> {
    let Some(r) = rollouts::active(db).await? else {
        return Ok(None);
    };
    let settings = crate::ops::fleet_settings(db).await?;
    let rules = settings.rollout;
    let (candidate, baseline) =
        rollouts::outcomes(db, &r, rules.flap_window.as_millis() as i64).await?;
    let now = now_ms();
    let age = Duration::from_millis(u64::try_from(now - r.stage_since_ms).unwrap_or(0));
    let decision = evaluate(r.stage, &candidate, &baseline, &rules, age);
    match &decision {
        Decision::Hold(_) => {}
        Decision::Promote(next) => {
            let why = format!(
                "automatic: {:.1} VM-hours in {} no worse than the baseline",
                candidate.vm_hours,
                r.stage.as_str()
            );
            rollouts::set_stage(db, &r.id, *next, &why, now).await?;
            metrics.rollout_transition(next.as_str());
            info!(rollout = %r.id, model = %r.model_sha, to = next.as_str(), "{why}");
        }
        Decision::Rollback(reason) => {
            let why = format!("automatic: {reason}");
            rollouts::set_stage(db, &r.id, Stage::RolledBack, &why, now).await?;
            metrics.rollout_transition(Stage::RolledBack.as_str());
            warn!(rollout = %r.id, model = %r.model_sha, "rolled back: {reason}");
        }
    }
    Ok(Some(decision))
}
