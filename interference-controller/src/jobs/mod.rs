//! Background jobs, run by one replica at a time: the one holding the leadership
//! ([`leader`]: a PostgreSQL advisory lock, or simply the one process on a SQLite file).
//! Each job is idempotent, so a leadership change mid-run costs nothing but a repeat.
//!
//! | job | every | does |
//! |---|---|---|
//! | reservations | 5 s | active reservations past their expiry give their room back |
//! | rollout | 30 s | evaluates the running rollout's outcomes: promote, hold or roll back |
//! | prune | 1 h | drops per-batch bookkeeping older than 30 days (never items) |
//! | cap credits | 1 min | credits back what a closed period's charges exceed a customer's cap by |

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
    pub cap_credits: Duration,
}

impl Default for JobPeriods {
    fn default() -> Self {
        Self {
            reservations: Duration::from_secs(5),
            rollout: Duration::from_secs(30),
            prune: Duration::from_secs(3600),
            cap_credits: Duration::from_secs(60),
        }
    }
}

const KEEP_BATCHES_MS: i64 = 30 * 86_400_000;

pub fn spawn_jobs(
    db: Db,
    metrics: Arc<Metrics>,
    mut leader: watch::Receiver<bool>,
    periods: JobPeriods,
    ids: crate::domain::public_ids::PublicIds,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reservations = tokio::time::interval(periods.reservations);
        let mut rollout = tokio::time::interval(periods.rollout);
        let mut prune = tokio::time::interval(periods.prune);
        let mut cap_credits = tokio::time::interval(periods.cap_credits);
        for i in [
            &mut reservations,
            &mut rollout,
            &mut prune,
            &mut cap_credits,
        ] {
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
                _ = cap_credits.tick() => {
                    if *leader.borrow() {
                        let now = u64::try_from(crate::db::sql::now_ms()).unwrap_or(0);
                        let closed = interference_core::billing::Period::containing(now).previous();
                        match crate::store::influence::credit_cap_overshoot(&db, &ids, closed).await {
                            Ok(0) => {}
                            Ok(n) => info!(lines = n, period = %closed, "credited back charges over customers' monthly caps"),
                            Err(e) => {
                                metrics.job_error("cap_credits");
                                warn!(error = %e, "charge-cap credits failed; will retry");
                            }
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
