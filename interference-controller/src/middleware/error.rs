//! Every failure a handler can return, and how it looks on the wire: a JSON
//! [`ErrorBody`] with a stable code, the status that says whether retrying can help,
//! and `Retry-After` when it can.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use thiserror::Error;
use tracing::{error, warn};

use crate::db::DbError;
use crate::store::models::RegistryError;
use crate::store::placement::PlacementError;
use crate::store::rollouts::RolloutError;
use interference_fleet::wire::{ErrorBody, FieldError};

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("missing or invalid token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the policy document has {} problem(s)", .0.len())]
    InvalidPolicy(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
    #[error("{message}")]
    TooMany { message: String, retry_after_s: u64 },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Placement(#[from] PlacementError),
    #[error(transparent)]
    Rollout(#[from] RolloutError),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

/// Seconds a client is told to wait when the database is out of reach (its own
/// backoff adds jitter on top).
const DB_RETRY_AFTER_S: u64 = 2;

impl ApiError {
    /// (status, code, Retry-After seconds)
    fn parts(&self) -> (StatusCode, &'static str, Option<u64>) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", None),
            Self::InvalidPolicy(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy", None),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
            Self::TooMany { retry_after_s, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many",
                Some(*retry_after_s),
            ),
            Self::Db(e)
            | Self::Registry(RegistryError::Db(e))
            | Self::Placement(PlacementError::Db(e))
            | Self::Rollout(RolloutError::Db(e)) => {
                if e.is_unavailable() {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        Some(DB_RETRY_AFTER_S),
                    )
                } else {
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
                }
            }
            Self::Registry(RegistryError::ShaMismatch { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "sha_mismatch", None)
            }
            Self::Registry(RegistryError::MissingFile { .. }) => {
                (StatusCode::CONFLICT, "missing_file", None)
            }
            Self::Registry(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_bundle", None),
            Self::Placement(PlacementError::Busy { .. }) => {
                (StatusCode::TOO_MANY_REQUESTS, "migrations_busy", Some(30))
            }
            Self::Placement(PlacementError::NoTarget(_)) => {
                (StatusCode::CONFLICT, "no_target", None)
            }
            Self::Placement(PlacementError::NotFound(_)) => {
                (StatusCode::NOT_FOUND, "not_found", None)
            }
            Self::Rollout(RolloutError::UnknownModel(_)) => {
                (StatusCode::NOT_FOUND, "not_found", None)
            }
            Self::Rollout(_) => (StatusCode::CONFLICT, "conflict", None),
        }
    }

    pub fn is_unavailable(&self) -> bool {
        self.parts().0 == StatusCode::SERVICE_UNAVAILABLE
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, retry_after) = self.parts();
        if status.is_server_error() {
            if status == StatusCode::SERVICE_UNAVAILABLE {
                warn!(error = %self, "database unavailable; answering 503");
            } else {
                error!(error = %self, "request failed");
            }
        }
        let fields = match &self {
            Self::InvalidPolicy(f) => f.clone(),
            _ => Vec::new(),
        };
        // Internal errors say what failed, not the SQL.
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            "internal error; see the controller's log".to_owned()
        } else {
            self.to_string()
        };
        let mut response = (
            status,
            Json(ErrorBody {
                code: code.into(),
                message,
                fields,
            }),
        )
            .into_response();
        if let Some(s) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
