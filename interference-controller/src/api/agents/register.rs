//! `POST /agent/v1/register`: hardware and software of the host.

use axum::extract::State;
use axum::Json;

use crate::db::sql::now_ms;
use crate::middleware::auth::HostAuth;
use crate::middleware::body::Body;
use crate::middleware::error::ApiError;
use crate::state::AppState;
use crate::store::hosts;
use interference_fleet::wire::{Envelope, Register, Registered};

pub async fn register(
    State(state): State<AppState>,
    HostAuth(host): HostAuth,
    Body(body): Body<Register>,
) -> Result<Json<Envelope<Registered>>, ApiError> {
    let row = hosts::register(&state.db, &host, &body).await?;
    Ok(Json(Envelope::new(Registered {
        host: row.id,
        group: row.group,
        server_time_ms: u64::try_from(now_ms()).unwrap_or(0),
        last_seq: u64::try_from(row.last_seq).unwrap_or(0),
        heartbeat_every_ms: state.settings.heartbeat_every.as_millis() as u64,
        max_batch_items: state.settings.max_batch_items,
    })))
}
