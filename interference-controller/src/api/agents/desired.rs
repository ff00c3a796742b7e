//! `GET /agent/v1/desired`: the long poll. Answers at once when the host's desired
//! state differs from the ETag it has (`If-None-Match`), else waits until it changes
//! or `wait_ms` passes (then `304 Not Modified`). A waiting poll holds no database
//! connection: it waits on this replica's snapshot.

use axum::extract::{Query, State};
use axum::http::header::{ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tokio::time::{timeout_at, Instant};

use crate::metrics::Metrics;
use crate::middleware::auth::HostAuth;
use crate::middleware::error::ApiError;
use crate::state::AppState;
use crate::store::hosts;
use interference_fleet::wire::Envelope;

#[derive(Debug, Deserialize)]
pub struct Wait {
    #[serde(default)]
    wait_ms: Option<u64>,
}

/// Decrements the long-poll gauge however the request ends (answer or hang-up).
struct Waiting<'a>(&'a Metrics);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.long_poll(-1);
    }
}

pub async fn desired(
    State(state): State<AppState>,
    HostAuth(host): HostAuth,
    Query(wait): Query<Wait>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let known = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_owned()
        });
    let wait = std::time::Duration::from_millis(wait.wait_ms.unwrap_or(0))
        .min(state.settings.max_long_poll);
    let deadline = Instant::now() + wait;
    let mut snapshot = state.snapshot.clone();
    state.metrics.long_poll(1);
    let _waiting = Waiting(&state.metrics);
    let mut group = hosts::group_of(&state.db, &host).await?.unwrap_or_default();
    loop {
        let desired = snapshot.borrow_and_update().desired_for(&host, &group);
        if known.as_deref() != Some(desired.etag.as_str()) {
            let etag = HeaderValue::from_str(&format!("\"{}\"", desired.etag))
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let mut response = Json(Envelope::new(desired)).into_response();
            response.headers_mut().insert(ETAG, etag);
            return Ok(response);
        }
        match timeout_at(deadline, snapshot.changed()).await {
            Ok(Ok(())) => {
                // The host may have moved to another group; otherwise keep the one read.
                if let Ok(Some(g)) = hosts::group_of(&state.db, &host).await {
                    group = g;
                }
            }
            Ok(Err(_)) | Err(_) => return Ok(StatusCode::NOT_MODIFIED.into_response()),
        }
    }
}
