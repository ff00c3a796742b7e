//! Faults the lab must survive without hanging: a QMP socket that never answers (a
//! silent listener, a stopped QEMU), and a guest that never boots.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use interference_tests::lab::{run_bounded, Lab, LabOptions, Qmp, QmpError};
use interference_tests::require_root;

/// A unix socket that accepts connections and never says a word.
fn silent_listener(path: &Path) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(2).flatten() {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(10));
    })
}

fn labctl() -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lab/labctl.py"));
    cmd
}

#[test]
fn qmp_socket_that_never_answers_is_a_bounded_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let _server = silent_listener(&sock);

    let started = Instant::now();
    let err = Qmp::connect(&sock, Duration::from_secs(2))
        .err()
        .expect("a silent socket must not connect");
    let took = started.elapsed();
    eprintln!("fixture: {err} (after {took:?})");
    assert!(matches!(err, QmpError::Timeout { .. }), "{err:?}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("did not answer within 2s") && msg.contains("qmp.sock"),
        "{msg}"
    );

    // The lab's own QMP helper (what lab.sh uses): exit status 3 and a clear message.
    let started = Instant::now();
    let out = run_bounded(
        labctl()
            .args(["--timeout", "2", "qmp"])
            .arg(&sock)
            .arg("query-status"),
        Duration::from_secs(20),
    )
    .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("labctl: {} (after {took:?})", stderr.trim());
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("did not answer within 2 s"), "{stderr}");
    assert!(took < Duration::from_secs(6), "took {took:?}");

    // No socket at all is a different, immediate error.
    let err = Qmp::connect(&dir.path().join("none.sock"), Duration::from_secs(2))
        .err()
        .unwrap();
    assert!(matches!(err, QmpError::Connect { .. }), "{err:?}");
}

#[test]
fn stopped_qemu_times_out_is_reported_and_down_still_cleans_up() {
    if !require_root("stopped_qemu_times_out_is_reported_and_down_still_cleans_up") {
        return;
    }
    let options = LabOptions {
        workloads: vec!["idle".into()],
        ..LabOptions::default()
    };
    let mut lab = Lab::up("stop", &options).expect("lab up");
    let vm = lab.vm(&lab.names()[0]).unwrap();
    // SAFETY: kill has no memory preconditions; the pid is the lab's QEMU.
    unsafe { libc::kill(vm.pid as libc::pid_t, libc::SIGSTOP) };

    let started = Instant::now();
    let err = Qmp::connect(&vm.qmp, Duration::from_secs(2)).err().unwrap();
    assert!(matches!(err, QmpError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(4));

    let started = Instant::now();
    let status = lab.status().unwrap();
    eprintln!("{status}(after {:?})", started.elapsed());
    assert!(status.contains(" unresponsive "), "{status}");
    assert!(started.elapsed() < Duration::from_secs(15));

    let started = Instant::now();
    lab.down().unwrap();
    eprintln!("down of a stopped QEMU took {:?}", started.elapsed());
    assert!(!vm.alive(), "stopped QEMU (pid {}) survived down", vm.pid);
    for dir in &vm.cgroups {
        assert!(!dir.exists(), "cgroup {} left", dir.display());
    }
}

/// `up` of a guest that never boots, whatever the host's KVM does: QEMU starts with its
/// CPUs stopped (`-S`), so the guest never prints. `up` must give up after its boot
/// timeout, say which VM and why, and leave nothing behind.
#[test]
fn guest_that_never_boots_fails_up_in_bounded_time() {
    if !require_root("guest_that_never_boots_fails_up_in_bounded_time") {
        return;
    }
    let options = LabOptions {
        workloads: vec!["idle".into()],
        env: vec![
            ("INTERFERENCE_LAB_ACCEL".into(), "tcg".into()),
            ("INTERFERENCE_LAB_QEMU_EXTRA".into(), "-S".into()),
            ("INTERFERENCE_LAB_BOOT_TIMEOUT".into(), "10".into()),
        ],
        up_timeout: Duration::from_secs(60),
        ..LabOptions::default()
    };
    let started = Instant::now();
    let err = Lab::up("hang", &options).err().expect("up must fail");
    let msg = format!("{err:#}");
    eprintln!("{msg}\n(after {:?})", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(40));
    assert!(
        msg.contains("-1 did not boot (accelerator tcg)") && msg.contains("hang"),
        "{msg}"
    );
    assert!(msg.contains("the kernel never got to print"), "{msg}");
    assert_nothing_left("hang");
}

/// `up` of a QEMU that exits at once (here: an option it does not know) fails fast with
/// QEMU's own words and leaves nothing behind.
#[test]
fn qemu_that_dies_at_start_fails_up_at_once() {
    if !require_root("qemu_that_dies_at_start_fails_up_at_once") {
        return;
    }
    let options = LabOptions {
        workloads: vec!["idle".into()],
        env: vec![
            ("INTERFERENCE_LAB_ACCEL".into(), "tcg".into()),
            (
                "INTERFERENCE_LAB_QEMU_EXTRA".into(),
                "-no-such-option".into(),
            ),
        ],
        up_timeout: Duration::from_secs(60),
        ..LabOptions::default()
    };
    let started = Instant::now();
    let err = Lab::up("dies", &options).err().expect("up must fail");
    let msg = format!("{err:#}");
    eprintln!("{msg}\n(after {:?})", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(msg.contains("QEMU did not start for dies"), "{msg}");
    assert!(msg.contains("no-such-option"), "{msg}");
    assert_nothing_left("dies");
}

fn assert_nothing_left(prefix: &str) {
    let leftovers = Command::new("pgrep")
        .args(["-f", &format!("guest={prefix}")])
        .output()
        .unwrap();
    assert!(
        leftovers.stdout.is_empty(),
        "QEMU left: {}",
        String::from_utf8_lossy(&leftovers.stdout)
    );
}
