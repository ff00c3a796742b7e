//! `interference-controller serve`.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use interference_controller::middleware::rate_limit::RateLimit;

use interference_controller::db::{sqlite_path, Backend};
use interference_controller::server::{start, ServerConfig};

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// Database connections per replica (SQLite: at most 8).
    #[arg(long, default_value_t = 16)]
    pub max_connections: u32,
    /// How often agents are asked to heartbeat.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub heartbeat_every: Option<Duration>,
    /// The most items one ingest batch may hold.
    #[arg(long, default_value_t = 5000)]
    pub max_batch_items: u32,
    /// Batches stored at once; up to 3x more wait up to 3 s, the rest get 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub max_ingest_in_flight: usize,
    /// Customer API requests per second per token (bursts of twice that); past it,
    /// 429 with Retry-After.
    #[arg(long, default_value_t = 20.0)]
    pub customer_rate: f64,
}

pub async fn run(database: &str, args: &ServeArgs) -> Result<()> {
    let listen: SocketAddr = args.listen.parse().with_context(|| {
        format!(
            "--listen {:?} is not an address like 127.0.0.1:7070",
            args.listen
        )
    })?;
    // One process per SQLite file: replicas need PostgreSQL.
    let _lock = if Backend::of_url(database)? == Backend::Sqlite {
        let path = sqlite_path(database).context("no file in the SQLite URL")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let lock_path = path.with_extension("serve.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            bail!(
                "another controller serves {} (lock {} is held); several replicas need --database postgres://...",
                path.display(),
                lock_path.display()
            );
        }
        Some(file)
    } else {
        None
    };
    let mut config = ServerConfig::new(database, listen);
    config.db.max_connections = args.max_connections;
    if let Some(h) = args.heartbeat_every {
        config.settings.heartbeat_every = h;
    }
    config.settings.max_batch_items = args.max_batch_items;
    config.settings.max_ingest_in_flight = args.max_ingest_in_flight;
    if !(args.customer_rate > 0.0 && args.customer_rate.is_finite()) {
        anyhow::bail!(
            "--customer-rate {}: requests per second per token, above 0",
            args.customer_rate
        );
    }
    config.settings.customer_rate = RateLimit {
        per_second: args.customer_rate,
        burst: 2.0 * args.customer_rate,
    };
    let server = start(config).await.context("cannot start the controller")?;
    println!("listening on {}", server.addr);
    server.wait(shutdown_signal()).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
