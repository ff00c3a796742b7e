//! Who runs the background jobs. On PostgreSQL: the replica holding a session-level
//! advisory lock, on a connection of its own. The lock dies with that connection, so a
//! replica killed or cut off loses it without anyone cleaning up, and another replica
//! takes it on its next try. On SQLite: the one process serving the file (a lock file
//! keeps a second one out, see `cli::serve`).

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, Row};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::db::{Backend, Db};
use crate::metrics::Metrics;

/// The advisory lock's key: "ifjobs" in ASCII.
pub const ADVISORY_KEY: i64 = 0x6966_6a6f_6273;
/// How often a follower tries for the lock, and the leader checks its connection.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

pub fn spawn_leader(db: &Db, metrics: Arc<Metrics>, tx: watch::Sender<bool>) -> JoinHandle<()> {
    let backend = db.backend();
    let url = db.url().to_owned();
    tokio::spawn(async move {
        if backend == Backend::Sqlite {
            metrics.set_leader(true);
            let _ = tx.send(true);
            tx.closed().await;
            return;
        }
        loop {
            match hold_lock(&url, &metrics, &tx).await {
                Ok(()) => {}
                Err(e) => {
                    if *tx.borrow() {
                        warn!(error = %e, "lost the job leadership");
                    }
                }
            }
            metrics.set_leader(false);
            let _ = tx.send_replace(false);
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
    })
}

/// Tries for the lock until it has it, then holds it while the connection lives.
async fn hold_lock(
    url: &str,
    metrics: &Metrics,
    tx: &watch::Sender<bool>,
) -> Result<(), sqlx::Error> {
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    loop {
        let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(ADVISORY_KEY)
            .fetch_one(&mut conn)
            .await?
            .try_get(0)?;
        if got {
            break;
        }
        if tx.is_closed() {
            return Ok(());
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
    info!("this replica runs the background jobs (advisory lock held)");
    metrics.set_leader(true);
    let _ = tx.send_replace(true);
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if tx.is_closed() {
            return Ok(());
        }
        sqlx::query("SELECT 1").execute(&mut conn).await?;
    }
}
