//! The Enforcer on a fake cgroupfs (`cgroup::tests::FakeHost`): journalling order,
//! failures and their undo, rollbacks, restores, dry run; balloons against a scripted
//! QMP peer and a real paused QEMU.

use std::fs;
use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::enforce::journal::EntryState;
use crate::policy::{Rung, Setting};
use crate::testing::cgroup_fs::FakeCgroupFs as FakeHost;
use crate::testing::qmp::{FakeQmp, RealQemu};
use interference_core::cpu_list::CpuList;

struct Fixture {
    host: FakeHost,
    vm: Vm,
    journal: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let host = FakeHost::new();
        let vm = host.libvirt_vm("web");
        let journal = host.dir.path().join("state/journal.jsonl");
        Self { host, vm, journal }
    }

    fn enforcer(&self, dry_run: bool) -> Enforcer {
        let options = EnforcerOptions {
            journal: self.journal.clone(),
            dry_run,
            balloon_floor_bytes: Some(256 << 20),
            qmp_timeout: Duration::from_secs(5),
            keep_history: false,
            // Enforcement alone: no ledger owed (billing's journal rules are tested in
            // enforce::journal and billing).
            owes_ledger: false,
        };
        Enforcer::with_guard(options, self.host.guard()).unwrap()
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.host
            .dir
            .path()
            .canonicalize()
            .unwrap()
            .join("cgroup")
            .join(rel)
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.file(rel))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Every cgroup file of the fake host, for before/after comparisons.
    fn snapshot(&self) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        let mut stack = vec![self.file("")];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if e.file_type().unwrap().is_dir() {
                    stack.push(p);
                } else {
                    out.push((
                        p.clone(),
                        fs::read_to_string(&p).unwrap_or_default().trim().to_owned(),
                    ));
                }
            }
        }
        out.sort();
        out
    }
}

fn action(id: &str, vm: &str, change: Change) -> Action {
    Action {
        payer: Default::default(),
        not_donors: Vec::new(),
        id: id.into(),
        decided_ms: 1,
        rung: match change {
            Change::CpuWeight { .. } => Rung::Weight,
            Change::Cpuset { .. } => Rung::Pin,
            Change::Balloon { .. } => Rung::Balloon,
            Change::Migrate { .. } | Change::Rollback { .. } => Rung::Migrate,
        },
        change,
        vm: vm.into(),
        protects: "db".into(),
        victim: "db".into(),
        aggressor: vm.into(),
        score: 80.0,
        vm_is_aggressor: true,
        unobservable: Vec::new(),
        cause: None,
        customers: Default::default(),
        vcpus: None,
        simulated: false,
        reason: "test".into(),
        trigger: Default::default(),
    }
}

const SCOPE_SHARES: &str = "cpu/machine.slice/web.scope/cpu.shares";

#[test]
fn weight_is_journalled_applied_and_rolled_back() {
    let f = Fixture::new();
    let original = f.snapshot();
    let mut e = f.enforcer(false);
    let out = e.apply(
        &action("a1", "web", Change::CpuWeight { weight: 50 }),
        &f.vm,
    );
    assert_eq!(out.result, ActionResult::Applied, "{out:?}");
    assert_eq!(out.effects.len(), 1);
    assert_eq!(
        (
            &*out.effects[0].before.to_string(),
            &*out.effects[0].after.to_string()
        ),
        ("1024", "512")
    );
    assert_eq!(f.read(SCOPE_SHARES), "512");
    assert_eq!(
        f.read("cpu/machine.slice/web.scope/libvirt/vcpu0/cpu.shares"),
        "1024"
    );

    let text = fs::read_to_string(&f.journal).unwrap();
    let recs: Vec<&str> = text.lines().map(|l| &l[..l.find(',').unwrap()]).collect();
    assert_eq!(
        recs,
        [
            r#"{"rec":"action""#,
            r#"{"rec":"intent""#,
            r#"{"rec":"done""#,
            r#"{"rec":"outcome""#
        ]
    );
    assert_eq!(e.history().len(), 1);

    let out = e.apply(
        &action(
            "r1",
            "web",
            Change::Rollback {
                action_id: "a1".into(),
            },
        ),
        &f.vm,
    );
    assert_eq!(out.result, ActionResult::Applied, "{out:?}");
    assert_eq!(
        (
            &*out.effects[0].before.to_string(),
            &*out.effects[0].after.to_string()
        ),
        ("512", "1024")
    );
    assert_eq!(f.snapshot(), original);
    assert_eq!(
        fs::metadata(&f.journal).unwrap().len(),
        0,
        "compacted once nothing is in effect"
    );
    // Rolling back again finds nothing to do.
    let again = e.apply(
        &action(
            "r2",
            "web",
            Change::Rollback {
                action_id: "a1".into(),
            },
        ),
        &f.vm,
    );
    assert_eq!(again.result, ActionResult::Applied);
    assert!(again.effects.is_empty());
}

#[test]
fn dry_run_writes_nothing_not_even_the_journal() {
    let f = Fixture::new();
    let original = f.snapshot();
    let mut e = f.enforcer(true);
    let out = e.apply(
        &action(
            "a1",
            "web",
            Change::Cpuset {
                cpus: CpuList::new([2, 3]),
            },
        ),
        &f.vm,
    );
    assert_eq!(out.result, ActionResult::Simulated, "{out:?}");
    assert_eq!(out.effects.len(), 4, "{out:?}");
    let mut simulated = action("a2", "web", Change::CpuWeight { weight: 400 });
    drop(e);
    let mut e = f.enforcer(false);
    simulated.simulated = true;
    let out = e.apply(&simulated, &f.vm);
    assert_eq!(out.result, ActionResult::Simulated);
    assert_eq!(out.effects[0].after, Setting::CpuShares { shares: 4096 });
    assert_eq!(f.snapshot(), original);
    assert_eq!(fs::metadata(&f.journal).map(|m| m.len()).unwrap_or(0), 0);
}

#[test]
fn cpuset_pin_and_restore_all_put_every_file_back() {
    let f = Fixture::new();
    let original = f.snapshot();
    let mut e = f.enforcer(false);
    let out = e.apply(
        &action(
            "a1",
            "web",
            Change::Cpuset {
                cpus: CpuList::new([2, 3]),
            },
        ),
        &f.vm,
    );
    assert_eq!(out.result, ActionResult::Applied, "{out:?}");
    assert_eq!(
        f.read("cpuset/machine.slice/web.scope/libvirt/vcpu0/cpuset.cpus"),
        "2-3"
    );
    let out = e.apply(
        &action("a2", "web", Change::CpuWeight { weight: 25 }),
        &f.vm,
    );
    assert_eq!(out.result, ActionResult::Applied, "{out:?}");
    assert_eq!(e.in_effect().len(), 5);
    drop(e);

    // The next start finds both actions in effect and restores them, newest first.
    let mut e = f.enforcer(false);
    assert_eq!(e.in_effect().len(), 5);
    let outs = e.restore_all();
    let ids: Vec<&str> = outs.iter().map(|o| o.action_id.as_str()).collect();
    assert_eq!(ids, ["restore:a2", "restore:a1"]);
    assert!(
        outs.iter().all(|o| o.result == ActionResult::Applied),
        "{outs:?}"
    );
    assert_eq!(f.snapshot(), original);
    assert!(e.in_effect().is_empty());
}

#[test]
fn rolling_back_an_older_change_hands_its_original_to_the_newer() {
    let f = Fixture::new();
    let mut e = f.enforcer(false);
    e.apply(
        &action("a1", "web", Change::CpuWeight { weight: 50 }),
        &f.vm,
    );
    e.apply(
        &action("a2", "web", Change::CpuWeight { weight: 25 }),
        &f.vm,
    );
    assert_eq!(f.read(SCOPE_SHARES), "256");
    let out = e.apply(
        &action(
            "r1",
            "web",
            Change::Rollback {
                action_id: "a1".into(),
            },
        ),
        &f.vm,
    );
    assert_eq!(out.result, ActionResult::Applied, "{out:?}");
    assert!(out.effects.is_empty(), "the newer value stays: {out:?}");
    assert_eq!(f.read(SCOPE_SHARES), "256");
    let out = e.apply(
        &action(
            "r2",
            "web",
            Change::Rollback {
                action_id: "a2".into(),
            },
        ),
        &f.vm,
    );
    assert_eq!(
        out.effects[0].after,
        Setting::CpuShares { shares: 1024 },
        "{out:?}"
    );
    assert_eq!(f.read(SCOPE_SHARES), "1024");
}

#[test]
fn a_value_changed_by_someone_else_is_left_alone() {
    let f = Fixture::new();
    let mut e = f.enforcer(false);
    e.apply(
        &action("a1", "web", Change::CpuWeight { weight: 50 }),
        &f.vm,
    );
    fs::write(f.file(SCOPE_SHARES), "2048\n").unwrap();
    let outs = e.restore_all();
    assert_eq!(outs.len(), 1);
    assert!(outs[0].effects.is_empty(), "{outs:?}");
    assert_eq!(f.read(SCOPE_SHARES), "2048");
    assert!(e.in_effect().is_empty(), "closed with a note");
}

#[test]
fn a_failed_write_undoes_the_rest_and_is_reported() {
    let f = Fixture::new();
    // emulator's cpuset.cpus is a symlink: readable, but the writer (O_NOFOLLOW)
    // refuses it. Pinning to CPU 2 writes vcpu0 (1 -> 1-2 -> 2) before emulator.
    let emulator = f.file("cpuset/machine.slice/web.scope/libvirt/emulator/cpuset.cpus");
    let real = f.host.dir.path().join("emulator-cpus");
    fs::rename(&emulator, &real).unwrap();
    std::os::unix::fs::symlink(&real, &emulator).unwrap();
    let original = f.snapshot();
    let mut e = f.enforcer(false);
    let out = e.apply(
        &action(
            "a1",
            "web",
            Change::Cpuset {
                cpus: CpuList::new([2]),
            },
        ),
        &f.vm,
    );
    assert_eq!(out.result, ActionResult::Failed, "{out:?}");
    let err = out.error.unwrap();
    assert!(err.contains("emulator/cpuset.cpus"), "{err}");
    assert_eq!(f.snapshot(), original, "vcpu0 was put back");
    assert!(e.in_effect().is_empty());
    let history = e.history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].1.result, ActionResult::Failed);
}

#[test]
fn a_vanished_cgroup_fails_the_action() {
    let f = Fixture::new();
    let mut e = f.enforcer(false);
    let scope = f.file("cpu/machine.slice/web.scope");
    fs::remove_dir_all(&scope).unwrap();
    let out = e.apply(
        &action("a1", "web", Change::CpuWeight { weight: 50 }),
        &f.vm,
    );
    assert_eq!(out.result, ActionResult::Failed);
    assert!(
        out.error.as_deref().unwrap().contains("web.scope"),
        "{out:?}"
    );
    assert!(e.in_effect().is_empty());
}

#[test]
fn a_vanished_cgroup_closes_its_entry_on_restore() {
    let f = Fixture::new();
    let mut e = f.enforcer(false);
    e.apply(
        &action("a1", "web", Change::CpuWeight { weight: 50 }),
        &f.vm,
    );
    fs::remove_dir_all(f.file("cpu/machine.slice/web.scope")).unwrap();
    let outs = e.restore_all();
    assert_eq!(outs[0].result, ActionResult::Failed);
    assert!(
        outs[0].error.as_deref().unwrap().contains("vanished"),
        "{outs:?}"
    );
    assert!(e.in_effect().is_empty(), "nothing left to restore");
}

#[test]
fn a_crash_between_intent_and_write_restores_nothing_wrongly() {
    let f = Fixture::new();
    let original = f.snapshot();
    {
        let mut j = Journal::open(&f.journal).unwrap();
        let file = f.file(SCOPE_SHARES);
        let root = file.parent().unwrap().to_path_buf();
        j.write_intents(
            &action("a1", "web", Change::CpuWeight { weight: 50 }),
            vec![(
                "web".into(),
                Target::Cgroup { file, root },
                "1024".into(),
                "512".into(),
            )],
            1,
        )
        .unwrap();
    }
    let mut e = f.enforcer(false);
    assert_eq!(e.in_effect().len(), 1);
    assert!(matches!(e.in_effect()[0].state, EntryState::Pending));
    let outs = e.restore_all();
    assert_eq!(outs[0].result, ActionResult::Applied, "{outs:?}");
    assert!(outs[0].effects.is_empty());
    assert_eq!(f.snapshot(), original);
}

#[test]
fn a_journal_pointing_outside_the_vm_is_not_restored() {
    let f = Fixture::new();
    let victim = f.host.dir.path().join("victim");
    fs::write(&victim, "keep\n").unwrap();
    {
        let mut j = Journal::open(&f.journal).unwrap();
        let root = f.file("cpu/machine.slice/web.scope");
        let intents = vec![
            // Outside the recorded root.
            (
                "web".into(),
                Target::Cgroup {
                    file: victim.join("cpu.shares"),
                    root: root.clone(),
                },
                "1".into(),
                "2".into(),
            ),
            // A file name the agent never writes.
            (
                "web".into(),
                Target::Cgroup {
                    file: root.join("cgroup.procs"),
                    root: root.clone(),
                },
                "1".into(),
                "2".into(),
            ),
            // A hierarchy root as the VM root.
            (
                "web".into(),
                Target::Cgroup {
                    file: f.file("cpu/cpu.shares"),
                    root: f.file("cpu"),
                },
                "1".into(),
                "2".into(),
            ),
        ];
        j.write_intents(
            &action("a1", "web", Change::CpuWeight { weight: 50 }),
            intents,
            1,
        )
        .unwrap();
    }
    let mut e = f.enforcer(false);
    let outs = e.restore_all();
    let err = outs[0].error.clone().unwrap();
    assert!(
        err.contains("outside")
            && err.contains("cgroup.procs")
            && err.contains("root of a cgroup hierarchy"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep\n");
    assert_eq!(f.read("cpu/cpu.shares"), "1024");
    assert_eq!(
        e.in_effect().len(),
        3,
        "refused entries stay for a human to look at"
    );
}

#[test]
fn an_action_for_another_vm_or_an_unmanaged_path_fails() {
    let f = Fixture::new();
    let mut e = f.enforcer(false);
    let out = e.apply(&action("a1", "db", Change::CpuWeight { weight: 50 }), &f.vm);
    assert_eq!(out.result, ActionResult::Failed);
    let mut evil = f.vm.clone();
    evil.cgroups[0].path = "/etc".into();
    let out = e.apply(
        &action("a2", "web", Change::CpuWeight { weight: 50 }),
        &evil,
    );
    assert_eq!(out.result, ActionResult::Failed);
    assert!(out.error.unwrap().contains("/etc"));
}

#[test]
fn balloon_below_the_floor_or_beyond_what_the_guest_spares_is_refused() {
    let f = Fixture::new();
    let mut e = f.enforcer(false);
    let mut vm = f.vm.clone();
    vm.qmp_socket = Some("/nonexistent/qmp.sock".into());
    let out = e.apply(
        &action(
            "a1",
            "web",
            Change::Balloon {
                target_bytes: 128 << 20,
            },
        ),
        &vm,
    );
    assert!(out.error.unwrap().contains("below the floor of 256 MiB"));

    let fake = FakeQmp::serve(|mut p| {
        p.handshake();
        let id = p.expect("qom-list", Some(json!({"path": "/machine/peripheral"})));
        p.reply(
            &id,
            json!([{"name": "balloon0", "type": "child<virtio-balloon-pci>"}]),
        );
        let id = p.expect("query-balloon", None);
        p.reply(&id, json!({"actual": 1u64 << 30}));
        let id = p.expect(
            "qom-get",
            Some(json!({"path": "/machine/peripheral/balloon0", "property": "guest-stats"})),
        );
        p.reply(&id, json!({"last-update": 1_700_000_000u64, "stats": {"stat-available-memory": 100u64 << 20}}));
        p.wait_closed();
    });
    vm.qmp_socket = Some(fake.path.clone());
    let out = e.apply(
        &action(
            "a2",
            "web",
            Change::Balloon {
                target_bytes: 512 << 20,
            },
        ),
        &vm,
    );
    assert_eq!(out.result, ActionResult::Failed);
    let err = out.error.unwrap();
    assert!(
        err.contains("1024 MiB -> 512 MiB") && err.contains("100 MiB"),
        "{err}"
    );
    fake.join();
    assert!(e.in_effect().is_empty());
}

#[test]
fn a_balloon_claiming_more_than_the_vm_was_started_with_is_journalled_at_its_size() {
    let fake = FakeQmp::serve(|mut p| {
        p.handshake();
        let id = p.expect("qom-list", Some(json!({"path": "/machine/peripheral"})));
        p.reply(
            &id,
            json!([{"name": "balloon0", "type": "child<virtio-balloon-pci>"}]),
        );
        let id = p.expect("query-balloon", None);
        p.reply(&id, json!({"actual": 64u64 << 30}));
        let id = p.expect(
            "qom-get",
            Some(json!({"path": "/machine/peripheral/balloon0", "property": "guest-stats"})),
        );
        p.reply(&id, json!({"last-update": 1_700_000_000u64, "stats": {"stat-available-memory": 320u64 << 30}}));
        let id = p.expect("balloon", Some(json!({"value": 768u64 << 20})));
        p.reply(&id, json!({}));
        p.wait_closed();
    });
    let f = Fixture::new();
    let mut e = f.enforcer(false);
    let mut vm = f.vm.clone();
    vm.qmp_socket = Some(fake.path.clone());
    vm.allocation.memory_bytes = Some(1 << 30);
    let out = e.apply(
        &action(
            "b1",
            "web",
            Change::Balloon {
                target_bytes: 768 << 20,
            },
        ),
        &vm,
    );
    fake.join();
    assert_eq!(out.result, ActionResult::Applied, "{out:?}");
    assert_eq!(
        out.effects[0].before,
        Setting::Bytes { bytes: 1 << 30 },
        "the -m size, not the 64 GiB claimed"
    );
    let entry = &e.in_effect()[0];
    assert_eq!(
        entry.intent.before,
        Setting::Bytes { bytes: 1 << 30 }.to_string()
    );
}

#[test]
#[ignore = "needs root/QEMU"]
fn balloon_on_a_real_qemu_is_journalled_and_restored() {
    let qemu = RealQemu::start("balloon_on_a_real_qemu_is_journalled_and_restored", &[]);
    let f = Fixture::new();
    let mut vm = f.vm.clone();
    vm.qmp_socket = Some(qemu.qmp.clone());
    let options = EnforcerOptions {
        journal: f.journal.clone(),
        balloon_floor_bytes: Some(16 << 20),
        ..EnforcerOptions::default()
    };
    let mut e = Enforcer::with_guard(options, f.host.guard()).unwrap();
    let out = e.apply(
        &action(
            "b1",
            "web",
            Change::Balloon {
                target_bytes: 32 << 20,
            },
        ),
        &vm,
    );
    assert_eq!(out.result, ActionResult::Applied, "{out:?}");
    assert_eq!(out.effects[0].before, Setting::Bytes { bytes: 64 << 20 });
    assert!(out.effects[0]
        .target
        .to_string_lossy()
        .ends_with("#balloon"));
    let outs = e.restore_all();
    assert_eq!(outs[0].result, ActionResult::Applied, "{outs:?}");
    assert_eq!(outs[0].effects[0].after, Setting::Bytes { bytes: 64 << 20 });
    assert!(e.in_effect().is_empty());
    let mut q = QmpClient::connect(&qemu.qmp, Duration::from_secs(5)).unwrap();
    assert_eq!(q.query_balloon().unwrap(), 64 << 20);
}

#[test]
fn migration_is_journalled_as_not_restorable() {
    let fake = FakeQmp::serve(|mut p| {
        p.handshake();
        let id = p.expect("migrate", Some(json!({"uri": "tcp:10.0.0.2:4444"})));
        p.reply(&id, json!({}));
        p.wait_closed();
    });
    let f = Fixture::new();
    let mut vm = f.vm.clone();
    vm.qmp_socket = Some(fake.path.clone());
    let mut e = f.enforcer(false);
    let out = e.apply(
        &action(
            "m1",
            "web",
            Change::Migrate {
                uri: "tcp:10.0.0.2:4444".into(),
                vcpus: None,
                memory_mib: None,
            },
        ),
        &vm,
    );
    assert_eq!(out.result, ActionResult::Applied, "{out:?}");
    fake.join();
    assert_eq!(e.in_effect().len(), 1);
    let outs = e.restore_all();
    assert_eq!(outs[0].result, ActionResult::Applied, "{outs:?}");
    assert!(outs[0].effects.is_empty());
    assert!(e.in_effect().is_empty());
}

#[test]
fn restore_refuses_to_run_beside_a_live_agent() {
    let f = Fixture::new();
    let _agent = f.enforcer(false);
    // What `interference restore` opens first: the journal, locked by the agent.
    let Err(e) = Enforcer::open(
        EnforcerOptions {
            journal: f.journal.clone(),
            ..EnforcerOptions::default()
        },
        f.host.mounts.clone(),
    ) else {
        panic!("a second enforcer opened a journal in use");
    };
    assert!(e.to_string().contains("in use"), "{e}");
}
