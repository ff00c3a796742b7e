//! What every request handler shares: the database, metrics, the fleet snapshot, the
//! token cache and the ingest admission limits. Stateless across requests otherwise:
//! everything durable is in the database, so any number of replicas can serve one
//! fleet.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::db::Db;
use crate::desired::Snapshot;
use crate::domain::public_ids::PublicIds;
use crate::metrics::Metrics;
use crate::middleware::rate_limit::{RateLimit, RateLimiter};
use crate::token_cache::TokenCache;

/// Settings of a serving controller.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub heartbeat_every: Duration,
    pub max_batch_items: u32,
    /// The longest a desired-state poll is held.
    pub max_long_poll: Duration,
    /// Reload the fleet snapshot at least this often (tenant caps move with ingest).
    pub snapshot_reload: Duration,
    /// Batches being stored at once (on SQLite they queue for the one writer). A batch
    /// beyond that waits up to `max_ingest_wait` for its turn, with at most
    /// `max_ingest_waiting` others; past either it is answered `429` with `Retry-After`
    /// before any database work, so that a fleet replaying after an outage backs off
    /// cheaply instead of timing out and resending, and the bodies held in memory stay
    /// bounded.
    pub max_ingest_in_flight: usize,
    pub max_ingest_waiting: usize,
    pub max_ingest_wait: Duration,
    /// Requests per customer token (the customer API).
    pub customer_rate: RateLimit,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            heartbeat_every: Duration::from_secs(10),
            max_batch_items: 5000,
            max_long_poll: Duration::from_secs(60),
            snapshot_reload: crate::desired::RELOAD_EVERY,
            max_ingest_in_flight: 64,
            max_ingest_waiting: 192,
            max_ingest_wait: Duration::from_secs(3),
            customer_rate: RateLimit::default(),
        }
    }
}

pub struct Inner {
    pub db: Db,
    pub metrics: Arc<Metrics>,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub tokens: TokenCache,
    /// SQLite only: batches stored in groups, one fsync per group.
    pub group_commit: Option<crate::store::group_commit::GroupCommitter>,
    pub ingest_slots: Arc<tokio::sync::Semaphore>,
    pub ingest_waiting: std::sync::atomic::AtomicUsize,
    pub settings: ServeSettings,
    /// The fleet's public ids and aliases (the customer API, ingest's public ids).
    pub ids: PublicIds,
    pub rate_limiter: RateLimiter,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        db: Db,
        metrics: Arc<Metrics>,
        snapshot: watch::Receiver<Arc<Snapshot>>,
        settings: ServeSettings,
        ids: PublicIds,
    ) -> Self {
        let group_commit = (db.backend() == crate::db::Backend::Sqlite)
            .then(|| crate::store::group_commit::GroupCommitter::spawn(db.clone()));
        Self(Arc::new(Inner {
            group_commit,
            db,
            metrics,
            snapshot,
            tokens: TokenCache::default(),
            ingest_slots: Arc::new(tokio::sync::Semaphore::new(
                settings.max_ingest_in_flight.max(1),
            )),
            ingest_waiting: std::sync::atomic::AtomicUsize::new(0),
            settings,
            ids,
            rate_limiter: RateLimiter::default(),
        }))
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }
}
