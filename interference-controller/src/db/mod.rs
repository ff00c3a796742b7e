//! The database: one sqlx `Any` pool over SQLite (the embedded default, a file) or
//! PostgreSQL (fleets, several replicas), one set of migrations for both, and the few
//! places where the two differ (connection pragmas, the writer gate, advisory locks).
//!
//! SQLite allows one writer at a time. Left to itself, a second writer waits in
//! SQLite's busy handler, which sleeps in growing steps and makes latency spiky; so
//! writers queue on an in-process gate instead ([`Db::write_gate`]), in arrival order.
//! PostgreSQL needs no gate.

mod error;
pub mod sql;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};
use tokio::sync::{Mutex, MutexGuard};

pub use error::DbError;

/// Where the embedded default keeps its database.
pub const DEFAULT_DATABASE: &str = "sqlite:///var/lib/interference/controller.db";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(DbError::Url {
                url: redact(url),
                message: "expected sqlite://PATH or postgres://...".into(),
            })
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DbOptions {
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before answering 503.
    pub acquire_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    url: String,
    gate: Option<Arc<Mutex<()>>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .field("url", &redact(&self.url))
            .finish()
    }
}

impl Db {
    /// Connects (creating a SQLite file and its directory when missing). Does not
    /// migrate: see [`Db::migrate`].
    pub async fn connect(url: &str, options: &DbOptions) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let url = match backend {
            Backend::Sqlite => sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let connect = AnyConnectOptions::from_str(&url)
            .map_err(|e| DbError::Url {
                url: redact(&url),
                message: e.to_string(),
            })?
            .disable_statement_logging();
        let max = match backend {
            // Readers run beside the one writer (WAL); more connections only add
            // contention for the file.
            Backend::Sqlite => options.max_connections.min(8),
            Backend::Postgres => options.max_connections,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the writer. synchronous=FULL: a
                        // committed batch (and so an acknowledged one) survives a power
                        // cut, not only a crash of this process.
                        // Checkpoints run from a background task (see
                        // `spawn_sqlite_checkpointer`), not inside a commit.
                        conn.execute(
                            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=15000; PRAGMA wal_autocheckpoint=0;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect)
            .await
            .map_err(|source| DbError::Connect {
                url: redact(&url),
                source,
            })?;
        Ok(Self {
            pool,
            backend,
            gate: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
            url,
        })
    }

    /// Applies the migrations this build carries (idempotent; safe from several
    /// replicas at once: sqlx takes a lock around them).
    pub async fn migrate(&self) -> Result<(), DbError> {
        MIGRATOR.run(&self.pool).await.map_err(DbError::Migrate)
    }

    pub async fn connect_and_migrate(url: &str, options: &DbOptions) -> Result<Self, DbError> {
        let db = Self::connect(url, options).await?;
        db.migrate().await?;
        Ok(db)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Hold this while writing (SQLite: one writer at a time, queued in order; a
    /// no-op on PostgreSQL).
    pub async fn write_gate(&self) -> Option<MutexGuard<'_, ()>> {
        match &self.gate {
            Some(m) => Some(m.lock().await),
            None => None,
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(DbError::from)
    }

    /// SQLite: copies the write-ahead log into the database file every second, in
    /// PASSIVE mode (never waits for, nor blocks, the writer). Left to SQLite, the
    /// checkpoint runs inside whichever commit crosses 1000 pages and that commit waits
    /// for the database file's fsync: a stall of up to a second on a slow disk, for a
    /// batch that had nothing to do with it.
    pub fn spawn_sqlite_checkpointer(&self) -> Option<tokio::task::JoinHandle<()>> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let pool = self.pool.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if pool.is_closed() {
                    return;
                }
                let _ = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await;
            }
        }))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `sqlite:///abs/path` or `sqlite:relative` -> a URL that creates the file, after
/// creating its directory.
fn sqlite_url(url: &str) -> Result<String, DbError> {
    let rest = url.trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = path.strip_prefix("//").unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return Err(DbError::Url {
            url: url.into(),
            message: "the controller keeps its state in a file: sqlite:///path/to/controller.db"
                .into(),
        });
    }
    if let Some(dir) = std::path::Path::new(path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|source| DbError::Dir {
                dir: dir.to_path_buf(),
                source,
            })?;
        }
    }
    let query = if query.contains("mode=") {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The file of a SQLite URL (for its lock file).
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest.split('?').next()?;
    let path = path.strip_prefix("//").unwrap_or(path);
    (!path.is_empty()).then(|| std::path::PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            redact("postgres://ctl:secret@127.0.0.1:5433/fleet"),
            "postgres://ctl:***@127.0.0.1:5433/fleet"
        );
        assert_eq!(
            redact("postgres://127.0.0.1/fleet"),
            "postgres://127.0.0.1/fleet"
        );
        assert_eq!(Backend::of_url("sqlite:///x").ok(), Some(Backend::Sqlite));
        assert!(Backend::of_url("mysql://x").is_err());
        assert_eq!(
            sqlite_path("sqlite:///var/lib/x.db?mode=rwc"),
            Some("/var/lib/x.db".into())
        );
    }
}
