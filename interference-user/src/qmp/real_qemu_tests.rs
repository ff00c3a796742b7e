//! The client against a real QEMU (qemu-system-x86_64, TCG, paused with -S so it
//! needs no guest). Skipped, saying so, where QEMU is not installed.

use std::time::{Duration, Instant};

use super::*;
use crate::testing::qmp::RealQemu;

const TIMEOUT: Duration = Duration::from_secs(5);

#[test]
#[ignore = "needs root/QEMU"]
fn real_qemu_queries_and_quit() {
    let mut qemu = RealQemu::start("real_qemu_queries_and_quit", &[]);
    let mut qmp = QmpClient::connect(&qemu.qmp, TIMEOUT).unwrap();
    eprintln!("QMP greeting: {:?}", qmp.greeting());
    assert!(qmp.greeting().version.0 >= 7, "{:?}", qmp.greeting());

    let status = qmp.query_status().unwrap();
    assert!(!status.running);
    assert!(
        ["prelaunch", "paused"].contains(&status.status.as_str()),
        "{status:?}"
    );

    let cpus = qmp.query_cpus_fast().unwrap();
    assert_eq!(cpus.iter().map(|c| c.cpu_index).collect::<Vec<_>>(), [0, 1]);
    for cpu in &cpus {
        let name = qemu.thread_name(cpu.thread_id);
        assert_eq!(name, Some(format!("CPU {}/TCG", cpu.cpu_index)), "{cpu:?}");
    }

    // No guest driver: QEMU reports the whole 64 MiB, and every statistic unknown.
    assert_eq!(qmp.query_balloon().unwrap(), 64 << 20);
    assert_eq!(
        qmp.find_balloon().unwrap().as_deref(),
        Some(DEFAULT_BALLOON_PATH)
    );
    assert_eq!(
        qmp.balloon_stats(DEFAULT_BALLOON_PATH).unwrap(),
        BalloonStats::default()
    );
    // Both in one round-trip, as the balloon probe asks them; polling off until set.
    let (actual, stats) = qmp.balloon_with_stats(DEFAULT_BALLOON_PATH).unwrap();
    assert_eq!((actual, stats), (64 << 20, BalloonStats::default()));
    assert_eq!(qmp.balloon_stats_polling(DEFAULT_BALLOON_PATH).unwrap(), 0);
    qmp.set_balloon_stats_polling(DEFAULT_BALLOON_PATH, 3)
        .unwrap();
    assert_eq!(qmp.balloon_stats_polling(DEFAULT_BALLOON_PATH).unwrap(), 3);
    let err = qmp
        .balloon_with_stats("/machine/peripheral/nope")
        .unwrap_err();
    assert_eq!(err.class(), Some("DeviceNotFound"), "{err}");
    assert_eq!(qmp.query_migrate().unwrap().status, "none");

    let err = qmp.execute("no-such-command", None).unwrap_err();
    assert_eq!(err.class(), Some("CommandNotFound"), "{err}");
    let err = qmp.balloon_stats("/machine/peripheral/nope").unwrap_err();
    assert_eq!(err.class(), Some("DeviceNotFound"), "{err}");

    qmp.quit().unwrap();
    let events: Vec<String> = qmp.take_events().into_iter().map(|e| e.name).collect();
    assert!(events.contains(&"SHUTDOWN".to_owned()), "{events:?}");
    assert!(qemu.wait_exit().success());
}

/// QEMU serves one QMP client at a time. A second client's connection is queued
/// without a greeting; once the queue (backlog 1) is full, connect itself blocks.
/// Both must end in a Timeout that says what is going on.
#[test]
#[ignore = "needs root/QEMU"]
fn real_qemu_second_client_times_out() {
    let qemu = RealQemu::start("real_qemu_second_client_times_out", &[]);
    let mut first = QmpClient::connect(&qemu.qmp, TIMEOUT).unwrap();
    let short = Duration::from_millis(200);
    let mut errors = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let err = QmpClient::connect(&qemu.qmp, short).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(err, QmpError::Timeout { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("is another one, such as libvirt, connected?"),
            "{err}"
        );
        errors.push(err.to_string());
    }
    eprintln!("{}", errors.join("\n"));
    first.query_status().unwrap();
}
