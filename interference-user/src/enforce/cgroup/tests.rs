//! The enforcement stage's cgroup plans on a fake hybrid cgroupfs
//! ([`crate::testing::cgroup_fs`]).

use std::fs;

use super::*;
use crate::testing::cgroup_fs::{vm, FakeCgroupFs as FakeHost};

#[test]
fn weight_goes_to_the_vm_cgroup_as_converted_shares_on_v1() {
    let host = FakeHost::new();
    let vm = host.libvirt_vm("web");
    let mut g = host.guard();
    g.admit(&vm.name, &vm.cgroups).unwrap();
    let plan = plan_weight(&g, "web", 400).unwrap();
    assert_eq!(plan.changes.len(), 1, "{plan:?}");
    let c = &plan.changes[0];
    assert!(
        c.file.ends_with("cpu/machine.slice/web.scope/cpu.shares"),
        "{c:?}"
    );
    assert_eq!((c.before.as_str(), c.after.as_str()), ("1024", "4096"));
    assert_eq!(plan.writes, vec![(c.file.clone(), "4096".to_string())]);
    // Already there: nothing to do.
    assert!(plan_weight(&g, "web", 100).unwrap().changes.is_empty());
    let e = plan_weight(&g, "web", 0).unwrap_err();
    assert!(e.to_string().contains("outside 1..=10000"), "{e}");
}

#[test]
fn weight_on_v2_needs_the_cpu_controller() {
    let host = FakeHost::new();
    let on = host.mk(
        "unified/a.scope",
        &[
            ("cgroup.controllers", "cpuset cpu io"),
            ("cpu.weight", "100"),
        ],
    );
    let off = host.mk("unified/b.scope", &[("cgroup.controllers", "io")]);
    let mut g = host.guard();
    g.admit("a", &vm("a", &[(on.clone(), Hierarchy::V2)]).cgroups)
        .unwrap();
    g.admit("b", &vm("b", &[(off.clone(), Hierarchy::V2)]).cgroups)
        .unwrap();
    let plan = plan_weight(&g, "a", 250).unwrap();
    assert_eq!(
        plan.writes,
        vec![(on.join("cpu.weight"), "250".to_string())]
    );
    let e = plan_weight(&g, "b", 250).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("cpu controller") && msg.contains(&off.display().to_string()),
        "{msg}"
    );
}

#[test]
fn cpuset_v1_plans_the_whole_subtree_in_a_valid_order() {
    let host = FakeHost::new();
    let vm = host.libvirt_vm("web");
    let mut g = host.guard();
    g.admit(&vm.name, &vm.cgroups).unwrap();
    let plan = plan_cpuset(&g, "web", &"2-3".parse().unwrap()).unwrap();
    let scope = host.mk("cpuset/machine.slice/web.scope", &[]);
    let after = |rel: &str| {
        plan.changes
            .iter()
            .find(|c| c.file == scope.join(rel).join("cpuset.cpus"))
            .map(|c| (c.before.clone(), c.after.clone()))
    };
    assert_eq!(after(""), Some(("0-3".into(), "2-3".into())));
    assert_eq!(after("libvirt"), Some(("0-3".into(), "2-3".into())));
    assert_eq!(after("libvirt/vcpu0"), Some(("1".into(), "2-3".into())));
    assert_eq!(
        after("libvirt/emulator"),
        Some(("0-3".into(), "2-3".into()))
    );
    assert!(plan.changes.iter().all(|c| c.root == scope), "{plan:?}");
    // vcpu0 grows to 1-3 first, then everything shrinks children first.
    let order: Vec<String> = plan
        .writes
        .iter()
        .map(|(f, v)| format!("{}={v}", f.strip_prefix(&scope).unwrap().display()))
        .collect();
    assert_eq!(
        order,
        [
            "libvirt/vcpu0/cpuset.cpus=1-3",
            "libvirt/vcpu0/cpuset.cpus=2-3",
            "libvirt/emulator/cpuset.cpus=2-3",
            "libvirt/cpuset.cpus=2-3",
            "cpuset.cpus=2-3",
        ]
    );
}

#[test]
fn cpuset_is_clipped_to_the_parent_and_refused_when_empty() {
    let host = FakeHost::new();
    let vm = host.libvirt_vm("web");
    host.mk(
        "cpuset/machine.slice",
        &[("cpuset.cpus", "0-1"), ("cpuset.effective_cpus", "0-1")],
    );
    let mut g = host.guard();
    g.admit(&vm.name, &vm.cgroups).unwrap();
    let plan = plan_cpuset(&g, "web", &"1-2".parse().unwrap()).unwrap();
    assert!(plan.changes.iter().all(|c| c.after == "1"), "{plan:?}");
    let e = plan_cpuset(&g, "web", &"2-3".parse().unwrap()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("2-3") && msg.contains("\"0-1\"") && msg.contains("web.scope"),
        "{msg}"
    );
    assert!(plan_cpuset(&g, "web", &CpuList::default()).is_err());
}

#[test]
fn cpuset_v2_rewrites_only_children_with_their_own_cpus() {
    let host = FakeHost::new();
    let scope = host.mk(
        "unified/web.scope",
        &[("cgroup.controllers", "cpu cpuset"), ("cpuset.cpus", "")],
    );
    host.mk(
        "unified/web.scope/vcpu0",
        &[("cgroup.controllers", "cpu cpuset"), ("cpuset.cpus", "3")],
    );
    host.mk(
        "unified/web.scope/emulator",
        &[("cgroup.controllers", "cpu cpuset"), ("cpuset.cpus", "")],
    );
    let mut g = host.guard();
    g.admit("web", &vm("web", &[(scope.clone(), Hierarchy::V2)]).cgroups)
        .unwrap();
    let plan = plan_cpuset(&g, "web", &"0-1".parse().unwrap()).unwrap();
    let files: Vec<String> = plan
        .changes
        .iter()
        .map(|c| {
            format!(
                "{}:{}->{}",
                c.file.strip_prefix(&scope).unwrap().display(),
                c.before,
                c.after
            )
        })
        .collect();
    assert_eq!(files, ["cpuset.cpus:->0-1", "vcpu0/cpuset.cpus:3->0-1"]);
}

#[test]
fn restore_plans_cpusets_in_tree_order_and_values_as_numbers() {
    let items = vec![
        RestoreItem {
            file: "/cs/vm/cpuset.cpus".into(),
            current: "2-3".into(),
            before: "0-3".into(),
        },
        RestoreItem {
            file: "/cs/vm/vcpu0/cpuset.cpus".into(),
            current: "2-3".into(),
            before: "1".into(),
        },
        RestoreItem {
            file: "/cpu/vm/cpu.shares".into(),
            current: "4096".into(),
            before: "1024".into(),
        },
        RestoreItem {
            file: "/cpu/vm2/cpu.shares".into(),
            current: "1024\n".into(),
            before: "1024".into(),
        },
    ];
    let writes: Vec<String> = plan_restore(&items)
        .unwrap()
        .into_iter()
        .map(|(f, v)| format!("{}={v}", f.display()))
        .collect();
    assert_eq!(
        writes,
        [
            "/cpu/vm/cpu.shares=1024",
            "/cs/vm/cpuset.cpus=0-3",
            "/cs/vm/vcpu0/cpuset.cpus=1-3",
            "/cs/vm/vcpu0/cpuset.cpus=1",
        ]
    );
}

#[test]
fn foreign_values_are_recognised() {
    let f = Path::new("/x/cpu.shares");
    assert!(plausibly_ours(f, "512", "1024", "512"));
    assert!(plausibly_ours(f, "1024", "1024", "512"));
    assert!(!plausibly_ours(f, "2048", "1024", "512"));
    let c = Path::new("/x/cpuset.cpus");
    assert!(plausibly_ours(c, "0-3", "0-1", "2-3"), "mid-way");
    assert!(!plausibly_ours(c, "4", "0-1", "2-3"));
}

#[test]
fn write_value_refuses_a_symlinked_file() {
    let host = FakeHost::new();
    let dir = host.mk("cpu/x", &[]);
    let target = host.dir.path().join("elsewhere");
    fs::write(&target, "1\n").unwrap();
    std::os::unix::fs::symlink(&target, dir.join("cpu.shares")).unwrap();
    let e = write_value(&dir.join("cpu.shares"), "2").unwrap_err();
    assert!(e.to_string().contains("cpu.shares"), "{e}");
    assert_eq!(fs::read_to_string(&target).unwrap(), "1\n");
}
