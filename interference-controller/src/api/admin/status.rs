//! `GET /admin/v1/status`: hosts, heartbeat ages, versions, rollout, ingest lag.

use axum::extract::State;
use axum::Json;

use crate::middleware::auth::AdminAuth;
use crate::middleware::error::ApiError;
use crate::state::AppState;
use crate::store::status::{self, FleetStatus};

pub async fn status(
    State(state): State<AppState>,
    AdminAuth(_who): AdminAuth,
) -> Result<Json<FleetStatus>, ApiError> {
    Ok(Json(status::fleet(&state.db).await?))
}
