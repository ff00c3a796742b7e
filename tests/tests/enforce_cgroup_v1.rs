//! The enforcement stage on this host's cgroup v1 hierarchies, for real.
//!
//! Two test VMs, `a` and `b`, each with libvirt-style children (`libvirt/vcpu0`,
//! `libvirt/emulator`) in every hierarchy; one busy loop per VM in its `libvirt/vcpu0`,
//! whose v1 cpuset is CPU 0 (as libvirt pins a vCPU), so the two compete for one CPU.
//! 1. Weights. Measured from each VM's cpuacct.usage over 3 s: equal shares split
//!    about 1:1; 4096 shares written on `a`'s vcpu0 and emulator cgroups change
//!    nothing (CFS shares are hierarchical, so a weight on a vCPU cgroup only splits the
//!    VM's own share); `Enforcer::apply` with weight 400 on `a` writes 4096 to `a`'s own
//!    cgroup and the split follows 4:1 within 15%. Rollback restores every file exactly.
//! 2. Cpusets. Pinning `a` to CPU 1 moves its spinner: /proc/PID/status
//!    Cpus_allowed_list says 1 and /proc/PID/stat field 39 (the CPU it last ran on)
//!    says 1 in every sample; rollback puts `libvirt/vcpu0` back on CPU 0 and every
//!    file back to its original.
//! 3. The guard refuses a VM whose cgroup is outside cgroupfs, a hierarchy root, or a
//!    `..` escape, and writes nothing.

use interference_core::cpu_list::CpuList;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use interference::enforce::{Enforcer, EnforcerOptions};
use interference::inventory::{Mounts, Vm};
use interference::policy::{Action, ActionResult, Change, Outcome, Rung};
use interference_tests::{require_root, snapshot_files, vm_for, TestCgroup, TestChildren};

const CHILDREN: &[&str] = &["libvirt/vcpu0", "libvirt/emulator"];
const FILES: &[&str] = &["cpu.shares", "cpuset.cpus"];

fn action(id: &str, vm: &str, change: Change) -> Action {
    Action {
        payer: Default::default(),
        not_donors: Vec::new(),
        id: id.into(),
        decided_ms: 0,
        rung: Rung::Weight,
        change,
        vm: vm.into(),
        protects: "other".into(),
        victim: "other".into(),
        aggressor: vm.into(),
        score: 90.0,
        vm_is_aggressor: false,
        unobservable: Vec::new(),
        cause: None,
        customers: Default::default(),
        vcpus: None,
        simulated: false,
        reason: "enforce_cgroup_v1 test".into(),
        trigger: Default::default(),
    }
}

fn applied(out: &Outcome) {
    assert_eq!(out.result, ActionResult::Applied, "{out:?}");
}

fn usage(cg: &TestCgroup) -> u64 {
    let dir = cg.dir("cpuacct").expect("a cpuacct hierarchy");
    fs::read_to_string(dir.join("cpuacct.usage"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// CPU time of a and b over `secs` seconds, and a/b.
fn split(a: &TestCgroup, b: &TestCgroup, secs: u64, what: &str) -> f64 {
    std::thread::sleep(Duration::from_millis(500));
    let (a0, b0, t0) = (usage(a), usage(b), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let (a1, b1, t) = (usage(a), usage(b), t0.elapsed());
    let (da, db) = ((a1 - a0) as f64 / 1e9, (b1 - b0) as f64 / 1e9);
    let ratio = da / db.max(1e-9);
    eprintln!(
        "{what}: a {da:.2} s, b {db:.2} s of CPU in {:.2} s: a/b = {ratio:.2}",
        t.as_secs_f64()
    );
    ratio
}

fn status_cpus(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Field 39 of /proc/PID/stat: the CPU the task last ran on.
fn last_cpu(pid: u32) -> u32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = stat.rsplit_once(") ").unwrap().1;
    // Fields after comm start at field 3.
    after_comm
        .split_whitespace()
        .nth(39 - 3)
        .unwrap()
        .parse()
        .unwrap()
}

/// The CPUs `pid` ran on, sampled every 10 ms for `ms`.
fn cpus_seen(pid: u32, ms: u64) -> Vec<u32> {
    let mut seen = Vec::new();
    for _ in 0..ms / 10 {
        let c = last_cpu(pid);
        if !seen.contains(&c) {
            seen.push(c);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    seen.sort();
    seen
}

struct TestVm {
    children: TestChildren,
    cg: TestCgroup,
    pid: u32,
    vm: Vm,
}

impl TestVm {
    fn start(name: &str) -> TestVm {
        let mut cg = TestCgroup::new(name).unwrap();
        let children = TestChildren::new(&cg, CHILDREN).unwrap();
        // libvirt-style vCPU pinning: the vCPU cgroup's cpuset.
        let vcpu0 = children
            .dir("cpuset", "libvirt/vcpu0")
            .unwrap()
            .to_path_buf();
        fs::write(vcpu0.join("cpuset.cpus"), "0").unwrap();
        let pid = cg
            .spawn(Command::new("sh").args(["-c", "while :; do :; done"]))
            .unwrap();
        children.move_into("libvirt/vcpu0", pid).unwrap();
        let vm = vm_for(&cg, &[pid]);
        TestVm {
            children,
            cg,
            pid,
            vm,
        }
    }

    fn dirs(&self) -> Vec<PathBuf> {
        self.cg.dirs.clone()
    }
}

#[test]
#[ignore = "needs root/QEMU"]
fn weights_and_cpusets_on_cgroup_v1() {
    require_root("weights_and_cpusets_on_cgroup_v1");
    assert!(
        Path::new("/sys/fs/cgroup/cpu/cpu.shares").exists()
            && Path::new("/sys/fs/cgroup/cpuset/cpuset.cpus").exists(),
        "weights_and_cpusets_on_cgroup_v1 needs the cgroup v1 cpu and cpuset hierarchies, missing on kernel {}",
        interference_tests::kernel_release()
    );
    let a = TestVm::start("enf-a");
    let b = TestVm::start("enf-b");
    let all_dirs: Vec<PathBuf> = a.dirs().into_iter().chain(b.dirs()).collect();
    let original = snapshot_files(&all_dirs, FILES);
    assert_eq!(status_cpus(a.pid), "0", "vcpu0's cpuset pins the spinner");

    let journal = tempfile::tempdir().unwrap();
    let options = EnforcerOptions {
        journal: journal.path().join("journal.jsonl"),
        ..EnforcerOptions::default()
    };
    let mounts = Mounts::read(Path::new("/proc")).unwrap();
    let mut enforcer = Enforcer::open(options, mounts).unwrap();
    let refused = enforcer.set_vms(&[a.vm.clone(), b.vm.clone()]);
    assert!(refused.is_empty(), "{refused:?}");

    // 1. Weights.
    let even = split(&a.cg, &b.cg, 3, "equal shares");
    assert!((0.8..1.25).contains(&even), "equal shares split {even:.2}");

    let a_vcpu = a
        .children
        .dir("cpu", "libvirt/vcpu0")
        .unwrap()
        .to_path_buf();
    let a_emu = a
        .children
        .dir("cpu", "libvirt/emulator")
        .unwrap()
        .to_path_buf();
    for d in [&a_vcpu, &a_emu] {
        fs::write(d.join("cpu.shares"), "4096").unwrap();
    }
    let children_only = split(
        &a.cg,
        &b.cg,
        3,
        "4096 shares on a's vcpu0 and emulator only",
    );
    for d in [&a_vcpu, &a_emu] {
        fs::write(d.join("cpu.shares"), "1024").unwrap();
    }
    assert!(
        (0.8..1.25).contains(&children_only),
        "shares below the VM cgroup do not change the split between VMs: {children_only:.2}"
    );

    let out = enforcer.apply(
        &action("w-a", &a.vm.name, Change::CpuWeight { weight: 400 }),
        &a.vm,
    );
    applied(&out);
    let a_cpu = a.cg.dir("cpu").unwrap();
    assert_eq!(out.effects.len(), 1, "{out:?}");
    assert_eq!(out.effects[0].target, a_cpu.join("cpu.shares"));
    assert_eq!(
        (
            &*out.effects[0].before.to_string(),
            &*out.effects[0].after.to_string()
        ),
        ("1024", "4096")
    );
    assert_eq!(
        fs::read_to_string(a_cpu.join("cpu.shares")).unwrap().trim(),
        "4096"
    );
    let weighted = split(&a.cg, &b.cg, 3, "weight 400 (4096 shares) on a, 100 on b");
    assert!(
        (weighted / 4.0 - 1.0).abs() <= 0.15,
        "cpu.shares 4096 vs 1024 should split 4:1 within 15%, measured {weighted:.2}"
    );
    let out = enforcer.apply(
        &action(
            "rb-w-a",
            &a.vm.name,
            Change::Rollback {
                action_id: "w-a".into(),
            },
        ),
        &a.vm,
    );
    applied(&out);
    assert_eq!(
        snapshot_files(&all_dirs, FILES),
        original,
        "rollback restores every file"
    );

    // 2. Cpusets.
    let out = enforcer.apply(
        &action(
            "p-a",
            &a.vm.name,
            Change::Cpuset {
                cpus: CpuList::new([1]),
            },
        ),
        &a.vm,
    );
    applied(&out);
    eprintln!(
        "pin a to CPU 1: {}",
        out.effects
            .iter()
            .map(|e| format!("{} {}->{}", e.target.display(), e.before, e.after))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert_eq!(
        status_cpus(a.pid),
        "1",
        "Cpus_allowed_list follows the cpuset"
    );
    std::thread::sleep(Duration::from_millis(100));
    let seen = cpus_seen(a.pid, 1000);
    eprintln!("a's spinner ran on CPUs {seen:?} while pinned to 1");
    assert_eq!(seen, vec![1]);
    assert_eq!(cpus_seen(b.pid, 300), vec![0], "b stays on CPU 0");

    let out = enforcer.apply(
        &action(
            "rb-p-a",
            &a.vm.name,
            Change::Rollback {
                action_id: "p-a".into(),
            },
        ),
        &a.vm,
    );
    applied(&out);
    assert_eq!(
        snapshot_files(&all_dirs, FILES),
        original,
        "rollback restores every cpuset"
    );
    assert_eq!(status_cpus(a.pid), "0");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(cpus_seen(a.pid, 500), vec![0]);
    assert!(enforcer.in_effect().is_empty());

    // 3. The guard.
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("cpu.shares"), "1024\n").unwrap();
    let a_cpu_str = a_cpu.display().to_string();
    for bad in [
        tmp.path().to_path_buf(),
        PathBuf::from("/sys/fs/cgroup/cpu"),
        PathBuf::from(format!(
            "{a_cpu_str}/../{}",
            b.cg.dir("cpu")
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
        )),
    ] {
        let mut evil = a.vm.clone();
        evil.name = "evil".into();
        evil.cgroups
            .retain(|c| c.path.starts_with("/sys/fs/cgroup/cpu/"));
        evil.cgroups[0].path = bad.clone();
        let out = enforcer.apply(
            &action("evil", "evil", Change::CpuWeight { weight: 10_000 }),
            &evil,
        );
        eprintln!(
            "guard, {}: {}",
            bad.display(),
            out.error.as_deref().unwrap_or("")
        );
        assert_eq!(out.result, ActionResult::Failed, "{out:?}");
        assert!(
            out.error
                .as_deref()
                .unwrap_or("")
                .contains(&bad.display().to_string()),
            "{out:?}"
        );
    }
    assert_eq!(
        fs::read_to_string(tmp.path().join("cpu.shares")).unwrap(),
        "1024\n"
    );
    assert_eq!(
        fs::read_to_string("/sys/fs/cgroup/cpu/cpu.shares")
            .unwrap()
            .trim(),
        "1024"
    );
    assert_eq!(snapshot_files(&all_dirs, FILES), original);
}
