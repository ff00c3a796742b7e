//! The model registry: upload files and manifests (each verified against its sha256),
//! list, promote a bundle one rollout stage, roll back.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;

use crate::middleware::auth::AdminAuth;
use crate::middleware::error::ApiError;
use crate::ops;
use crate::state::AppState;
use crate::store::models::{self, ModelRow};
use crate::store::rollouts::{self, RolloutRow};
use interference_fleet::wire::BundleManifest;

pub async fn put_blob(
    State(state): State<AppState>,
    AdminAuth(_who): AdminAuth,
    Path(sha256): Path<String>,
    bytes: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let new = models::put_blob(&state.db, &sha256, &bytes).await?;
    Ok(Json(
        serde_json::json!({"sha256": sha256, "size": bytes.len(), "new": new}),
    ))
}

pub async fn put_manifest(
    State(state): State<AppState>,
    AdminAuth(_who): AdminAuth,
    Path(sha256): Path<String>,
    bytes: Bytes,
) -> Result<Json<BundleManifest>, ApiError> {
    Ok(Json(
        models::put_manifest(&state.db, &sha256, &bytes).await?,
    ))
}

#[derive(Debug, serde::Serialize)]
pub struct Registry {
    pub models: Vec<ModelRow>,
    pub rollouts: Vec<RolloutRow>,
}

pub async fn list(
    State(state): State<AppState>,
    AdminAuth(_who): AdminAuth,
) -> Result<Json<Registry>, ApiError> {
    Ok(Json(Registry {
        models: models::list(&state.db).await?,
        rollouts: rollouts::list(&state.db).await?,
    }))
}

pub async fn promote(
    State(state): State<AppState>,
    AdminAuth(who): AdminAuth,
    Path(sha256): Path<String>,
) -> Result<Json<RolloutRow>, ApiError> {
    let r = ops::promote(&state.db, &sha256, &who).await?;
    state.metrics.rollout_transition(r.stage.as_str());
    Ok(Json(r))
}

pub async fn rollback(
    State(state): State<AppState>,
    AdminAuth(who): AdminAuth,
) -> Result<Json<RolloutRow>, ApiError> {
    let r = ops::rollback(&state.db, &who).await?;
    state.metrics.rollout_transition(r.stage.as_str());
    Ok(Json(r))
}
