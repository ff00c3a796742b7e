//! Database errors, and which of them mean "not now" rather than "never".

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DbError {
    #[error("bad database URL {url}: {message}")]
    Url { url: String, message: String },
    #[error("cannot create the database directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to the database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot migrate the database: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database: {0}")]
    Query(#[from] sqlx::Error),
    #[error("the database holds something this controller cannot use: {0}")]
    Corrupt(String),
}

impl DbError {
    /// The database is (for now) out of reach: the caller should answer 503 and the
    /// client retry. Covers a pool with no connection to give, a connection cut,
    /// PostgreSQL shutting down or starting up, SQLite busy.
    pub fn is_unavailable(&self) -> bool {
        let e = match self {
            Self::Connect { .. } => return true,
            Self::Query(e) => e,
            _ => return false,
        };
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                let code = db.code();
                let code = code.as_deref().unwrap_or("");
                // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now,
                // 08xxx connection exceptions, 40001/40P01 serialization/deadlock
                // (retrying is the cure), SQLite 5/6 busy/locked.
                code.starts_with("57P")
                    || code.starts_with("08")
                    || code == "40001"
                    || code == "40P01"
                    || code == "5"
                    || code == "6"
                    || code == "517"
                    || db.message().contains("database is locked")
            }
            _ => false,
        }
    }
}
