//! `POST /agent/v1/placements` and `.../{id}/release`: a migration target with room
//! held for the VM, and the end of that hold.

use axum::extract::{Path, State};
use axum::Json;

use crate::middleware::auth::HostAuth;
use crate::middleware::body::Body;
use crate::middleware::error::ApiError;
use crate::state::AppState;
use crate::store::placement::{self, PlacementError, PlacementLimits};
use interference_fleet::wire::{Envelope, PlacementRequest, Release, Released, Reservation};

pub async fn place(
    State(state): State<AppState>,
    HostAuth(host): HostAuth,
    Body(request): Body<PlacementRequest>,
) -> Result<Json<Envelope<Reservation>>, ApiError> {
    let settings = state.snapshot().settings.clone();
    if !settings.placement {
        state.metrics.reservation("disabled");
        return Err(ApiError::Conflict(
            "placement is off for this fleet ([fleet] placement = false): use the static targets"
                .into(),
        ));
    }
    if request.vcpus == 0 || request.memory_mib == 0 {
        return Err(ApiError::BadRequest(
            "a VM has at least one vCPU and some memory".into(),
        ));
    }
    let limits = PlacementLimits {
        max_concurrent: settings.max_concurrent_migrations,
        ttl_ms: settings.reservation_ttl.as_millis() as i64,
        fresh_ms: settings.heartbeat_fresh.as_millis() as i64,
    };
    match placement::place(&state.db, &host, &request, &limits).await {
        Ok(r) => {
            state.metrics.reservation("reserved");
            Ok(Json(Envelope::new(r)))
        }
        Err(e) => {
            state.metrics.reservation(match &e {
                PlacementError::Busy { .. } => "busy",
                PlacementError::NoTarget(_) => "no_target",
                _ => "error",
            });
            Err(e.into())
        }
    }
}

pub async fn release(
    State(state): State<AppState>,
    HostAuth(host): HostAuth,
    Path(id): Path<String>,
    Body(body): Body<Release>,
) -> Result<Json<Envelope<Released>>, ApiError> {
    let released = placement::release(&state.db, &host, &id, body.outcome).await?;
    Ok(Json(Envelope::new(released)))
}
