//! Starting and stopping a serving controller: the database, the snapshot watcher,
//! the leader and its jobs, the HTTP listener. Used by `serve` and by the tests, which
//! start real servers on real databases.

use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::info;

use crate::app::router;
use crate::db::{Db, DbError, DbOptions};
use crate::desired::{spawn_watcher, Snapshot};
use crate::jobs::leader::spawn_leader;
use crate::jobs::{spawn_jobs, JobPeriods};
use crate::metrics::Metrics;
use crate::state::{AppState, ServeSettings};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub database: String,
    pub listen: SocketAddr,
    pub db: DbOptions,
    pub settings: ServeSettings,
    pub jobs: JobPeriods,
}

impl ServerConfig {
    pub fn new(database: impl Into<String>, listen: SocketAddr) -> Self {
        Self {
            database: database.into(),
            listen,
            db: DbOptions::default(),
            settings: ServeSettings::default(),
            jobs: JobPeriods::default(),
        }
    }
}

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub struct RunningServer {
    pub addr: SocketAddr,
    pub db: Db,
    pub metrics: Arc<Metrics>,
    leader: watch::Receiver<bool>,
    shutdown: oneshot::Sender<()>,
    http: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Whether this replica runs the background jobs now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    pub fn leader_watch(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Stops taking requests, lets the ones in flight finish, stops the jobs.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.http.await;
        for task in self.background {
            task.abort();
            let _ = task.await;
        }
        self.db.close().await;
    }

    /// Waits until the HTTP server ends (for `serve`, which ends it on a signal).
    pub async fn wait(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        info!("shutting down: finishing requests in flight");
        self.stop().await;
    }
}

pub async fn start(config: ServerConfig) -> Result<RunningServer, ServeError> {
    let db = Db::connect_and_migrate(&config.database, &config.db).await?;
    let ids = crate::store::secrets::public_ids(&db).await?;
    let backfilled = crate::store::secrets::backfill_public_ids(&db, &ids).await?;
    if backfilled > 0 {
        info!(
            lines = backfilled,
            "gave ledger lines stored before the customer API their public ids"
        );
    }
    let metrics = Arc::new(Metrics::default());
    let snapshot = Snapshot::load(&db).await?;
    metrics.set_generation(snapshot.generation);
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(snapshot));
    let (leader_tx, leader_rx) = watch::channel(false);
    let mut background = vec![
        spawn_watcher(
            db.clone(),
            metrics.clone(),
            snapshot_tx,
            config.settings.snapshot_reload,
        ),
        spawn_leader(&db, metrics.clone(), leader_tx),
        spawn_jobs(
            db.clone(),
            metrics.clone(),
            leader_rx.clone(),
            config.jobs.clone(),
            ids.clone(),
        ),
    ];
    background.extend(db.spawn_sqlite_checkpointer());
    let state = AppState::new(
        db.clone(),
        metrics.clone(),
        snapshot_rx,
        config.settings.clone(),
        ids,
    );
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.listen,
        source,
    })?;
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (shutdown, shutdown_rx) = oneshot::channel::<()>();
    let app = router(state);
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown_rx.await;
            })
            .await
    });
    info!(%addr, backend = db.backend().as_str(), "controller serving");
    Ok(RunningServer {
        addr,
        db,
        metrics,
        leader: leader_rx,
        shutdown,
        http,
        background,
    })
}
