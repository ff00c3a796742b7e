//! `GET`/`PUT /admin/v1/policy/{scope}`: a scope's document (TOML text).

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;

use crate::domain::policy_layers::Scope;
use crate::middleware::auth::AdminAuth;
use crate::middleware::error::ApiError;
use crate::ops::{self, PolicyError};
use crate::state::AppState;
use crate::store::policy;

#[derive(Debug, Serialize)]
pub struct PolicyDoc {
    pub scope: String,
    pub version: i64,
    pub body: String,
}

pub async fn show(
    State(state): State<AppState>,
    AdminAuth(_who): AdminAuth,
    Path(scope): Path<String>,
) -> Result<Json<PolicyDoc>, ApiError> {
    let s = Scope::parse(&scope).map_err(ApiError::BadRequest)?;
    let layer = policy::latest(&state.db, &s)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no document for {scope}")))?;
    Ok(Json(PolicyDoc {
        scope,
        version: layer.version,
        body: layer.body,
    }))
}

pub async fn set(
    State(state): State<AppState>,
    AdminAuth(who): AdminAuth,
    Path(scope): Path<String>,
    body: String,
) -> Result<Json<PolicyDoc>, ApiError> {
    let version = ops::set_policy(&state.db, &scope, &body, &who)
        .await
        .map_err(|e| match e {
            PolicyError::Scope(m) => ApiError::BadRequest(m),
            PolicyError::Invalid(f) => ApiError::InvalidPolicy(f),
            PolicyError::Db(e) => ApiError::Db(e),
        })?;
    Ok(Json(PolicyDoc {
        scope,
        version,
        body,
    }))
}
