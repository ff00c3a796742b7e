//! The agent with its embedded defaults, and nothing else but the inventory, protects a
//! priority lab VM (a real QEMU guest) from a CPU neighbour: both guests' vCPUs share
//! one host CPU; the priority guest computes and prints its own progress rate every
//! second; the neighbour starts spinning. From two ticks after the onset the priority
//! guest must run at no less than 90% of its solo rate, and at exit every cgroup file
//! is back.

use std::time::{Duration, Instant};

use interference_tests::agent::{log_text, Agent, Log};
use interference_tests::lab::{Lab, LabOptions, LabVm, Progress};
use interference_tests::{require_root, snapshot_files};

/// The VM's own scope directories (one per hierarchy), as a `[[vm]]` lists them.
fn vm_toml(vm: &LabVm, priority: &str, customer: &str) -> String {
    let dirs: Vec<String> = vm
        .cgroups
        .iter()
        .filter(|p| p.file_name().and_then(|n| n.to_str()) == Some(vm.scope.as_str()))
        .map(|p| format!("{p:?}"))
        .collect();
    assert!(
        !dirs.is_empty(),
        "no scope directory among {:?}",
        vm.cgroups
    );
    format!(
        "[[vm]]\nname = \"{}\"\ncgroups = [{}]\npriority = \"{priority}\"\ncustomer = \"{customer}\"\n\n",
        vm.name,
        dirs.join(", ")
    )
}

fn mean_rate(lines: &[Progress]) -> f64 {
    let rates: Vec<f64> = lines
        .iter()
        .filter(|p| p.phase == "cpu")
        .map(|p| p.rate)
        .collect();
    assert!(!rates.is_empty(), "no cpu progress lines");
    rates.iter().sum::<f64>() / rates.len() as f64
}

#[test]
#[ignore = "needs root/QEMU"]
fn the_default_agent_keeps_a_priority_guest_at_90_percent_of_its_solo_speed() {
    assert!(
        require_root("the_default_agent_keeps_a_priority_guest_at_90_percent_of_its_solo_speed"),
        "needs root: run ./scripts/test.sh as root"
    );
    let options = LabOptions {
        vms: 2,
        workloads: vec!["cpu".into(), "idle".into()],
        ..LabOptions::default()
    };
    let mut lab = Lab::up("defaults", &options).expect("lab up");
    let names = lab.names().to_vec();
    let prio = lab.vm(&names[0]).expect("vm 1");
    let noisy = lab.vm(&names[1]).expect("vm 2");
    lab.pin_vcpus(&prio.name, "1").expect("pin");
    lab.pin_vcpus(&noisy.name, "1").expect("pin");
    let mut dirs = prio.cgroups.clone();
    dirs.extend(noisy.cgroups.iter().cloned());
    let files = ["cpu.shares", "cpuset.cpus", "cpu.weight"];
    let original = snapshot_files(&dirs, &files);

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        vm_toml(&prio, "high", "acme") + &vm_toml(&noisy, "normal", "globex"),
    )
    .expect("config");
    let journal = dir.path().join("journal.jsonl");
    let ledger = dir.path().join("ledger");
    let tick = interference::config::CollectConfig::default().interval;
    let t0 = Instant::now();
    let log: Log = Default::default();
    let agent = Agent::start(
        &[
            "--config".as_ref(),
            cfg.as_os_str(),
            "--journal".as_ref(),
            journal.as_os_str(),
            "--ledger".as_ref(),
            ledger.as_os_str(),
        ],
        t0,
        log.clone(),
    );
    // Solo: the priority guest alone on its CPU for a few ticks.
    std::thread::sleep(tick * 2);
    let solo_from = prio.log_len();
    std::thread::sleep(Duration::from_secs(12));
    let solo = mean_rate(&prio.progress_since(solo_from)[1..]);

    lab.set_workload(&noisy.name, "cpu")
        .expect("neighbour spins");
    let onset = t0.elapsed();
    let contended_from = prio.log_len();
    std::thread::sleep(tick * 2);
    let protected_from = prio.log_len();
    std::thread::sleep(Duration::from_secs(30));
    let contended = prio.progress_since(contended_from);
    let protected = mean_rate(&prio.progress_since(protected_from)[1..]);
    let first_two_ticks = mean_rate(&contended[..contended.len().min(10)]);
    let status = agent.stop();
    let text = log_text(&log);
    assert!(status.success(), "agent failed:\n{text}");
    let ratio = protected / solo;
    eprintln!(
        "solo {solo:.0}/s; onset at {:.1} s; first two ticks {first_two_ticks:.0}/s; from two ticks after the onset {protected:.0}/s ({:.1}% of solo)",
        onset.as_secs_f64(),
        ratio * 100.0
    );
    assert!(
        text.contains(" applied: "),
        "the agent never acted:\n{text}"
    );
    assert!(
        ratio >= 0.9,
        "the priority guest ran at {:.1}% of its solo speed from two ticks after the onset:\n{text}",
        ratio * 100.0
    );
    assert_eq!(
        snapshot_files(&dirs, &files),
        original,
        "a cgroup file was left changed"
    );
    lab.down().expect("lab down");
}
