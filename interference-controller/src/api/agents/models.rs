//! `GET /agent/v1/models/{sha}` and `/agent/v1/blobs/{sha}`: bundle manifests and files,
//! served as the exact bytes their address is the sha256 of.

use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use crate::middleware::auth::HostAuth;
use crate::middleware::error::ApiError;
use crate::state::AppState;
use crate::store::models;

pub async fn manifest(
    State(state): State<AppState>,
    HostAuth(_host): HostAuth,
    Path(sha256): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let text = models::get_manifest(&state.db, &sha256)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no bundle {sha256}")))?;
    Ok(([(CONTENT_TYPE, "application/json")], text))
}

pub async fn blob(
    State(state): State<AppState>,
    HostAuth(_host): HostAuth,
    Path(sha256): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = models::get_blob(&state.db, &sha256)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no file {sha256}")))?;
    Ok(([(CONTENT_TYPE, "application/octet-stream")], bytes))
}
