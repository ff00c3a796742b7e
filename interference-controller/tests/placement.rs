//! Migration placement: filters (fresh heartbeat, room after reservations, CPU model,
//! not draining), weights, reservations that expire unused and are released on
//! failure, and the fleet's cap on concurrent migrations.

mod common;

use std::time::Duration;

use common::{client, host_token, server, url, Admin, Kind, TestDb};
use interference_fleet::wire::{Capacity, Heartbeat, PlacementRequest, Register, ReleaseOutcome};
use interference_fleet::FleetClient;

async fn host(
    s: &interference_controller::RunningServer,
    name: &str,
    cpu: &str,
    free_vcpus: u32,
    contention: f32,
) -> FleetClient {
    let token = host_token(&s.db, name).await;
    let c = client(&url(s.addr), &token, Duration::ZERO);
    let capacity = Capacity {
        total_vcpus: 32,
        total_memory_mib: 65536,
        free_vcpus,
        free_memory_mib: 32768,
        vms: 4,
    };
    c.register(&Register {
        agent_version: "test".into(),
        cpu_model: cpu.into(),
        qemu_version: "7.2".into(),
        capacity,
        migration_uri: Some(format!("tcp:{name}:4444")),
    })
    .await
    .expect("register");
    c.heartbeat(&Heartbeat {
        at_ms: 0,
        capacity,
        contention,
        draining: false,
        policy_version: None,
        model_sha: None,
        shadow_model_sha: None,
        backlog_items: 0,
        oldest_unsent_ms: None,
    })
    .await
    .expect("heartbeat");
    c
}

fn vm(vcpus: u32) -> PlacementRequest {
    PlacementRequest {
        vm: "web-1".into(),
        vm_uuid: Some("u-1".into()),
        vcpus,
        memory_mib: 4096,
        exclude: vec![],
    }
}

async fn filters_pick_the_roomiest_quiet_compatible_host(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let src = host(&s, "src", "EPYC", 16, 0.0).await;
    host(&s, "busy", "EPYC", 16, 95.0).await;
    host(&s, "roomy", "EPYC", 16, 5.0).await;
    host(&s, "tight", "EPYC", 6, 5.0).await;
    host(&s, "intel", "Xeon", 30, 0.0).await;
    host(&s, "drain", "EPYC", 30, 0.0).await;
    host(&s, "stale", "EPYC", 30, 0.0).await;
    interference_controller::store::hosts::set_draining(&s.db, "drain", true)
        .await
        .expect("drain");
    sqlx::query("UPDATE hosts SET heartbeat_ms = heartbeat_ms - 600000 WHERE id = 'stale'")
        .execute(s.db.pool())
        .await
        .expect("age the heartbeat");
    let r = src.place(&vm(4)).await.expect("a target");
    assert_eq!(
        (r.target_host.as_str(), r.migration_uri.as_str()),
        ("roomy", "tcp:roomy:4444")
    );
    let mut excl = vm(4);
    excl.exclude = vec!["roomy".into()];
    assert_eq!(
        src.place(&excl).await.expect("next best").target_host,
        "tight"
    );
    let e = src.place(&vm(64)).await.expect_err("nothing that big");
    assert_eq!((e.status(), e.code()), (Some(409), Some("no_target")));
    assert!(
        e.to_string().contains("1 another CPU model, 1 draining")
            || e.to_string().contains("another CPU model"),
        "{e}"
    );
    assert!(e.to_string().contains("1 no fresh heartbeat"), "{e}");
    s.stop().await;
}
both!(filters_pick_the_roomiest_quiet_compatible_host);

async fn reservations_hold_room_until_released_or_expired(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let admin = Admin::new(&s.db, s.addr).await;
    let (status, b) = admin
        .put(
            "/admin/v1/policy/fleet",
            "[fleet]\nreservation_ttl = \"1500ms\"\nmax_concurrent_migrations = 10\n",
        )
        .await;
    assert_eq!(status, 200, "{b}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let src = host(&s, "src", "EPYC", 0, 0.0).await;
    host(&s, "dst", "EPYC", 6, 0.0).await; // room for one 4-vCPU VM
    let first = src.place(&vm(4)).await.expect("room for one");
    assert_eq!(first.target_host, "dst");
    let e = src.place(&vm(4)).await.expect_err("held");
    assert!(
        e.to_string().contains("1 no room after reservations"),
        "{e}"
    );
    // Released on failure: the room is back.
    let r = src
        .release(&first.id, ReleaseOutcome::Failed)
        .await
        .expect("release");
    assert_eq!(r.state, "released");
    assert_eq!(
        src.release(&first.id, ReleaseOutcome::Failed)
            .await
            .expect("twice")
            .state,
        "released"
    );
    let second = src.place(&vm(4)).await.expect("room again");
    // Unused, it expires: the room is free again after the TTL, and the job marks it.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let third = src
        .place(&vm(4))
        .await
        .expect("expired hold no longer counts");
    let state = reservation_state(&s.db, &second.id).await;
    assert_eq!(state, "expired");
    // Migrated: the room stays taken until the target's next heartbeat counts the VM.
    src.release(&third.id, ReleaseOutcome::Migrated)
        .await
        .expect("migrated");
    assert!(src.place(&vm(4)).await.is_err(), "consumed room still held");
    host(&s, "dst", "EPYC", 6, 0.0).await; // next heartbeat (its free count now includes the VM)
    assert!(src.place(&vm(4)).await.is_ok());
    // Someone else's reservation is not ours to release.
    let other = host(&s, "other", "EPYC", 0, 0.0).await;
    let e = other
        .release(&third.id, ReleaseOutcome::Failed)
        .await
        .expect_err("not ours");
    assert_eq!(e.status(), Some(404));
    s.stop().await;
}
both!(reservations_hold_room_until_released_or_expired);

async fn the_fleet_caps_concurrent_migrations(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let admin = Admin::new(&s.db, s.addr).await;
    let (status, _) = admin
        .put(
            "/admin/v1/policy/fleet",
            "[fleet]\nmax_concurrent_migrations = 1\n",
        )
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let src = host(&s, "src", "EPYC", 0, 0.0).await;
    host(&s, "dst", "EPYC", 30, 0.0).await;
    let first = src.place(&vm(2)).await.expect("one");
    let e = src.place(&vm(2)).await.expect_err("cap");
    assert_eq!((e.status(), e.code()), (Some(429), Some("migrations_busy")));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    src.release(&first.id, ReleaseOutcome::Cancelled)
        .await
        .expect("release");
    src.place(&vm(2)).await.expect("room in the cap again");
    let (status, _) = admin
        .put("/admin/v1/policy/fleet", "[fleet]\nplacement = false\n")
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let e = src.place(&vm(2)).await.expect_err("off");
    assert_eq!(e.status(), Some(409));
    s.stop().await;
}
both!(the_fleet_caps_concurrent_migrations);

async fn reservation_state(db: &interference_controller::Db, id: &str) -> String {
    use sqlx::Row;
    sqlx::query("SELECT state FROM reservations WHERE id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .expect("reservation")
        .get(0)
}
