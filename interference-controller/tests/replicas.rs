//! Several replicas on one PostgreSQL database: exactly one runs the background jobs
//! (advisory lock) and another takes over when it goes; a long poll held by one
//! replica wakes on a change made through another.

mod common;

use std::time::{Duration, Instant};

use common::{client, fast_config, host_token, url, Admin, Kind, TestDb};
use interference_controller::server::start;

async fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root/PostgreSQL"]
async fn two_replicas_one_runs_the_jobs_and_the_other_takes_over() {
    let t = TestDb::new(Kind::Postgres);
    let a = start(fast_config(&t.url)).await.expect("replica a");
    let b = start(fast_config(&t.url)).await.expect("replica b");
    wait_for("a leader", Duration::from_secs(10), || {
        a.is_leader() || b.is_leader()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        a.is_leader() ^ b.is_leader(),
        "exactly one leader: a {} b {}",
        a.is_leader(),
        b.is_leader()
    );
    let (leader, follower) = if a.is_leader() { (a, b) } else { (b, a) };
    let m = follower.metrics.render();
    assert!(m.contains("interference_controller_leader 0"), "{m}");
    leader.stop().await;
    wait_for("the follower to take over", Duration::from_secs(10), || {
        follower.is_leader()
    })
    .await;
    follower.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root/PostgreSQL"]
async fn a_long_poll_on_one_replica_wakes_on_a_change_through_another() {
    let t = TestDb::new(Kind::Postgres);
    let a = start(fast_config(&t.url)).await.expect("replica a");
    let b = start(fast_config(&t.url)).await.expect("replica b");
    let token = host_token(&a.db, "h1").await;
    let poller = client(&url(a.addr), &token, Duration::from_secs(20));
    let first = poller.desired(None).await.expect("desired").expect("state");
    let etag = first.etag.clone();
    let poll = tokio::spawn(async move { poller.desired(Some(&etag)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admin = Admin::new(&b.db, b.addr).await;
    let (status, body) = admin
        .put("/admin/v1/policy/fleet", "[policy]\non_threshold = 60\n")
        .await;
    assert_eq!(status, 200, "{body}");
    let started = Instant::now();
    let state = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("woken within 5 s")
        .expect("task")
        .expect("poll")
        .expect("a new state");
    assert_eq!(state.policy.version, "fleet@1");
    eprintln!(
        "woke {:?} after the change on the other replica",
        started.elapsed()
    );
    a.stop().await;
    b.stop().await;
}
