//! `POST /agent/v1/ingest`: one batch, one transaction, acknowledged after the commit.

use axum::extract::State;
use axum::Json;
use tracing::warn;

use crate::app::AppState;
use crate::middleware::auth::HostAuth;
use crate::middleware::body::Body;
use crate::middleware::error::ApiError;
use crate::store::ingest;
use interference_fleet::wire::{Envelope, IngestAck, IngestBatch, ItemKind};

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
    let (ack, counts) = ingest::ingest(&state.db, &host, &batch).await?;
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
