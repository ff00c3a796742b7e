//! Influence within limits: a customer's preferences (opt out of being a donor,
//! a monthly cap on interference charges), per-VM preferences, and temporary
//! priority requests bounded by the customer's SLA tier. Every request is answered
//! with its reason and written to the customer's audit log; agents receive the result
//! in their desired state (`influence`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use interference_core::billing::{Money, Period};

use super::extract::{ApiJson, ApiPath};
use super::redacted::instant;
use super::schema::{
    Answer, AuditEntry, AuditLog, Error, Grant, Preferences, PreferencesUpdate, PriorityRequest,
    TierView, VmPreference, VmPreferenceUpdate,
};
use super::vms::no_such_vm;
use crate::db::sql::now_ms;
use crate::domain::influence::{decide, hours_in, PriorityContext};
use crate::middleware::auth::CustomerAuth;
use crate::middleware::error::ApiError;
use crate::state::AppState;
use crate::store::customer_tokens::Holder;
use crate::store::{customer, influence};

/// A VM counts on a host for the priority share while named there this recently.
const FRESH_MS: i64 = 15 * 60_000;

fn grant_view(g: &influence::GrantRow, now: i64) -> Grant {
    Grant {
        id: g.id.clone(),
        vm: g.vm_id.clone(),
        name: g.name.clone(),
        start: instant(g.start_ms),
        end: instant(g.effective_end_ms()),
        active: g.start_ms <= now && now < g.effective_end_ms(),
    }
}

fn month(now: i64) -> (Period, i64, i64) {
    let p = Period::containing(u64::try_from(now).unwrap_or(0));
    let start = i64::try_from(p.start_ms()).unwrap_or(0);
    let end = i64::try_from(p.end_ms()).unwrap_or(i64::MAX);
    (p, start, end)
}

async fn used_hours(
    state: &AppState,
    customer: &str,
    now: i64,
) -> Result<(f64, Vec<influence::GrantRow>), ApiError> {
    let (_, start, end) = month(now);
    let grants = influence::grants(&state.db, customer, start).await?;
    let spans: Vec<(i64, i64)> = grants
        .iter()
        .map(|g| (g.start_ms, g.effective_end_ms()))
        .collect();
    Ok((hours_in(start, end, &spans), grants))
}

/// The customer's settings, its tier and its grants.
#[utoipa::path(get, path = "/v1/preferences", tag = "influence", operation_id = "get_preferences",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Preferences),
        (status = 401, body = Error), (status = 429, body = Error),
    ))]
pub async fn get(
    State(state): State<AppState>,
    CustomerAuth(who): CustomerAuth,
) -> Result<Json<Preferences>, ApiError> {
    Ok(Json(preferences(&state, &who.customer).await?))
}

async fn preferences(state: &AppState, c: &str) -> Result<Preferences, ApiError> {
    let now = now_ms();
    let row = influence::customer(&state.db, c).await?;
    let (period, _, _) = month(now);
    let charges = influence::charges_in_period(&state.db, c, &period.to_string()).await?;
    let (used, grants) = used_hours(state, c, now).await?;
    let settings = state.snapshot().settings.clone();
    let tier = row.tier.as_ref().and_then(|t| {
        settings.tiers.get(t).map(|l| TierView {
            name: t.clone(),
            priority_hours_per_month: l.priority_hours_per_month,
            max_priority_share: l.max_priority_share,
        })
    });
    Ok(Preferences {
        customer: c.to_owned(),
        tier,
        no_donor: row.no_donor,
        monthly_charge_cap: row
            .charge_cap_nanos
            .map(|n| Money::from_nanos(n).to_string()),
        charges_this_month: Money::from_nanos(charges).to_string(),
        capped: row.charge_cap_nanos.is_some_and(|cap| charges >= cap),
        priority_hours_used_this_month: used,
        vms: influence::vm_prefs(&state.db, c)
            .await?
            .into_iter()
            .map(|p| VmPreference {
                vm: p.vm_id,
                name: p.name,
                no_donor: p.no_donor,
            })
            .collect(),
        priority: grants.iter().map(|g| grant_view(g, now)).collect(),
    })
}

fn parse_cap(text: &str) -> Result<i64, String> {
    let units: f64 = text.trim().parse().map_err(|_| {
        format!("monthly_charge_cap {text:?} is not a decimal amount like \"25.00\"")
    })?;
    if !(units.is_finite() && (0.0..=1.0e9).contains(&units)) {
        return Err(format!(
            "monthly_charge_cap {text:?}: from 0 to 1000000000 in the billing currency"
        ));
    }
    Money::from_units(units)
        .map(Money::nanos)
        .ok_or_else(|| format!("monthly_charge_cap {text:?} is out of range"))
}

async fn refuse(
    state: &AppState,
    who: &Holder,
    request: &str,
    target: &str,
    reason: String,
) -> Result<Response, ApiError> {
    answer(state, who, request, target, Err(reason)).await
}

/// Records a request's outcome in the customer's audit log and answers it:
/// `Ok((status, reason, grant))` accepted, `Err(reason)` refused (409).
async fn answer(
    state: &AppState,
    who: &Holder,
    request: &str,
    target: &str,
    outcome: Result<(StatusCode, String, Option<Grant>), String>,
) -> Result<Response, ApiError> {
    let (status, accepted, reason, grant) = match outcome {
        Ok((status, reason, grant)) => (status, true, reason, grant),
        Err(reason) => (StatusCode::CONFLICT, false, reason, None),
    };
    influence::audit(
        &state.db,
        &who.customer,
        &who.token_id,
        request,
        target,
        accepted,
        &reason,
    )
    .await?;
    Ok((
        status,
        Json(Answer {
            accepted,
            reason,
            grant,
        }),
    )
        .into_response())
}

/// Changes the customer's own settings.
#[utoipa::path(put, path = "/v1/preferences", tag = "influence", operation_id = "set_preferences",
    security(("bearer" = [])),
    request_body = PreferencesUpdate,
    responses(
        (status = 200, body = Answer), (status = 409, body = Answer),
        (status = 400, body = Error), (status = 401, body = Error),
        (status = 403, body = Error), (status = 429, body = Error),
    ))]
pub async fn set(
    State(state): State<AppState>,
    auth: CustomerAuth,
    ApiJson(update): ApiJson<PreferencesUpdate>,
) -> Result<Response, ApiError> {
    let who = auth.writer()?;
    let mut row = influence::customer(&state.db, &who.customer).await?;
    let mut said = Vec::new();
    if let Some(cap) = &update.monthly_charge_cap {
        match cap {
            None => {
                row.charge_cap_nanos = None;
                said.push("no monthly cap on interference charges".to_owned());
            }
            Some(text) => match parse_cap(text) {
                Ok(n) => {
                    row.charge_cap_nanos = Some(n);
                    said.push(format!(
                        "interference charges capped at {} per month: past it, no new mitigation is charged to you until the month ends",
                        Money::from_nanos(n)
                    ));
                }
                Err(reason) => {
                    return refuse(&state, &who, "set_preferences", "account", reason).await
                }
            },
        }
    }
    if let Some(no_donor) = update.no_donor {
        row.no_donor = no_donor;
        said.push(if no_donor {
            "your VMs are not reduced to protect others unless they cause the slowdown, and get no credits".to_owned()
        } else {
            "your VMs may be reduced to protect others, with a good-neighbour credit".to_owned()
        });
    }
    if said.is_empty() {
        return Err(ApiError::BadRequest(
            "nothing to change: send no_donor and/or monthly_charge_cap".into(),
        ));
    }
    influence::set_customer(&state.db, &who.customer, &row).await?;
    let reason = format!("accepted: {}", said.join("; "));
    answer(
        &state,
        &who,
        "set_preferences",
        "account",
        Ok((StatusCode::OK, reason, None)),
    )
    .await
}

/// The customer's VM `vm_id` (uuid, name), or the one 404 of a VM that is not theirs.
async fn own_vm(state: &AppState, c: &str, vm_id: &str) -> Result<customer::VmRow, ApiError> {
    customer::vms(&state.db, c)
        .await?
        .into_iter()
        .find(|v| v.vm_id == vm_id)
        .ok_or_else(no_such_vm)
}

/// Opts one VM out of (or back into) being a donor.
#[utoipa::path(put, path = "/v1/vms/{vm}/preferences", tag = "influence", operation_id = "set_vm_preferences",
    security(("bearer" = [])),
    params(("vm" = String, Path, description = "The VM's id from /v1/vms")),
    request_body = VmPreferenceUpdate,
    responses(
        (status = 200, body = Answer),
        (status = 400, body = Error), (status = 401, body = Error), (status = 403, body = Error),
        (status = 404, body = Error), (status = 429, body = Error),
    ))]
pub async fn set_vm(
    State(state): State<AppState>,
    auth: CustomerAuth,
    ApiPath(vm_id): ApiPath<String>,
    ApiJson(update): ApiJson<VmPreferenceUpdate>,
) -> Result<Response, ApiError> {
    let who = auth.writer()?;
    let vm = own_vm(&state, &who.customer, &vm_id).await?;
    influence::set_vm_pref(
        &state.db,
        &who.customer,
        &influence::VmPref {
            vm_id: vm.vm_id.clone(),
            uuid: vm.uuid.clone(),
            name: vm.name.clone(),
            no_donor: update.no_donor,
        },
    )
    .await?;
    let reason = if update.no_donor {
        format!("accepted: {} is not reduced to protect others unless it causes the slowdown, and gets no credits", vm.name)
    } else {
        format!(
            "accepted: {} may be reduced to protect others, with a good-neighbour credit",
            vm.name
        )
    };
    answer(
        &state,
        &who,
        "set_vm_preferences",
        &vm.vm_id,
        Ok((StatusCode::OK, reason, None)),
    )
    .await
}

/// Asks for a VM to be a priority VM for some hours, within the SLA tier's limits.
#[utoipa::path(post, path = "/v1/vms/{vm}/priority", tag = "influence", operation_id = "request_priority",
    security(("bearer" = [])),
    params(("vm" = String, Path, description = "The VM's id from /v1/vms")),
    request_body = PriorityRequest,
    responses(
        (status = 201, body = Answer, description = "Granted"),
        (status = 409, body = Answer, description = "Refused, with the limit that refused it"),
        (status = 400, body = Error), (status = 401, body = Error), (status = 403, body = Error),
        (status = 404, body = Error), (status = 429, body = Error),
    ))]
pub async fn request_priority(
    State(state): State<AppState>,
    auth: CustomerAuth,
    ApiPath(vm_id): ApiPath<String>,
    ApiJson(ask): ApiJson<PriorityRequest>,
) -> Result<Response, ApiError> {
    let who = auth.writer()?;
    let vm = own_vm(&state, &who.customer, &vm_id).await?;
    let now = now_ms();
    let row = influence::customer(&state.db, &who.customer).await?;
    let settings = state.snapshot().settings.clone();
    let tier = row
        .tier
        .as_deref()
        .and_then(|t| settings.tiers.get_key_value(t))
        .map(|(k, v)| (k.as_str(), v));
    let (used, grants) = used_hours(&state, &who.customer, now).await?;
    let active_until_ms = grants
        .iter()
        .filter(|g| g.vm_id == vm.vm_id && g.start_ms <= now && now < g.effective_end_ms())
        .map(|g| g.effective_end_ms())
        .max();
    let (host_vms, host_priority_vms) =
        influence::host_priority_load(&state.db, &who.customer, &vm.vm_id, now, FRESH_MS).await?;
    let context = PriorityContext {
        tier,
        used_hours: used,
        active_until_ms,
        host_vms,
        host_priority_vms,
    };
    let (start, end) = match decide(ask.hours, now, &context) {
        Ok(span) => span,
        Err(reason) => return refuse(&state, &who, "request_priority", &vm.vm_id, reason).await,
    };
    let g = influence::GrantRow {
        id: influence::new_grant_id(),
        customer: who.customer.clone(),
        vm_id: vm.vm_id.clone(),
        uuid: vm.uuid.clone(),
        name: vm.name.clone(),
        start_ms: start,
        end_ms: end,
        cancelled_ms: None,
    };
    influence::insert_grant(&state.db, &g, &who.token_id).await?;
    let budget = tier.map_or(0.0, |(_, l)| l.priority_hours_per_month);
    let reason = format!(
        "accepted: {} is a priority VM until {} ({:.2} of {budget} hours this month used)",
        vm.name,
        instant(end),
        used + ask.hours
    );
    answer(
        &state,
        &who,
        "request_priority",
        &vm.vm_id,
        Ok((StatusCode::CREATED, reason, Some(grant_view(&g, now)))),
    )
    .await
}

/// Ends a VM's priority request now (the unused hours are not counted).
#[utoipa::path(delete, path = "/v1/vms/{vm}/priority", tag = "influence", operation_id = "cancel_priority",
    security(("bearer" = [])),
    params(("vm" = String, Path, description = "The VM's id from /v1/vms")),
    responses(
        (status = 200, body = Answer), (status = 409, body = Answer),
        (status = 401, body = Error), (status = 403, body = Error),
        (status = 404, body = Error), (status = 429, body = Error),
    ))]
pub async fn cancel_priority(
    State(state): State<AppState>,
    auth: CustomerAuth,
    ApiPath(vm_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let who = auth.writer()?;
    let vm = own_vm(&state, &who.customer, &vm_id).await?;
    if !influence::cancel_grant(&state.db, &who.customer, &vm.vm_id).await? {
        let reason = format!("{} has no priority request in force", vm.name);
        return refuse(&state, &who, "cancel_priority", &vm.vm_id, reason).await;
    }
    let reason = format!(
        "accepted: {} is no longer a priority VM by request",
        vm.name
    );
    answer(
        &state,
        &who,
        "cancel_priority",
        &vm.vm_id,
        Ok((StatusCode::OK, reason, None)),
    )
    .await
}

/// Every request of the customer's, accepted or refused, newest first (at most 500).
#[utoipa::path(get, path = "/v1/audit", tag = "influence", operation_id = "audit_log",
    security(("bearer" = [])),
    responses(
        (status = 200, body = AuditLog),
        (status = 401, body = Error), (status = 429, body = Error),
    ))]
pub async fn audit(
    State(state): State<AppState>,
    CustomerAuth(who): CustomerAuth,
) -> Result<Json<AuditLog>, ApiError> {
    let rows = influence::audit_log(&state.db, &who.customer, 500).await?;
    Ok(Json(AuditLog {
        entries: rows
            .into_iter()
            .map(|r| AuditEntry {
                id: r.id,
                at: instant(r.at_ms),
                token: r.token_id,
                request: r.request,
                target: r.target,
                accepted: r.accepted,
                reason: r.reason,
            })
            .collect(),
    }))
}
