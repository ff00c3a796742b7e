//! Bearer tokens. Agent routes take [`HostAuth`] (the host's name comes from its token,
//! never from the request), admin routes [`AdminAuth`], customer routes
//! [`CustomerAuth`]. Lookups are cached for a
//! minute so that a fleet's heartbeats do not each cost a query; a revoked token stops
//! working within that minute.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::state::AppState;
use crate::store::customer_tokens::{self, Holder};
use crate::store::tokens;
use crate::token_cache::TokenCache;

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

/// The customer a customer-API request acts for: always the token's, never a
/// parameter's. Fails closed: no token, an unknown, expired or revoked one all answer
/// 401 alike; a token over its rate answers 429 with `Retry-After`.
pub struct CustomerAuth(pub Holder);

impl FromRequestParts<AppState> for CustomerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        let holder = customer_tokens::holder(&state.db, token)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        state
            .rate_limiter
            .take(&holder.token_id, state.settings.customer_rate)
            .map_err(|retry_after_s| ApiError::TooMany {
                message: "this token's request rate is over its limit".into(),
                retry_after_s,
            })?;
        Ok(Self(holder))
    }
}

impl CustomerAuth {
    /// The holder, if its token may change things (scope `write`).
    pub fn writer(self) -> Result<Holder, ApiError> {
        match self.0.scope {
            crate::store::customer_tokens::Scope::Write => Ok(self.0),
            crate::store::customer_tokens::Scope::Read => Err(ApiError::Forbidden(
                "this token is read-only; ask your operator for a write token".into(),
            )),
        }
    }
}
