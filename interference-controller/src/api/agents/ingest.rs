//! `POST /agent/v1/ingest`: one batch, one transaction, acknowledged after the commit.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::Json;
use tokio::sync::OwnedSemaphorePermit;
use tracing::warn;

use crate::middleware::auth::HostAuth;
use crate::middleware::body::Body;
use crate::middleware::error::ApiError;
use crate::state::AppState;
use crate::store::ingest;
use interference_fleet::wire::{Envelope, IngestAck, IngestBatch, ItemKind};

/// What a throttled agent is told to wait (its client adds up to half again, at random).
const THROTTLE_RETRY_AFTER_S: u64 = 1;

/// A turn to store a batch: at once if fewer than `max_ingest_in_flight` are being
/// stored, else after waiting (bounded in time and in the number of waiters), else 429.
async fn admit(state: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    if let Ok(permit) = state.ingest_slots.clone().try_acquire_owned() {
        return Ok(permit);
    }
    let settings = &state.settings;
    let waiting = state.ingest_waiting.fetch_add(1, Ordering::Relaxed);
    let permit = if waiting < settings.max_ingest_waiting {
        tokio::time::timeout(
            settings.max_ingest_wait,
            state.ingest_slots.clone().acquire_owned(),
        )
        .await
        .ok()
        .and_then(Result::ok)
    } else {
        None
    };
    state.ingest_waiting.fetch_sub(1, Ordering::Relaxed);
    permit.ok_or_else(|| {
        state.metrics.throttled();
        ApiError::TooMany {
            message: format!(
                "{} batches are being stored and {} waiting; send this one again after Retry-After",
                settings.max_ingest_in_flight, settings.max_ingest_waiting
            ),
            retry_after_s: THROTTLE_RETRY_AFTER_S,
        }
    })
}

pub async fn ingest(
    State(state): State<AppState>,
    HostAuth(host): HostAuth,
    Body(batch): Body<IngestBatch>,
) -> Result<Json<Envelope<IngestAck>>, ApiError> {
    let max = state.settings.max_batch_items as usize;
    if batch.items.len() > max {
        return Err(ApiError::BadRequest(format!(
            "a batch holds at most {max} items, this one has {}; split it",
            batch.items.len()
        )));
    }
    let _slot = admit(&state).await?;
    let (ack, counts) = match &state.group_commit {
        Some(group) => {
            let items = batch.items.len();
            group
                .submit(ingest::prepare(&host, &batch, &state.ids), items)
                .await?
        }
        None => ingest::ingest(&state.db, &host, &batch, &state.ids).await?,
    };
    // Only now, after the commit, is the batch acknowledged.
    for kind in ItemKind::ALL {
        let sent = counts.sent.get(&kind).copied().unwrap_or(0);
        let inserted = counts.inserted.get(&kind).copied().unwrap_or(0);
        if sent > 0 {
            state
                .metrics
                .items(kind, inserted, sent.saturating_sub(inserted));
        }
    }
    state.metrics.rejected_items(ack.rejected.len() as u64);
    state.metrics.batch(ack.replayed_batch, ack.conflicts.len());
    if !ack.conflicts.is_empty() {
        warn!(%host, seq = ack.seq, conflicts = ?ack.conflicts, "ledger record ids already stored with other content; kept the stored lines");
    }
    if !ack.rejected.is_empty() {
        warn!(%host, seq = ack.seq, rejected = ?ack.rejected, "unreadable items quarantined");
    }
    Ok(Json(Envelope::new(ack)))
}
