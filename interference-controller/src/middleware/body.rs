//! `Envelope<T>` bodies: JSON errors instead of axum's plain-text rejections, and the
//! protocol version checked before a handler sees the body.

use axum::extract::{FromRequest, Request};
use axum::Json;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use interference_fleet::wire::Envelope;

/// The body of an agent request, opened.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(envelope) = Json::<Envelope<T>>::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        envelope
            .open()
            .map(Body)
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }
}
