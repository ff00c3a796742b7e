//! `POST /agent/v1/heartbeat`: liveness, free capacity, the versions in force.

use axum::extract::State;
use axum::Json;

use crate::db::sql::now_ms;
use crate::middleware::auth::HostAuth;
use crate::middleware::body::Body;
use crate::middleware::error::ApiError;
use crate::state::AppState;
use crate::store::hosts;
use interference_fleet::wire::{Envelope, Heartbeat, HeartbeatAck};

pub async fn heartbeat(
    State(state): State<AppState>,
    HostAuth(host): HostAuth,
    Body(body): Body<Heartbeat>,
) -> Result<Json<Envelope<HeartbeatAck>>, ApiError> {
    hosts::heartbeat(&state.db, &host, &body).await?;
    let group = hosts::group_of(&state.db, &host).await?.unwrap_or_default();
    let etag = state.snapshot().desired_for(&host, &group).etag;
    Ok(Json(Envelope::new(HeartbeatAck {
        server_time_ms: u64::try_from(now_ms()).unwrap_or(0),
        desired_etag: etag,
    })))
}
