//! PostgreSQL stopped in immediate mode (no checkpoint: a crash) in the middle of
//! ingest, then started again: agents get 503 with Retry-After while it is down, retry
//! with backoff, and the database ends up with exactly what they sent. Its own test
//! binary, since it stops the cluster every other PostgreSQL test uses.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{agent, assert_holds_exactly, join_agents, server, spawn_agents, url, Kind, TestDb};
use interference_fleet_lab::postgres::Postgres;

/// Starts the cluster again however the test ends.
struct Restart(Postgres);

impl Drop for Restart {
    fn drop(&mut self) {
        let _ = self.0.start();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root/PostgreSQL"]
async fn postgres_stopped_in_immediate_mode_mid_ingest() {
    let t = TestDb::new(Kind::Postgres);
    let pg = t.pg.clone().expect("cluster");
    let s = server(&t).await;
    let mut agents = Vec::new();
    for i in 0..3 {
        agents.push(agent(&s.db, &url(s.addr), &format!("h{i}")).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = spawn_agents(agents, 25, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let guard = Restart(pg.clone());
    pg.kill_immediate().expect("immediate stop");
    tokio::time::sleep(Duration::from_secs(4)).await;
    pg.start().expect("start again");
    drop(guard);
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    let (union, reports) = join_agents(tasks).await;
    let server_errors: u64 = reports.iter().map(|r| r.server_errors).sum();
    let retried: u64 = reports.iter().map(|r| r.retried).sum();
    eprintln!(
        "{} ledger lines; {retried} batches resent, {server_errors} answers were 5xx",
        union.ledger.len()
    );
    assert!(retried >= 3, "every agent had to retry: {retried}");
    assert!(
        server_errors >= 3,
        "the outage was answered with 503: {server_errors}"
    );
    // Once PostgreSQL is back, the pool reconnects by itself.
    assert_holds_exactly(&s.db, &union).await;
    let m = s.metrics.render();
    assert!(m.contains("interference_controller_http_requests_total{route=\"/agent/v1/ingest\",method=\"POST\",status=\"503\"}"), "{m}");
    s.stop().await;
}
