//! Group commit for SQLite: batches that arrive while one is being stored wait, and
//! are then stored together in one transaction, one savepoint each, with one fsync for
//! all of them. SQLite has one writer and (with `synchronous=FULL`) one fsync per
//! commit, so committing each batch alone caps ingest at the disk's fsync rate (a few
//! hundred per second on the build machines); grouped, the same disk takes tens of
//! batches per fsync.
//!
//! Each batch still stands alone: its savepoint is released only if all its
//! statements succeeded, else rolled back and that batch alone answered with the
//! error. Every batch of a group is acknowledged only after the group's commit. A
//! failed commit fails the whole group (nothing was stored; the agents resend).
//! PostgreSQL does not need this: its concurrent commits already share WAL flushes.

use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::ingest::{store, KindCounts, Prepared};
use crate::db::{Db, DbError};
use interference_fleet::wire::IngestAck;

/// What a batch's submitter is told.
type Outcome = Result<(IngestAck, KindCounts), DbError>;
type Reply = oneshot::Sender<Outcome>;

/// At most this many batches (and about this many items) per group.
const MAX_BATCHES: usize = 64;
const MAX_ITEMS: usize = 20_000;

#[derive(Clone)]
pub struct GroupCommitter {
    tx: mpsc::Sender<(Prepared, usize, Reply)>,
}

impl GroupCommitter {
    pub fn spawn(db: Db) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(writer(db, rx));
        Self { tx }
    }

    /// Stores one prepared batch (of `items` items); answers after its group committed.
    pub async fn submit(&self, prepared: Prepared, items: usize) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let gone = || DbError::Query(sqlx::Error::PoolClosed);
        self.tx
            .send((prepared, items, reply))
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn writer(db: Db, mut rx: mpsc::Receiver<(Prepared, usize, Reply)>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        let mut items = group[0].1;
        while group.len() < MAX_BATCHES && items < MAX_ITEMS {
            match rx.try_recv() {
                Ok(job) => {
                    items += job.1;
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        commit_group(&db, group).await;
    }
}

async fn commit_group(db: &Db, group: Vec<(Prepared, usize, Reply)>) {
    let _gate = db.write_gate().await;
    let mut tx = match db.pool().begin().await {
        Ok(tx) => tx,
        Err(e) => {
            let message = e.to_string();
            for (_, _, reply) in group {
                let _ = reply.send(Err(DbError::Query(sqlx::Error::Protocol(message.clone()))));
            }
            return;
        }
    };
    let mut done: Vec<(Reply, Outcome)> = Vec::new();
    for (prepared, _, reply) in group {
        let result = async {
            sqlx::query("SAVEPOINT batch").execute(&mut *tx).await?;
            match store(db.backend(), &mut tx, prepared).await {
                Ok(out) => {
                    sqlx::query("RELEASE SAVEPOINT batch")
                        .execute(&mut *tx)
                        .await?;
                    Ok(out)
                }
                Err(e) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT batch")
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("RELEASE SAVEPOINT batch")
                        .execute(&mut *tx)
                        .await?;
                    Err(e)
                }
            }
        }
        .await
        .map_err(DbError::Query);
        done.push((reply, result));
    }
    match tx.commit().await {
        Ok(()) => {
            for (reply, result) in done {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            warn!(error = %e, batches = done.len(), "group commit failed; the agents will resend");
            let message = e.to_string();
            for (reply, _) in done {
                let _ = reply.send(Err(DbError::Query(sqlx::Error::Protocol(message.clone()))));
            }
        }
    }
}
