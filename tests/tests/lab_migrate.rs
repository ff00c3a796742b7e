//! Live migration between two QEMU processes on this host: the guest keeps running
//! (same uptime, same workload process) in the new process, which takes the VM's
//! place in libvirt's cgroup layout; the old process and its cgroups are gone.

use std::time::Duration;

use interference_tests::lab::{Lab, LabOptions, Qmp};
use interference_tests::{require_root, v2_root};

#[test]
#[ignore = "needs root/QEMU"]
fn migrated_vm_keeps_reporting_progress_from_the_new_process() {
    require_root("migrated_vm_keeps_reporting_progress_from_the_new_process");
    let options = LabOptions {
        workloads: vec!["cpu".into()],
        vcpus: 2,
        ..LabOptions::default()
    };
    let lab = Lab::up("mig", &options).expect("lab up");
    let name = &lab.names()[0];
    let before = lab.vm(name).unwrap();
    let last = before
        .wait_progress(0, 3, Duration::from_secs(20))
        .unwrap()
        .pop()
        .unwrap();

    let after = lab.migrate(name).unwrap();
    assert_ne!(after.pid, before.pid);
    assert!(
        !before.alive(),
        "source QEMU (pid {}) still runs",
        before.pid
    );
    assert!(after.alive());
    assert_ne!(after.qmp, before.qmp);
    assert!(!before.qmp.exists(), "source QMP socket left");

    let mut qmp = Qmp::connect(&after.qmp, Duration::from_secs(5)).unwrap();
    assert_eq!(
        qmp.execute("query-status", None).unwrap()["status"],
        "running"
    );

    // Progress goes on where it was: the guest did not reboot, the same workload process
    // counts on. Only the new process can be writing: the old one is gone.
    let offset = after.log_len();
    let lines = after
        .wait_progress(offset, 3, Duration::from_secs(20))
        .unwrap();
    eprintln!("before: {last:?}\nafter: {:?}", lines.last().unwrap());
    for p in &lines {
        assert!(
            p.t > last.t,
            "guest uptime went back: {} -> {}",
            last.t,
            p.t
        );
        assert!(
            p.ops > last.ops,
            "the workload restarted: ops {} -> {}",
            last.ops,
            p.ops
        );
        assert_eq!(p.workload, "cpu");
        assert!(p.rate > 0.0);
    }

    // The destination took the VM's place in the libvirt layout, under a new domain id.
    assert_ne!(after.id, before.id);
    let old_scope = v2_root().join("machine.slice").join(&before.scope);
    let new_scope = v2_root().join("machine.slice").join(&after.scope);
    assert!(!old_scope.exists(), "{} left", old_scope.display());
    let cpus = qmp.execute("query-cpus-fast", None).unwrap();
    for cpu in cpus.as_array().unwrap() {
        let dir = new_scope.join(format!("libvirt/vcpu{}", cpu["cpu-index"]));
        let threads = std::fs::read_to_string(dir.join("cgroup.threads")).unwrap();
        assert_eq!(
            threads.trim(),
            cpu["thread-id"].to_string(),
            "{}",
            dir.display()
        );
    }

    // The command channel moved along.
    let out = lab
        .exec(name, "echo still here", Duration::from_secs(20))
        .unwrap();
    assert_eq!((out.code, out.stdout.trim()), (0, "still here"));
}
