//! `/v1/vms`: the customer's VMs, and each one's contention over time with its
//! neighbours by alias.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;

use super::extract::{ApiPath, ApiQuery};
use super::redacted::{instant, range};
use super::schema::{
    Cell, Error, NeighbourRow, PairScore, Range, ScoreTimeline, Vm, VmList, Window,
};
use crate::middleware::auth::CustomerAuth;
use crate::middleware::error::ApiError;
use crate::state::AppState;
use crate::store::customer::{self, PairScoreRow, VmRow};

const CELL_MS: i64 = 300_000;

fn vm(r: VmRow) -> Vm {
    Vm {
        id: r.vm_id,
        name: r.name,
        uuid: r.uuid,
        first_seen: instant(r.first_ms),
        last_seen: instant(r.last_ms),
    }
}

/// The one answer for a VM that is not the caller's, whether it exists or not.
pub fn no_such_vm() -> ApiError {
    ApiError::NotFound("no such VM".to_owned())
}

/// The customer's VMs, over every host they ran on.
#[utoipa::path(get, path = "/v1/vms", operation_id = "list_vms", tag = "vms",
    security(("bearer" = [])),
    responses(
        (status = 200, body = VmList),
        (status = 401, body = Error), (status = 429, body = Error),
    ))]
pub async fn list(
    State(state): State<AppState>,
    CustomerAuth(who): CustomerAuth,
) -> Result<Json<VmList>, ApiError> {
    let vms = customer::vms(&state.db, &who.customer).await?;
    Ok(Json(VmList {
        vms: vms.into_iter().map(vm).collect(),
    }))
}

/// How `viewer` sees the other VM of a pair score.
fn neighbour(state: &AppState, viewer: &str, p: &PairScoreRow) -> (String, bool) {
    match (&p.other_vm_id, &p.other_customer) {
        (Some(_), Some(c)) if c == viewer => (p.other_name.clone(), true),
        (Some(id), Some(_)) => (state.ids.neighbour(viewer, id), false),
        _ => (
            state
                .ids
                .neighbour_on_host(viewer, &p.host_id, &format!("name:{}", p.other_name)),
            false,
        ),
    }
}

/// One VM's windows, pair scores and neighbour heatmap over a range.
#[utoipa::path(get, path = "/v1/vms/{vm}/scores", operation_id = "vm_scores", tag = "vms",
    security(("bearer" = [])),
    params(("vm" = String, Path, description = "The VM's id from /v1/vms"), Range),
    responses(
        (status = 200, body = ScoreTimeline),
        (status = 400, body = Error), (status = 401, body = Error),
        (status = 404, body = Error), (status = 429, body = Error),
    ))]
pub async fn scores(
    State(state): State<AppState>,
    CustomerAuth(who): CustomerAuth,
    ApiPath(vm_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<Range>,
) -> Result<Json<ScoreTimeline>, ApiError> {
    let (from_ms, to_ms) = range(q.from.as_deref(), q.to.as_deref())?;
    let places = customer::places(&state.db, &who.customer, &vm_id).await?;
    let Some(row) = customer::vms(&state.db, &who.customer)
        .await?
        .into_iter()
        .find(|v| v.vm_id == vm_id)
        .filter(|_| !places.is_empty())
    else {
        return Err(no_such_vm());
    };
    let windows = customer::rollups(&state.db, &places, from_ms, to_ms)
        .await?
        .into_iter()
        .map(|w| Window {
            start: instant(w.window_start_ms),
            seconds: w.window_ms as f64 / 1000.0,
            max_score: w.max_score,
            cpu_usage_cores: w.cpu_usage_cores,
            run_queue_wait_ms: w.run_queue_wait_ms,
            actions: w.actions,
        })
        .collect();
    let raw = customer::pair_scores(&state.db, &places, from_ms, to_ms).await?;
    let mut heat: BTreeMap<(String, bool), BTreeMap<i64, f64>> = BTreeMap::new();
    let mut pairs = Vec::with_capacity(raw.len());
    for p in &raw {
        let (name, own) = neighbour(&state, &who.customer, p);
        if p.as_victim {
            let cell = heat
                .entry((name.clone(), own))
                .or_default()
                .entry(p.at_ms - p.at_ms.rem_euclid(CELL_MS))
                .or_insert(0.0);
            *cell = cell.max(p.score);
        }
        pairs.push(PairScore {
            at: instant(p.at_ms),
            score: p.score,
            direction: if p.as_victim { "slowed_by" } else { "slowing" }.to_owned(),
            neighbour: name,
            own_neighbour: own,
        });
    }
    let now = raw.iter().rev().find(|p| p.as_victim).map(|p| {
        let (name, own) = neighbour(&state, &who.customer, p);
        PairScore {
            at: instant(p.at_ms),
            score: p.score,
            direction: "slowed_by".to_owned(),
            neighbour: name,
            own_neighbour: own,
        }
    });
    let neighbours = heat
        .into_iter()
        .map(|((neighbour, own_neighbour), cells)| NeighbourRow {
            neighbour,
            own_neighbour,
            cells: cells
                .into_iter()
                .map(|(start, max_score)| Cell {
                    start: instant(start),
                    max_score,
                })
                .collect(),
        })
        .collect();
    Ok(Json(ScoreTimeline {
        vm: vm(row),
        from: instant(from_ms),
        to: instant(to_ms),
        now,
        windows,
        pairs,
        neighbours,
    }))
}
