//! Several hosts for real: network namespaces on a bridge, the controller in one,
//! simulated agents in three others, one agent's link cut for a while. The agents keep
//! going (the cut one buffers and retries with backoff), and afterwards the controller
//! holds exactly the union of what they sent. `INTERFERENCE_NETNS_CUT_SECS` sets the
//! cut (default 8 s; the proof runs it for minutes).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{assert_holds_exactly, quick_retry, Kind, TestDb};
use interference_controller::store::tokens;
use interference_fleet_lab::netns::Lab;
use interference_fleet_lab::process::{healthz, ControllerProcess, ControllerSpec};
use interference_fleet_lab::sim::{Report, Sent, SimAgent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root/PostgreSQL"]
async fn three_namespaced_hosts_and_a_cut_link() {
    assert!(
        interference_fleet_lab::is_root(),
        "needs root: network namespaces, veth and a bridge (run as root, with iproute2 installed)"
    );
    let cut_secs: u64 = std::env::var("INTERFERENCE_NETNS_CUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let t = TestDb::new(Kind::Sqlite);
    let db = t.db().await;
    let lab = Lab::create("ctl", 77, 4).expect("namespaces");
    let controller_host = lab.hosts[0].clone();
    let listen = format!("{}:7070", controller_host.ip);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ctl = ControllerProcess::start(ControllerSpec {
        binary: PathBuf::from(env!("CARGO_BIN_EXE_interference-controller")),
        database: t.url.clone(),
        listen: listen.clone(),
        netns: Some(controller_host.netns.clone()),
        log: Some(dir.path().join("controller.log")),
    })
    .await
    .expect("controller in its namespace");
    // Ready, seen from an agent's namespace (and not from the root namespace).
    let l = listen.clone();
    let ready = Lab::run_in(&lab.hosts[1], move || async move {
        for _ in 0..200 {
            if healthz(&l).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("controller at {l} not reachable from the agent namespace")
    });
    ready.join().expect("thread").expect("reachable");
    assert!(
        !healthz(&listen).await,
        "the root namespace has no route to the lab"
    );

    let mut handles = Vec::new();
    for host in &lab.hosts[1..] {
        let token = tokens::create_host_token(&db, &host.netns, "default")
            .await
            .expect("token");
        let base = format!("http://{listen}");
        let name = host.netns.clone();
        // The cut host's batches wait through the outage: no deadline.
        let mut retry = quick_retry();
        retry.max_elapsed = None;
        retry.cap = Duration::from_secs(2);
        handles.push(Lab::run_in(host, move || async move {
            let mut a = SimAgent::new(&name, &base, &token, retry)?;
            let mut report = Report::default();
            for _ in 0..(20 + cut_secs * 4) {
                let batch = a.make_batch(20);
                a.send(&batch, &mut report).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok::<(Sent, Report), anyhow::Error>((a.sent, report))
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim = lab.hosts[2].clone();
    lab.cut(&victim).expect("cut");
    tokio::time::sleep(Duration::from_secs(cut_secs)).await;
    lab.restore(&victim).expect("restore");
    let mut union = Sent::default();
    for (i, h) in handles.into_iter().enumerate() {
        let (sent, report) = h.join().expect("agent thread").expect("agent ran");
        let worst = report.latencies.iter().max().copied().unwrap_or_default();
        eprintln!(
            "agent {}: {} batches, {} resent, slowest ack {worst:?}",
            i + 2,
            report.batches,
            report.retried
        );
        if i + 2 == 3 {
            assert!(
                worst >= Duration::from_secs(cut_secs / 2),
                "the cut host waited out the outage: {worst:?}"
            );
        }
        union.merge(&sent);
    }
    assert_holds_exactly(&db, &union).await;
    ctl.kill().await.expect("stop");
}
