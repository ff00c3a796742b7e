//! Keeps this replica's [`Snapshot`] current: polls the fleet generation (one cheap
//! query per replica, whatever the number of waiting long polls) and reloads when it
//! moved, and every [`RELOAD_EVERY`] anyway (tenant caps move with ingest, not with
//! the generation). While the database is out of reach the last snapshot stays.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::Snapshot;
use crate::db::Db;
use crate::metrics::Metrics;

pub const RELOAD_EVERY: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(250);

pub fn spawn_watcher(
    db: Db,
    metrics: Arc<Metrics>,
    tx: watch::Sender<Arc<Snapshot>>,
    reload_every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_reload = Instant::now();
        let mut failing = false;
        loop {
            tokio::time::sleep(POLL).await;
            let current = tx.borrow().generation;
            let generation = match crate::store::tokens::generation(&db).await {
                Ok(g) => g,
                Err(e) => {
                    if !failing {
                        warn!(error = %e, "cannot read the fleet generation; desired states stay as they are");
                        failing = true;
                    }
                    continue;
                }
            };
            if generation == current && last_reload.elapsed() < reload_every {
                continue;
            }
            match Snapshot::load(&db).await {
                Ok(s) => {
                    if failing {
                        info!("database reachable again");
                        failing = false;
                    }
                    metrics.set_generation(s.generation);
                    last_reload = Instant::now();
                    let changed = s.generation != current;
                    tx.send_if_modified(|old| {
                        let differs = changed
                            || old.blocked_tenants != s.blocked_tenants
                            || old.settings != s.settings;
                        *old = Arc::new(s);
                        differs
                    });
                }
                Err(e) => {
                    if !failing {
                        warn!(error = %e, "cannot reload the fleet snapshot");
                        failing = true;
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    })
}
