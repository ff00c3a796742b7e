//! `/v1/actions`: mitigations that touched the customer's VMs, from the customer's own
//! lines of each (so an action is listed to both sides, each under its own id, each
//! seeing the other VM by alias) and the action's steps on its host.

use axum::extract::State;
use axum::Json;

use super::extract::ApiQuery;
use super::redacted::{instant, range, redact_rows};
use super::schema::{Action, ActionList, ActionStep, Error, Range};
use crate::middleware::auth::CustomerAuth;
use crate::middleware::error::ApiError;
use crate::state::AppState;
use crate::store::customer;

const MAX_ACTIONS: i64 = 500;

/// Actions with lines of the customer's in a range, newest first (at most 500).
#[utoipa::path(get, path = "/v1/actions", operation_id = "list_actions", tag = "vms",
    security(("bearer" = [])),
    params(Range),
    responses(
        (status = 200, body = ActionList),
        (status = 400, body = Error), (status = 401, body = Error),
        (status = 429, body = Error),
    ))]
pub async fn list(
    State(state): State<AppState>,
    CustomerAuth(who): CustomerAuth,
    ApiQuery(q): ApiQuery<Range>,
) -> Result<Json<ActionList>, ApiError> {
    let (from_ms, to_ms) = range(q.from.as_deref(), q.to.as_deref())?;
    let rows = customer::actions(&state.db, &who.customer, from_ms, to_ms, MAX_ACTIONS).await?;
    let samples: Vec<String> = rows.iter().map(|a| a.sample_record.clone()).collect();
    let lines = customer::lines_by_record(&state.db, &who.customer, &samples).await?;
    let redacted = redact_rows(&state, &who.customer, &lines).await?;
    let mut actions = Vec::with_capacity(rows.len());
    for a in rows {
        let Some(idx) = lines
            .iter()
            .position(|l| l.stored.record_id == a.sample_record)
        else {
            continue;
        };
        let r = &redacted[idx];
        actions.push(Action {
            id: state.ids.action(&who.customer, &a.action_id),
            vm: r.resource_name.clone(),
            rung: r.action.clone(),
            trigger: r.trigger.map(|t| {
                serde_json::to_value(t)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            }),
            role: r.role.map(|role| {
                serde_json::to_value(role)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            }),
            neighbour: r.neighbor.clone(),
            score: r.contention_score.map(f64::from),
            start: instant(a.start_ms),
            end: instant(a.end_ms),
            seconds: (a.end_ms - a.start_ms) as f64 / 1000.0,
            amount: interference_core::billing::Money::from_nanos(a.nanos).to_string(),
            currency: r.billing_currency.clone(),
            state: a.phases.last().map(|(p, _)| p.clone()),
            steps: a
                .phases
                .iter()
                .map(|(phase, at)| ActionStep {
                    phase: phase.clone(),
                    at: instant(*at),
                })
                .collect(),
            description: r.charge_description.clone(),
        });
    }
    Ok(Json(ActionList { actions }))
}
