//! Bearer tokens. Agent routes take [`HostAuth`] (the host's name comes from its token,
//! never from the request), admin routes [`AdminAuth`]. Lookups are cached for a
//! minute so that a fleet's heartbeats do not each cost a query; a revoked token stops
//! working within that minute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::app::AppState;
use crate::store::tokens;

const TTL: Duration = Duration::from_secs(60);
const MAX_ENTRIES: usize = 100_000;

/// token sha256 -> (name, looked up at)
#[derive(Default)]
pub struct TokenCache {
    hosts: Mutex<HashMap<String, (String, Instant)>>,
    admins: Mutex<HashMap<String, (String, Instant)>>,
}

impl TokenCache {
    fn get(map: &Mutex<HashMap<String, (String, Instant)>>, token: &str) -> Option<String> {
        let map = map.lock().ok()?;
        map.get(token)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(name, _)| name.clone())
    }

    fn put(map: &Mutex<HashMap<String, (String, Instant)>>, token: &str, name: &str) {
        if let Ok(mut map) = map.lock() {
            if map.len() >= MAX_ENTRIES {
                map.retain(|_, (_, at)| at.elapsed() < TTL);
            }
            map.insert(token.to_owned(), (name.to_owned(), Instant::now()));
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The authenticated host.
pub struct HostAuth(pub String);

impl FromRequestParts<AppState> for HostAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        if let Some(host) = TokenCache::get(&state.tokens.hosts, token) {
            return Ok(Self(host));
        }
        let host = tokens::host_of(&state.db, token)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        TokenCache::put(&state.tokens.hosts, token, &host);
        Ok(Self(host))
    }
}

/// The authenticated administrator (the token's name).
pub struct AdminAuth(pub String);

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        if let Some(name) = TokenCache::get(&state.tokens.admins, token) {
            return Ok(Self(name));
        }
        let name = tokens::admin_of(&state.db, token)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        TokenCache::put(&state.tokens.admins, token, &name);
        Ok(Self(name))
    }
}
