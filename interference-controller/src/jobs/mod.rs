//! Background jobs, run by one replica at a time: the one holding the leadership
//! ([`leader`]: a PostgreSQL advisory lock, or simply the one process on a SQLite file).
//! Each job is idempotent, so a leadership change mid-run costs nothing but a repeat.
//!
//! | job | every | does |
//! |---|---|---|
//! | reservations | 5 s | active reservations past their expiry give their room back |
//! | rollout | 30 s | evaluates the running rollout's outcomes: promote, hold or roll back |
//! | prune | 1 h | drops per-batch bookkeeping older than 30 days (never items) |

pub mod leader;
mod rollout;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::db::Db;
use crate::metrics::Metrics;

/// How often each job runs.
#[derive(Debug, Clone)]
pub struct JobPeriods {
    pub reservations: Duration,
    pub rollout: Duration,
    pub prune: Duration,
}

impl Default for JobPeriods {
    fn default() -> Self {
        Self {
            reservations: Duration::from_secs(5),
            rollout: Duration::from_secs(30),
            prune: Duration::from_secs(3600),
        }
    }
}

const KEEP_BATCHES_MS: i64 = 30 * 86_400_000;

pub fn spawn_jobs(
    db: Db,
    metrics: Arc<Metrics>,
    mut leader: watch::Receiver<bool>,
    periods: JobPeriods,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reservations = tokio::time::interval(periods.reservations);
        let mut rollout = tokio::time::interval(periods.rollout);
        let mut prune = tokio::time::interval(periods.prune);
        for i in [&mut reservations, &mut rollout, &mut prune] {
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                changed = leader.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
                _ = reservations.tick() => {
                    if *leader.borrow() {
                        match crate::store::placement::expire(&db).await {
                            Ok(0) => {}
                            Ok(n) => info!(expired = n, "reservations expired; their room is free again"),
                            Err(e) => {
                                metrics.job_error("reservations");
                                warn!(error = %e, "reservation expiry failed; will retry");
                            }
                        }
                    }
                }
                _ = rollout.tick() => {
                    if *leader.borrow() {
                        if let Err(e) = rollout::evaluate_once(&db, &metrics).await {
                            metrics.job_error("rollout");
                            warn!(error = %e, "rollout evaluation failed; will retry");
                        }
                    }
                }
                _ = prune.tick() => {
                    if *leader.borrow() {
                        if let Err(e) = crate::store::ingest::prune_batches(&db, KEEP_BATCHES_MS).await {
                            metrics.job_error("prune");
                            warn!(error = %e, "pruning batch bookkeeping failed; will retry");
                        }
                    }
                }
            }
        }
    })
}

pub use rollout::evaluate_once as evaluate_rollout_once;
