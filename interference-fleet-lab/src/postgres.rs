//! A PostgreSQL cluster for tests: `scripts/postgres.sh start` (which installs Debian's
//! `postgresql` when missing and starts a cluster under /var/tmp), then one fresh
//! database per test so tests do not see each other's rows.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

use crate::workspace_root;

/// The cluster, started.
#[derive(Debug, Clone)]
pub struct Postgres {
    /// `postgres://postgres@127.0.0.1:55432/interference`
    pub url: String,
}

fn script(arg: &str) -> Result<String> {
    let path = workspace_root().join("scripts/postgres.sh");
    let out = Command::new("bash")
        .arg(&path)
        .arg(arg)
        .output()
        .with_context(|| format!("cannot run {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{} {arg} failed ({}): {}{}\nThis test needs PostgreSQL from Debian's packages (apt-get install postgresql) and root to run it as the postgres user.",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Postgres {
    /// Starts the cluster if it is not running (idempotent).
    pub fn ensure() -> Result<Self> {
        let url = script("start")?;
        Ok(Self { url })
    }

    /// `url` reached over the cluster's unix socket instead of TCP on 127.0.0.1: the
    /// way in for a controller in another network namespace (a socket is a file).
    pub fn via_socket(url: &str) -> String {
        let dir = std::env::var("INTERFERENCE_PG_DIR")
            .unwrap_or_else(|_| "/var/tmp/interference-pg".to_owned());
        format!("{url}?host={dir}/sock")
    }

    /// Stops it in immediate mode: no checkpoint, like a crash.
    pub fn kill_immediate(&self) -> Result<()> {
        script("kill").map(|_| ())
    }

    pub fn start(&self) -> Result<()> {
        script("start").map(|_| ())
    }

    /// Drops a database made by [`Self::fresh_database`] (best effort: connections
    /// still open are ended).
    pub fn drop_database(&self, url: &str) {
        let Some((base, name)) = url.rsplit_once('/') else {
            return;
        };
        let port = base.rsplit_once(':').map_or("55432", |(_, p)| p);
        let _ = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qAtc",
            ])
            .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .output();
    }

    /// A new, empty database on the cluster; returns its URL.
    pub fn fresh_database(&self, prefix: &str) -> Result<String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_");
        let (base, _) = self
            .url
            .rsplit_once('/')
            .context("cluster URL has no database")?;
        let port = base.rsplit_once(':').map_or("55432", |(_, p)| p);
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qAtc",
            ])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .context("cannot run psql (apt-get install postgresql-client)")?;
        if !out.status.success() {
            bail!(
                "CREATE DATABASE {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(format!("{base}/{name}"))
    }
}
