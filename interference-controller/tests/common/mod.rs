//! Shared set-up for the controller's integration tests: the same test body runs on
//! SQLite (a file in a temp dir) and on PostgreSQL (a fresh database on the cluster
//! that `scripts/postgres.sh` starts). PostgreSQL variants are `#[ignore]`d (they
//! need root and Debian's postgresql) and fail, never skip, when it cannot be had.

#![allow(
    dead_code,
    reason = "each test file uses a different part of this module"
)]

use std::net::SocketAddr;
use std::time::Duration;

use interference_controller::db::{Db, DbOptions};
use interference_controller::jobs::JobPeriods;
use interference_controller::server::{start, RunningServer, ServerConfig};
use interference_controller::state::ServeSettings;
use interference_controller::store::{ingest, tokens};
use interference_fleet::RetryPolicy;
use interference_fleet_lab::postgres::Postgres;
use interference_fleet_lab::sim::{Sent, SimAgent};
use sqlx::Row;

pub mod tenants;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// Runs one async test body on both backends: `both!(name)` makes `name::sqlite` and
/// `name::postgres` (ignored unless --include-ignored).
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Kind::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs root/PostgreSQL"]
            async fn postgres() {
                super::$name($crate::common::Kind::Postgres).await
            }
        }
    };
}

pub struct TestDb {
    pub url: String,
    pub kind: Kind,
    pub pg: Option<Postgres>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn new(kind: Kind) -> Self {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/controller.db", dir.path().display());
                Self {
                    url,
                    kind,
                    pg: None,
                    _dir: Some(dir),
                }
            }
            Kind::Postgres => {
                let pg = Postgres::ensure().unwrap_or_else(|e| panic!("PostgreSQL: {e:#}"));
                let url = pg
                    .fresh_database("ctl")
                    .unwrap_or_else(|e| panic!("PostgreSQL: {e:#}"));
                Self {
                    url,
                    kind,
                    pg: Some(pg),
                    _dir: None,
                }
            }
        }
    }

    pub async fn db(&self) -> Db {
        Db::connect_and_migrate(&self.url, &DbOptions::default())
            .await
            .expect("database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(pg) = &self.pg {
            pg.drop_database(&self.url);
        }
    }
}

/// Fast jobs and reloads, so tests do not wait for production periods.
pub fn fast_config(url: &str) -> ServerConfig {
    let mut c = ServerConfig::new(url, "127.0.0.1:0".parse().expect("addr"));
    c.settings = ServeSettings {
        snapshot_reload: Duration::from_millis(500),
        ..ServeSettings::default()
    };
    c.jobs = JobPeriods {
        reservations: Duration::from_millis(200),
        rollout: Duration::from_millis(300),
        prune: Duration::from_secs(3600),
        cap_credits: Duration::from_millis(500),
    };
    c
}

pub async fn server(db: &TestDb) -> RunningServer {
    start(fast_config(&db.url))
        .await
        .expect("controller starts")
}

pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

pub async fn host_token(db: &Db, host: &str) -> String {
    tokens::create_host_token(db, host, "default")
        .await
        .expect("token")
}

pub async fn admin_token(db: &Db) -> String {
    tokens::create_admin_token(db, "test")
        .await
        .expect("admin token")
}

/// A retry policy for tests: quick, persistent, bounded.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(500),
        max_attempts: None,
        max_elapsed: Some(Duration::from_secs(120)),
    }
}

pub async fn agent(db: &Db, base_url: &str, host: &str) -> SimAgent {
    let token = host_token(db, host).await;
    SimAgent::new(host, base_url, &token, quick_retry()).expect("agent")
}

/// `<host>/<id>` of every row of a per-host table, sorted.
async fn ids(db: &Db, table: &str) -> Vec<String> {
    let mut v: Vec<String> = sqlx::query(&format!("SELECT host_id, id FROM {table}"))
        .fetch_all(db.pool())
        .await
        .expect("select")
        .iter()
        .map(|r| format!("{}/{}", r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect();
    v.sort();
    v
}

/// The controller's tables hold exactly `sent`: every ledger line byte for byte, every
/// other item once.
pub async fn assert_holds_exactly(db: &Db, sent: &Sent) {
    let stored = ingest::ledger_lines(db).await.expect("ledger");
    let expected: Vec<(String, String)> = sent
        .ledger
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(stored.len(), expected.len(), "ledger line count");
    assert!(
        stored == expected,
        "ledger lines differ from what the agents sent"
    );
    for (table, want) in [
        ("action_phases", sent.phases.len()),
        ("rollups", sent.rollups.len()),
        ("score_events", sent.scores.len()),
        ("capacity_samples", sent.capacity.len()),
    ] {
        let n: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(db.pool())
            .await
            .expect("count")
            .get(0);
        assert_eq!(n as usize, want, "{table}");
    }
    let phases = ids(db, "action_phases").await;
    let want: Vec<String> = sent.phases.keys().cloned().collect();
    assert_eq!(phases, want, "action phase ids");
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A plain HTTP client for the admin API.
pub struct Admin {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Admin {
    pub async fn new(db: &Db, addr: SocketAddr) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: url(addr),
            token: admin_token(db).await,
        }
    }

    /// (status, JSON body)
    pub async fn put(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, serde_json::Value) {
        let r = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .await
            .expect("admin request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn post(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("admin request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("admin request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// A fleet client for an existing host token, with a long poll of `long_poll`.
pub fn client(base_url: &str, token: &str, long_poll: Duration) -> interference_fleet::FleetClient {
    let mut c = interference_fleet::ClientConfig::new(base_url, token);
    c.long_poll = long_poll;
    interference_fleet::FleetClient::new(c).expect("client")
}

/// Agents that send batches back to back until `stop` is set, each retrying every batch
/// until acknowledged; returns what they sent and their reports.
pub fn spawn_agents(
    agents: Vec<SimAgent>,
    items_per_batch: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(Sent, interference_fleet_lab::sim::Report)>> {
    agents
        .into_iter()
        .map(|mut a| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut report = interference_fleet_lab::sim::Report::default();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let batch = a.make_batch(items_per_batch);
                    a.send(&batch, &mut report)
                        .await
                        .expect("batch acknowledged in the end");
                }
                (a.sent, report)
            })
        })
        .collect()
}

pub async fn join_agents(
    tasks: Vec<tokio::task::JoinHandle<(Sent, interference_fleet_lab::sim::Report)>>,
) -> (Sent, Vec<interference_fleet_lab::sim::Report>) {
    let mut union = Sent::default();
    let mut reports = Vec::new();
    for t in tasks {
        let (sent, report) = t.await.expect("agent task");
        union.merge(&sent);
        reports.push(report);
    }
    (union, reports)
}

/// A controller on `kind` serving `fleet` (every host's batches ingested through the
/// agents' route), and each host's token. The customer API's rate limit is raised:
/// these tests send hundreds of requests per token on purpose (the limit itself is
/// tested with its default in customer_api.rs).
pub async fn seeded(
    kind: Kind,
    fleet: &tenants::GenFleet,
) -> (
    TestDb,
    RunningServer,
    std::collections::BTreeMap<String, String>,
) {
    let db = TestDb::new(kind);
    let mut config = fast_config(&db.url);
    config.settings.customer_rate.per_second = 1e6;
    config.settings.customer_rate.burst = 1e6;
    let server = start(config).await.expect("controller starts");
    let base = url(server.addr);
    let mut tokens = std::collections::BTreeMap::new();
    for (host, batch) in &fleet.batches {
        if !tokens.contains_key(host) {
            tokens.insert(host.clone(), host_token(&server.db, host).await);
        }
        let ack = client(&base, &tokens[host], Duration::from_secs(1))
            .ingest(batch)
            .await
            .expect("ingest");
        assert!(ack.rejected.is_empty(), "{:?}", ack.rejected);
    }
    (db, server, tokens)
}
