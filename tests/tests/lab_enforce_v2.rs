//! The enforcement stage on real cgroup v2 files, inside a lab guest (pure cgroup v2,
//! cpu and cpuset controllers enabled, Debian's 6.1 kernel): this host's own v2 tree
//! has no controllers. The release `enforce_probe`, bundled with the host's loader and
//! libraries (scripts/guest-bundle.sh), runs in the guest with a journal on the
//! guest's /tmp.
//!
//! Two VMs as cgroups, `enf/web` and `enf/db`, each with `vcpu0` and `emulator` leaves
//! and a busy loop in `vcpu0`; `web/vcpu0` pinned to CPU 1 the libvirt way (its own
//! `cpuset.cpus`), `enf` first confined to CPU 0.
//! 1. A weight of 400 on `web` writes `enf/web/cpu.weight` (100 -> 400) and web gets
//!    well over twice db's CPU on the shared CPU; a pin to CPU 1 is refused, CPU 1 not
//!    being in the parent's effective set, and nothing changes.
//! 2. With `enf` on 0-1, a pin of `web` to CPU 0 writes `web` (inheriting -> 0) and
//!    `web/vcpu0` (1 -> 0): `cpuset.cpus.effective` and the spinner's
//!    Cpus_allowed_list follow; `web/emulator`, which has no cpuset of its own, is not
//!    written.
//! 3. `enforce_probe restore` (the library's `restore`) puts every file back: the
//!    weight to 100, `web/vcpu0` to 1 (the spinner follows), and `web` to the CPUs it
//!    inherited (the kernel refuses to empty a populated v2 cpuset again: ENOSPC), and
//!    the journal is left empty.

use interference_core::cpu_list::CpuList;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use interference::inventory::{Hierarchy, Vm, VmCgroup, VmSource};
use interference::policy::{Action, Change, Outcome, Rung};
use interference_tests::lab::{Lab, LabOptions};
use interference_tests::{guest_bundle, require_root};
use serde_json::Value;

fn vm(name: &str) -> Vm {
    Vm {
        cgroups: vec![VmCgroup {
            path: format!("/sys/fs/cgroup/enf/{name}").into(),
            hierarchy: Hierarchy::V2,
        }],
        ..Vm::new(name, VmSource::Static)
    }
}

fn action(id: &str, change: Change) -> Action {
    Action {
        payer: Default::default(),
        not_donors: Vec::new(),
        id: id.into(),
        decided_ms: 0,
        rung: Rung::Weight,
        change,
        vm: "web".into(),
        protects: "db".into(),
        victim: "db".into(),
        aggressor: "web".into(),
        score: 90.0,
        vm_is_aggressor: true,
        unobservable: Vec::new(),
        cause: None,
        customers: Default::default(),
        vcpus: None,
        simulated: false,
        reason: "lab_enforce_v2".into(),
        trigger: Default::default(),
    }
}

/// The share directory: the guest bundle (with the probe), the VM and the actions as
/// JSON.
fn share_dir() -> tempfile::TempDir {
    let json = |v: serde_json::Result<String>| v.expect("serialising a fixture");
    let pin = |id: &str, cpu: u32| {
        json(serde_json::to_string(&action(
            id,
            Change::Cpuset {
                cpus: CpuList::new([cpu]),
            },
        )))
    };
    guest_bundle::share_dir(&[
        ("web.json", json(serde_json::to_string(&vm("web")))),
        (
            "w1.json",
            json(serde_json::to_string(&action(
                "w1",
                Change::CpuWeight { weight: 400 },
            ))),
        ),
        ("pbad.json", pin("pbad", 1)),
        ("p1.json", pin("p1", 0)),
    ])
}

const HELPERS: &str = r#"P=/mnt/share/enforce_probe; S=/mnt/share; J=/tmp/enf/journal.jsonl; C=/sys/fs/cgroup/enf
usage() { sed -n "s/^usage_usec //p" "$C/$1/cpu.stat"; }
now() { cut -d' ' -f1 /proc/uptime; }
allowed() { sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/$(cat $C/web/vcpu0/cgroup.procs)/status; }
"#;

/// Runs a phase script in the guest; its `key=value` lines.
fn phase(lab: &Lab, vm: &str, what: &str, script: &str) -> BTreeMap<String, String> {
    let started = Instant::now();
    let out = lab
        .exec(vm, &format!("{HELPERS}{script}"), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{what}: exec failed: {e:#}"));
    eprintln!(
        "{what}: rc {} in {:.1?}\n{}",
        out.code,
        started.elapsed(),
        out.stdout.trim_end()
    );
    assert_eq!(out.code, 0, "{what} failed in the guest:\n{}", out.stdout);
    out.stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn outcome(kv: &BTreeMap<String, String>, key: &str) -> Outcome {
    let text = kv.get(key).unwrap_or_else(|| panic!("no {key} in {kv:?}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{key}: {e}: {text}"))
}

fn num(kv: &BTreeMap<String, String>, key: &str) -> f64 {
    kv.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {key} in {kv:?}"))
}

#[test]
#[ignore = "needs root/QEMU"]
fn enforcer_changes_and_restores_cgroup_v2_files_in_a_guest() {
    require_root("enforcer_changes_and_restores_cgroup_v2_files_in_a_guest");
    let started = Instant::now();
    let share = share_dir();
    let lab = Lab::up(
        "ev",
        &LabOptions {
            vms: 1,
            vcpus: 2,
            workloads: vec!["idle".into()],
            share: Some(share.path().to_path_buf()),
            ..Default::default()
        },
    )
    .unwrap();
    let guest = lab.names()[0].clone();

    // 1. Weight, and a pin outside the parent's CPUs.
    let one = phase(
        &lab,
        &guest,
        "weight 400 on web, pin outside the parent",
        r#"set -e
echo "kernel=$(uname -r)"
mkdir -p $C /tmp/enf
echo "+cpu +cpuset" >/sys/fs/cgroup/cgroup.subtree_control
echo "+cpu +cpuset" >$C/cgroup.subtree_control
echo 0 >$C/cpuset.cpus
for g in web db; do
    mkdir -p $C/$g
    echo "+cpu +cpuset" >$C/$g/cgroup.subtree_control
    mkdir -p $C/$g/vcpu0 $C/$g/emulator
    sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &
    echo $! >$C/$g/vcpu0/cgroup.procs
done
echo 1 >$C/web/vcpu0/cpuset.cpus
echo "weight_before=$(cat $C/web/cpu.weight)"
echo "w1=$($P apply $J $S/web.json $S/w1.json)"
echo "weight_after=$(cat $C/web/cpu.weight)"
echo "db_weight=$(cat $C/db/cpu.weight)"
sleep 1
t0=$(now); w0=$(usage web); d0=$(usage db)
sleep 3
t1=$(now); w1=$(usage web); d1=$(usage db)
echo "elapsed_us=$(echo "($t1 - $t0) * 1000000" | bc)"
echo "web_us=$((w1 - w0))"
echo "db_us=$((d1 - d0))"
echo "pbad=$($P apply $J $S/web.json $S/pbad.json)"
echo "web_cpus_after_pbad=[$(cat $C/web/cpuset.cpus)]"
echo "journal_lines=$(wc -l <$J)"
"#,
    );
    assert!(
        one["kernel"].starts_with("6.1."),
        "guest kernel {}",
        one["kernel"]
    );
    let w1 = outcome(&one, "w1");
    assert_eq!(w1.result.as_str(), "applied", "{w1:?}");
    assert_eq!(w1.effects.len(), 1, "{w1:?}");
    assert_eq!(
        w1.effects[0].target,
        Path::new("/sys/fs/cgroup/enf/web/cpu.weight")
    );
    assert_eq!(
        (one["weight_before"].as_str(), one["weight_after"].as_str()),
        ("100", "400")
    );
    assert_eq!(one["db_weight"], "100");
    let (elapsed, web, db) = (
        num(&one, "elapsed_us"),
        num(&one, "web_us"),
        num(&one, "db_us"),
    );
    eprintln!(
        "weight 400 vs 100 on one guest CPU: web {:.2} CPU, db {:.2} CPU, web/db {:.2} (4 expected)",
        web / elapsed,
        db / elapsed,
        web / db
    );
    assert!(web >= 2.5 * db, "web {web} us vs db {db} us");
    let pbad = outcome(&one, "pbad");
    assert_eq!(pbad.result.as_str(), "failed", "{pbad:?}");
    let err = pbad.error.unwrap_or_default();
    assert!(
        err.contains("not available") && err.contains("\"0\""),
        "{err}"
    );
    assert_eq!(
        one["web_cpus_after_pbad"], "[]",
        "a refused pin writes nothing"
    );
    assert_eq!(
        one["journal_lines"], "4",
        "action, intent, done, outcome of w1 only"
    );

    // 2. Pin to CPU 0 with the parent on 0-1.
    let two = phase(
        &lab,
        &guest,
        "pin web to CPU 0",
        r#"set -e
echo 0-1 >$C/cpuset.cpus
echo "vcpu0_effective_before=$(cat $C/web/vcpu0/cpuset.cpus.effective)"
echo "allowed_before=$(allowed)"
echo "p1=$($P apply $J $S/web.json $S/p1.json)"
echo "web_cpus=$(cat $C/web/cpuset.cpus)"
echo "vcpu0_cpus=$(cat $C/web/vcpu0/cpuset.cpus)"
echo "vcpu0_effective=$(cat $C/web/vcpu0/cpuset.cpus.effective)"
echo "emulator_cpus=[$(cat $C/web/emulator/cpuset.cpus)]"
echo "emulator_effective=$(cat $C/web/emulator/cpuset.cpus.effective)"
echo "allowed=$(allowed)"
"#,
    );
    assert_eq!(two["vcpu0_effective_before"], "1");
    assert_eq!(two["allowed_before"], "1");
    let p1 = outcome(&two, "p1");
    assert_eq!(p1.result.as_str(), "applied", "{p1:?}");
    let changed: Vec<String> = p1
        .effects
        .iter()
        .map(|e| format!("{}:[{}]->[{}]", e.target.display(), e.before, e.after))
        .collect();
    assert_eq!(
        changed,
        [
            "/sys/fs/cgroup/enf/web/cpuset.cpus:[]->[0]",
            "/sys/fs/cgroup/enf/web/vcpu0/cpuset.cpus:[1]->[0]",
        ]
    );
    assert_eq!(two["web_cpus"], "0");
    assert_eq!(two["vcpu0_cpus"], "0");
    assert_eq!(two["vcpu0_effective"], "0");
    assert_eq!(
        two["emulator_cpus"], "[]",
        "no cpuset of its own: not written"
    );
    assert_eq!(two["emulator_effective"], "0", "but confined through web");
    assert_eq!(two["allowed"], "0", "the spinner follows");

    // 3. Restore.
    let three = phase(
        &lab,
        &guest,
        "restore",
        r#"set -e
echo "restore=$($P restore $J)"
echo "weight=$(cat $C/web/cpu.weight)"
echo "web_cpus=[$(cat $C/web/cpuset.cpus)]"
echo "vcpu0_cpus=$(cat $C/web/vcpu0/cpuset.cpus)"
echo "vcpu0_effective=$(cat $C/web/vcpu0/cpuset.cpus.effective)"
echo "allowed=$(allowed)"
echo "journal_bytes=$(wc -c <$J)"
"#,
    );
    let report: Value = serde_json::from_str(&three["restore"]).unwrap();
    eprintln!("restore report: {report}");
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["failures"], 0, "{report}");
    assert_eq!(
        report["restored"], 3,
        "cpu.weight, web and vcpu0 cpusets: {report}"
    );
    assert_eq!(three["weight"], "100");
    // A populated v2 cpuset cannot be emptied again (ENOSPC): `web`, which inherited
    // 0-1 before the pin, gets its parent's effective CPUs written instead.
    assert_eq!(three["web_cpus"], "[0-1]", "the CPUs web inherited");
    let web_effect = report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o["effects"].as_array().unwrap().iter())
        .find(|e| e["target"] == "/sys/fs/cgroup/enf/web/cpuset.cpus")
        .cloned();
    assert_eq!(
        web_effect.map(|e| e["after"].clone()),
        // Effects carry typed values (a CPU list, not the file's text).
        Some(serde_json::json!({"kind": "cpus", "cpus": [0, 1]})),
        "{report}"
    );
    assert_eq!(three["vcpu0_cpus"], "1");
    assert_eq!(three["vcpu0_effective"], "1");
    assert_eq!(three["allowed"], "1");
    assert_eq!(three["journal_bytes"], "0");
    drop(lab);
    eprintln!("lab enforcement checks done in {:.1?}", started.elapsed());
}
