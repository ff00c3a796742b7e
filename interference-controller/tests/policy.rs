//! Fleet policy: versioned documents checked like the agent's own config (file, line,
//! field), layered fleet -> group -> host, delivered by long poll with an ETag.

mod common;

use std::time::{Duration, Instant};

use common::{client, host_token, server, url, Admin, Kind, TestDb};
use interference_controller::store::hosts;

async fn a_long_poll_wakes_on_a_policy_change(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let admin = Admin::new(&s.db, s.addr).await;
    let token = host_token(&s.db, "h1").await;
    let c = client(&url(s.addr), &token, Duration::from_secs(20));
    let first = c.desired(None).await.expect("desired").expect("a state");
    assert_eq!(first.policy.version, "default");
    let etag = first.etag.clone();
    let poll = tokio::spawn(async move {
        let started = Instant::now();
        let r = c.desired(Some(&etag)).await;
        (r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, body) = admin
        .put(
            "/admin/v1/policy/fleet",
            "[policy]\non_threshold = 55\noff_threshold = 30\n",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 1);
    let (r, took) = poll.await.expect("poll task");
    let state = r.expect("poll").expect("woken with a new state");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(state.policy.version, "fleet@1");
    assert!(
        state.policy.toml.contains("on_threshold = 55"),
        "{}",
        state.policy.toml
    );
    assert_ne!(state.etag, first.etag);
    s.stop().await;
}
both!(a_long_poll_wakes_on_a_policy_change);

async fn an_unchanged_state_answers_not_modified_after_the_wait(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let token = host_token(&s.db, "h1").await;
    let c = client(&url(s.addr), &token, Duration::from_millis(600));
    let first = c.desired(None).await.expect("desired").expect("state");
    let started = Instant::now();
    assert!(c.desired(Some(&first.etag)).await.expect("poll").is_none());
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
    s.stop().await;
}
both!(an_unchanged_state_answers_not_modified_after_the_wait);

async fn a_bad_policy_is_refused_with_file_line_and_field(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let admin = Admin::new(&s.db, s.addr).await;
    let (status, body) = admin
        .put(
            "/admin/v1/policy/fleet",
            "[policy]\non_threshold = 30\noff_threshold = 35\n",
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "invalid_policy");
    let f = &body["fields"][0];
    assert_eq!(
        (f["file"].as_str(), f["line"].as_u64(), f["field"].as_str()),
        (Some("fleet.toml"), Some(3), Some("policy.off_threshold")),
        "{body}"
    );
    let (status, body) = admin
        .put("/admin/v1/policy/fleet", "[policy]\non_treshold = 3\n")
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["fields"][0]["line"], 2, "{body}");
    assert_eq!(body["fields"][0]["field"], "policy.on_treshold", "{body}");
    let (status, _) = admin.put("/admin/v1/policy/rack:1", "").await;
    assert_eq!(status, 400);
    // Nothing was stored.
    let (status, _) = admin.get("/admin/v1/policy/fleet").await;
    assert_eq!(status, 404);
    s.stop().await;
}
both!(a_bad_policy_is_refused_with_file_line_and_field);

async fn layers_merge_fleet_then_group_then_host(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let admin = Admin::new(&s.db, s.addr).await;
    let token = host_token(&s.db, "h1").await;
    let other = host_token(&s.db, "h2").await;
    assert!(hosts::set_group(&s.db, "h1", "web").await.expect("group"));
    for (scope, body) in [
        ("fleet", "[policy]\non_threshold = 50\noff_threshold = 30\n[billing]\ncredit_ratio = 0.5\n[fleet]\nmax_concurrent_migrations = 2\n"),
        ("group:web", "[policy]\non_threshold = 45\n"),
        ("host:h1", "[policy]\noff_threshold = 20\n"),
    ] {
        let (status, b) = admin.put(&format!("/admin/v1/policy/{scope}"), body).await;
        assert_eq!(status, 200, "{scope}: {b}");
    }
    // Checked merged: this group document is fine alone but not over the fleet's off
    // threshold (30 >= 28).
    let (status, b) = admin
        .put(
            "/admin/v1/policy/group:web",
            "[policy]\non_threshold = 28\n",
        )
        .await;
    assert_eq!(status, 422, "{b}");
    assert!(
        b["fields"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("merged as"),
        "{b}"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let d = client(&url(s.addr), &token, Duration::ZERO)
        .desired(None)
        .await
        .expect("h1")
        .expect("state");
    assert_eq!(d.policy.version, "fleet@1+group:web@1+host:h1@1");
    let t: toml::Table = d.policy.toml.parse().expect("toml");
    assert_eq!(t["policy"]["on_threshold"].as_integer(), Some(45));
    assert_eq!(t["policy"]["off_threshold"].as_integer(), Some(20));
    assert_eq!(t["billing"]["credit_ratio"].as_float(), Some(0.5));
    assert!(
        !t.contains_key("fleet"),
        "the controller's table stays home"
    );
    assert_eq!(d.limits.max_concurrent_migrations, Some(2));
    let d2 = client(&url(s.addr), &other, Duration::ZERO)
        .desired(None)
        .await
        .expect("h2")
        .expect("state");
    assert_eq!(d2.policy.version, "fleet@1");
    s.stop().await;
}
both!(layers_merge_fleet_then_group_then_host);

async fn a_tenant_over_its_daily_cap_is_blocked(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let admin = Admin::new(&s.db, s.addr).await;
    let (status, b) = admin
        .put(
            "/admin/v1/policy/fleet",
            "[fleet]\nmax_actions_per_tenant_per_day = 3\n",
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let token = host_token(&s.db, "h1").await;
    let now = interference_controller::db::sql::now_ms() as u64;
    let items: Vec<_> = (0..4)
        .map(|i| {
            interference_fleet::wire::Item::ActionPhase(interference_fleet::wire::ActionPhase {
                id: format!("a{i}/done/{i}"),
                action_id: format!("a{i}"),
                phase: interference_fleet::wire::Phase::Done,
                at_ms: now,
                rung: Some("cpu_weight".into()),
                vm: Some("vm-1".into()),
                vm_uuid: None,
                customer: Some(if i < 3 { "greedy" } else { "modest" }.into()),
                model_sha: None,
                victim_wait_after_ms: None,
                detail: serde_json::Value::Null,
            })
        })
        .collect();
    let c = client(&url(s.addr), &token, Duration::from_secs(5));
    c.ingest(&interference_fleet::wire::IngestBatch { seq: 1, items })
        .await
        .expect("ingest");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let d = c.desired(None).await.expect("desired").expect("state");
        if d.limits.blocked_tenants == ["greedy"] {
            assert_eq!(d.limits.max_actions_per_tenant_per_day, Some(3));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "greedy not blocked: {:?}",
            d.limits
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.stop().await;
}
both!(a_tenant_over_its_daily_cap_is_blocked);
