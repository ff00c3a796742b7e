//! A lab guest's virtio-balloon answers QMP: stats polling is on, a lower target
//! shrinks the guest (QEMU's `actual` and the guest's own total memory), and a higher
//! one gives the memory back.

use std::time::{Duration, Instant};

use interference_tests::lab::{Lab, LabOptions, Qmp};
use interference_tests::require_root;
use serde_json::{json, Value};

const MIB: u64 = 1024 * 1024;

fn actual(qmp: &mut Qmp) -> u64 {
    qmp.execute("query-balloon", None).unwrap()["actual"]
        .as_u64()
        .unwrap()
}

/// Waits up to `timeout` for `cond` on the balloon's `actual`.
fn wait_actual(qmp: &mut Qmp, timeout: Duration, cond: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let a = actual(qmp);
        if cond(a) || Instant::now() > deadline {
            return a;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The guest's memory stats once they satisfy `cond` (polled every 2 s by QEMU), or the
/// last ones after `timeout`.
fn wait_stats(qmp: &mut Qmp, timeout: Duration, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let stats = qmp
            .execute(
                "qom-get",
                Some(json!({ "path": "/machine/peripheral/balloon0", "property": "guest-stats" })),
            )
            .unwrap();
        if cond(&stats) || Instant::now() > deadline {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn total(stats: &Value) -> u64 {
    stats["stats"]["stat-total-memory"].as_u64().unwrap_or(0)
}

#[test]
#[ignore = "needs root/QEMU"]
fn balloon_target_changes_actual_and_stats_are_polled() {
    require_root("balloon_target_changes_actual_and_stats_are_polled");
    let options = LabOptions {
        workloads: vec!["idle".into()],
        mem_mib: 256,
        ..LabOptions::default()
    };
    let lab = Lab::up("bal", &options).expect("lab up");
    let name = &lab.names()[0];
    let mut qmp = lab.qmp(name).unwrap();
    assert_eq!(actual(&mut qmp), 256 * MIB);

    // The lab turned on guest stats polling: stats arrive with a timestamp.
    let before = wait_stats(&mut qmp, Duration::from_secs(15), |s| {
        s["last-update"].as_u64().unwrap_or(0) > 0 && total(s) > 0
    });
    assert!(total(&before) > 0, "no guest stats within 15 s: {before}");

    qmp.execute("balloon", Some(json!({ "value": 160 * MIB })))
        .unwrap();
    let a = wait_actual(&mut qmp, Duration::from_secs(30), |a| a == 160 * MIB);
    assert_eq!(a, 160 * MIB, "balloon did not reach 160 MiB in 30 s");
    let after = wait_stats(&mut qmp, Duration::from_secs(15), |s| {
        total(s) + 80 * MIB <= total(&before)
    });
    eprintln!(
        "guest total memory {} MiB -> {} MiB",
        total(&before) / MIB,
        total(&after) / MIB
    );
    assert!(
        total(&after) + 80 * MIB <= total(&before),
        "the guest did not give up 96 MiB: {before} -> {after}"
    );

    qmp.execute("balloon", Some(json!({ "value": 256 * MIB })))
        .unwrap();
    let a = wait_actual(&mut qmp, Duration::from_secs(30), |a| a == 256 * MIB);
    assert_eq!(a, 256 * MIB, "balloon did not deflate in 30 s");
}
