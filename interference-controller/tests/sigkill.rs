//! The controller killed with SIGKILL 40 times while simulated agents ingest: after
//! the last restart the database holds exactly the union of what the agents sent.
//! A batch acknowledged was committed; a batch cut off is resent; nothing is lost or
//! doubled.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{agent, assert_holds_exactly, free_port, join_agents, spawn_agents, Kind, TestDb};
use interference_fleet_lab::process::{ControllerProcess, ControllerSpec};

const KILLS: usize = 40;

async fn sigkill_forty_times_during_ingest(kind: Kind) {
    let t = TestDb::new(kind);
    let db = t.db().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut ctl = ControllerProcess::start(ControllerSpec {
        binary: PathBuf::from(env!("CARGO_BIN_EXE_interference-controller")),
        database: t.url.clone(),
        listen: listen.clone(),
        netns: None,
        log: Some(dir.path().join("controller.log")),
    })
    .await
    .expect("controller starts");
    let mut agents = Vec::new();
    for i in 0..4 {
        agents.push(agent(&db, &format!("http://{listen}"), &format!("h{i}")).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = spawn_agents(agents, 25, stop.clone());
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..KILLS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(50 + seed % 250)).await;
        ctl.kill().await.expect("SIGKILL");
        ctl.restart().await.expect("restart");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (union, reports) = join_agents(tasks).await;
    let batches: u64 = reports.iter().map(|r| r.batches).sum();
    let retried: u64 = reports.iter().map(|r| r.retried).sum();
    eprintln!(
        "{KILLS} kills: {batches} batches acknowledged, {retried} needed a resend, {} ledger lines",
        union.ledger.len()
    );
    assert!(
        batches > 100,
        "agents made progress between kills: {batches}"
    );
    assert!(retried >= 10, "kills interrupted batches: {retried}");
    assert_holds_exactly(&db, &union).await;
    ctl.kill().await.expect("stop");
}
both!(sigkill_forty_times_during_ingest);
