//! The real `interference` binary, end to end: collect with a static inventory, a VM
//! that exits mid-run, the metrics file, a clean detach on SIGTERM, and bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};

use interference_tests::{require_root, TestCgroup};

fn bin() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/interference");
    assert!(
        p.exists(),
        "{} missing: ./scripts/setup.sh builds it",
        p.display()
    );
    p
}

fn vm_toml(cg: &TestCgroup, customer: &str) -> String {
    let paths: Vec<String> = cg.paths().iter().map(|p| format!("{p:?}")).collect();
    format!(
        "[[vm]]\nname = \"{}\"\ncgroups = [{}]\ncustomer = \"{customer}\"\n\n",
        cg.name,
        paths.join(", ")
    )
}

/// Programs named like ours currently loaded in the kernel.
fn our_programs_loaded() -> usize {
    aya::programs::loaded_programs()
        .flatten()
        // Kernel program names are cut at 15 bytes ("block_rq_comple").
        .filter(|p| {
            let name = p.name_as_str().unwrap_or("");
            matches!(name, "sched_switch" | "sched_wakeup") || name.starts_with("block_rq_")
        })
        .count()
}

#[test]
#[ignore = "needs root/QEMU"]
fn collect_survives_a_vm_exiting_and_detaches_on_sigterm() {
    require_root("collect_survives_a_vm_exiting_and_detaches_on_sigterm");
    let mut stay = TestCgroup::new("stay").unwrap();
    let mut leave = TestCgroup::new("leave").unwrap();
    stay.spin(None).unwrap();
    leave.spin(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, vm_toml(&stay, "acme") + &vm_toml(&leave, "globex")).unwrap();
    let samples = dir.path().join("s.jsonl");
    let metrics = dir.path().join("m.prom");
    let loaded_before = our_programs_loaded();
    let mut child = KillOnDrop(
        Command::new(bin())
            .args(["collect", "--config"])
            .arg(&cfg)
            .args(["--interval", "1s", "--samples"])
            .arg(&samples)
            .arg("--metrics-file")
            .arg(&metrics)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(2600));
    let metrics_text = std::fs::read_to_string(&metrics).unwrap();
    for needle in [
        "interference_vcpu_runqueue_latency_seconds_bucket{vm=\"stay\"",
        "interference_vm_preempted_total{vm=\"stay\"",
        "interference_vm_preempted_seconds_total{vm=\"stay\"",
        "interference_collector_up{collector=\"sched\"} 1",
        "interference_collector_up{collector=\"llc\"} 0",
    ] {
        assert!(
            metrics_text.contains(needle),
            "{needle} missing from\n{metrics_text}"
        );
    }
    let during = our_programs_loaded();
    assert!(
        during >= loaded_before + 5,
        "5 programs attached: {loaded_before} before, {during} during"
    );
    // The VM exits: its processes die and its cgroups go away.
    let left_at = Instant::now();
    leave.remove();
    std::thread::sleep(Duration::from_millis(3500));
    // SIGTERM: the agent stops and detaches.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = child.0.wait().unwrap();
    assert!(status.success(), "collect exited with {status}");
    // The kernel frees detached programs after an RCU grace period: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut detached_after = our_programs_loaded();
    while detached_after != loaded_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        detached_after = our_programs_loaded();
    }
    assert_eq!(detached_after, loaded_before, "programs left attached");

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&samples)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ticks_of = |vm: &str| -> Vec<u64> {
        lines
            .iter()
            .filter(|s| s["vm"] == vm)
            .map(|s| s["timestamp_ms"].as_u64().unwrap())
            .collect()
    };
    let stay_ticks = ticks_of("stay");
    let leave_ticks = ticks_of("leave");
    assert!(
        stay_ticks.len() >= 5,
        "stay sampled every tick: {stay_ticks:?}"
    );
    assert!(!leave_ticks.is_empty(), "leave sampled before it exited");
    let left_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - left_at.elapsed().as_millis() as u64;
    let after: Vec<_> = leave_ticks
        .iter()
        .filter(|t| **t > left_ms + 1500)
        .collect();
    assert!(
        after.is_empty(),
        "leave still sampled after it exited: {after:?}"
    );
    let stay_after = stay_ticks.iter().filter(|t| **t > left_ms + 1500).count();
    assert!(stay_after >= 1, "stay kept being sampled");
    for s in lines.iter().filter(|s| s["vm"] == "stay") {
        assert_eq!(s["customer"], "acme");
        assert!(
            s["cpu"]["usage_seconds"].as_f64().unwrap_or(0.0) > 0.2,
            "{s}"
        );
    }
}

/// Kills the agent if the test fails before it is stopped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_fail(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_config_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[[vm]]\nname = \"web-1\"\ncgroups = [\"/sys/fs/cgroup/unified/x\"]\npriority = \"urgent\"\n",
    )
    .unwrap();
    let (_, err) = run_fail(&["inventory", "--config", cfg.to_str().unwrap()]);
    assert!(err.contains("bad.toml:4"), "{err}");
    assert!(err.contains("priority"), "{err}");
    assert!(err.contains("urgent"), "{err}");
}

#[test]
fn cgroup_paths_outside_cgroupfs_or_with_dotdot_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (path, what) in [
        ("/tmp/not-a-cgroup", "not inside a mounted cgroup"),
        ("/sys/fs/cgroup/unified/../../../etc", ".."),
    ] {
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            format!("[[vm]]\nname = \"a\"\ncgroups = [\"{path}\"]\n"),
        )
        .unwrap();
        let (_, err) = run_fail(&["inventory", "--config", cfg.to_str().unwrap()]);
        assert!(err.contains(path) && err.contains(what), "{path}: {err}");
    }
}

#[test]
#[ignore = "needs root/QEMU"]
fn unprivileged_collect_names_the_missing_capabilities() {
    require_root("unprivileged_collect_names_the_missing_capabilities");
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(bin())
        .args(["collect", "--duration", "1s"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("CAP_BPF") && err.contains("CAP_PERFMON"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
}

#[test]
#[ignore = "needs root/QEMU"]
fn top_shows_each_vm_and_its_vcpus() {
    require_root("top_shows_each_vm_and_its_vcpus");
    let mut a = TestCgroup::new("top-a").unwrap();
    let mut b = TestCgroup::new("top-b").unwrap();
    for _ in 0..2 {
        a.spin(None).unwrap();
        b.spin(None).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, vm_toml(&a, "acme") + &vm_toml(&b, "globex")).unwrap();
    let out = Command::new(bin())
        .args(["top", "--config"])
        .arg(&cfg)
        .args(["--interval", "1s", "-n", "2", "--no-clear", "--vcpus"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let tables: Vec<&str> = text.split("VM ").filter(|t| !t.is_empty()).collect();
    assert_eq!(tables.len(), 2, "two refreshes:\n{text}");
    let last = tables[1];
    for vm in ["top-a", "top-b"] {
        let row = last
            .lines()
            .find(|l| l.starts_with(vm))
            .unwrap_or_else(|| panic!("{vm} row in\n{text}"));
        // 4 spinners on 2 CPUs: each VM waits for about half of its threads' time.
        let wait: f64 = row.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert!(wait > 20.0, "{row}");
    }
}
