//! Host tokens and draining.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;

use crate::middleware::auth::AdminAuth;
use crate::middleware::error::ApiError;
use crate::state::AppState;
use crate::store::{hosts, tokens};

#[derive(Debug, Deserialize, Default)]
pub struct NewToken {
    #[serde(default)]
    pub group: Option<String>,
}

/// A new token for the host (created in `group`, default "default", if new). The token
/// is in this answer and nowhere else.
pub async fn create_token(
    State(state): State<AppState>,
    AdminAuth(_who): AdminAuth,
    Path(host): Path<String>,
    body: Option<Json<NewToken>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let group = body
        .and_then(|Json(b)| b.group)
        .unwrap_or_else(|| "default".into());
    let token = tokens::create_host_token(&state.db, &host, &group).await?;
    Ok(Json(serde_json::json!({"host": host, "token": token})))
}

#[derive(Debug, Deserialize)]
pub struct Drain {
    pub draining: bool,
}

pub async fn drain(
    State(state): State<AppState>,
    AdminAuth(_who): AdminAuth,
    Path(host): Path<String>,
    Json(body): Json<Drain>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !hosts::set_draining(&state.db, &host, body.draining).await? {
        return Err(ApiError::NotFound(format!("no host {host}")));
    }
    Ok(Json(
        serde_json::json!({"host": host, "draining": body.draining}),
    ))
}
