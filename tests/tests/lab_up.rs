//! The VM lab brings up real QEMU guests laid out as libvirt lays out its machines, the
//! inventory finds them as libvirt VMs, a dead guest is reported, and `down` leaves
//! nothing behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use interference::inventory::{Inventory, InventoryOptions, Mounts, VmSource};
use interference_tests::lab::{Lab, LabOptions, LabVm, Qmp};
use interference_tests::{require_root, v2_root};

/// The hierarchies in which the lab lays out libvirt's per-thread cgroups here.
fn thread_hierarchies() -> Vec<(PathBuf, bool)> {
    let mut out = vec![(v2_root(), true)];
    for c in ["cpu", "cpuacct", "cpuset"] {
        let root = Path::new("/sys/fs/cgroup").join(c);
        if root.join("tasks").exists() {
            out.push((root, false));
        }
    }
    out
}

fn read_ids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn check_vm(vm: &LabVm) {
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", vm.pid)).unwrap();
    assert!(
        comm.starts_with("qemu-system"),
        "{}: pid {} is {comm}",
        vm.name,
        vm.pid
    );

    let mut qmp = Qmp::connect(&vm.qmp, Duration::from_secs(5)).unwrap();
    let status = qmp.execute("query-status", None).unwrap();
    assert_eq!(status["status"], "running", "{}: {status}", vm.name);
    let cpus = qmp.execute("query-cpus-fast", None).unwrap();
    let cpus = cpus.as_array().unwrap();
    assert_eq!(cpus.len() as u32, vm.vcpus);

    let suffix = vm.accel.to_uppercase();
    let escaped = vm.name.replace('-', r"\x2d");
    assert_eq!(
        vm.scope,
        format!(r"machine-qemu\x2d{}\x2d{escaped}.scope", vm.id)
    );
    let threads = vm.threads();
    for cpu in cpus {
        let index = cpu["cpu-index"].as_u64().unwrap();
        let tid = cpu["thread-id"].as_u64().unwrap() as u32;
        let name = &threads.iter().find(|(t, _)| *t == tid).unwrap().1;
        assert_eq!(
            name,
            &format!("CPU {index}/{suffix}"),
            "{}: vCPU thread name",
            vm.name
        );
        for (root, v2) in thread_hierarchies() {
            let libvirt = root.join("machine.slice").join(&vm.scope).join("libvirt");
            let vcpu = libvirt.join(format!("vcpu{index}"));
            let file = if v2 { "cgroup.threads" } else { "tasks" };
            assert_eq!(read_ids(&vcpu.join(file)), vec![tid], "{}", vcpu.display());
            if v2 {
                let kind = std::fs::read_to_string(vcpu.join("cgroup.type")).unwrap();
                assert_eq!(kind.trim(), "threaded", "{}", vcpu.display());
            }
            let emulator = read_ids(&libvirt.join("emulator").join(file));
            assert!(
                emulator.contains(&vm.pid),
                "{}: pid {} not in emulator",
                vm.name,
                vm.pid
            );
            assert!(
                !emulator.contains(&tid),
                "{}: vCPU thread left in emulator",
                vm.name
            );
        }
    }
    // Every other thread of QEMU is in emulator.
    let v2_emulator = v2_root()
        .join("machine.slice")
        .join(&vm.scope)
        .join("libvirt/emulator");
    let emulator = read_ids(&v2_emulator.join("cgroup.threads"));
    for (tid, name) in &threads {
        if !name.starts_with("CPU ") {
            assert!(
                emulator.contains(tid),
                "{}: thread {tid} ({name}) not in emulator",
                vm.name
            );
        }
    }
}

/// The inventory, scanning this host as the agent would, sees each lab VM as a libvirt
/// machine with its QEMU pid and its vCPU threads.
fn check_inventory(vms: &[LabVm]) {
    let inventory = Inventory::new(InventoryOptions {
        proc_root: "/proc".into(),
        mounts: Mounts::read(Path::new("/proc")).unwrap(),
        static_vms: vec![],
        qemu: true,
        libvirt: true,
        own_netns_only: false,
    });
    let found = inventory.discover().unwrap();
    for vm in vms {
        let Some(f) = found.iter().find(|f| f.name == vm.name) else {
            panic!(
                "inventory does not list {}: {:?}",
                vm.name,
                found.iter().map(|f| &f.name).collect::<Vec<_>>()
            );
        };
        assert_eq!(f.source, VmSource::Libvirt, "{}", vm.name);
        assert_eq!(f.pid, Some(vm.pid), "{}", vm.name);
        assert_eq!(
            f.qmp_socket.as_deref(),
            Some(vm.qmp.as_path()),
            "{}",
            vm.name
        );
        let vcpus = f.threads.iter().filter(|t| t.vcpu.is_some()).count();
        assert_eq!(
            vcpus as u32, vm.vcpus,
            "{}: vCPU threads {:?}",
            vm.name, f.threads
        );
    }
}

#[test]
#[ignore = "needs root/QEMU"]
fn lab_brings_up_guests_in_the_libvirt_layout_and_down_leaves_nothing() {
    require_root("lab_brings_up_guests_in_the_libvirt_layout_and_down_leaves_nothing");
    let started = Instant::now();
    let options = LabOptions {
        vms: 2,
        workloads: vec!["cpu".into(), "idle".into()],
        vcpus: 2,
        ..LabOptions::default()
    };
    let mut lab = Lab::up("up", &options).expect("lab up");
    let boot = started.elapsed();
    eprintln!("2 guests up in {boot:?}");
    assert!(boot < Duration::from_secs(120), "up took {boot:?}");

    let vms = lab.vms().unwrap();
    for vm in &vms {
        check_vm(vm);
        let lines = vm.wait_progress(0, 1, Duration::from_secs(10)).unwrap();
        assert_eq!(lines[0].workload, vm.workload);
    }
    check_inventory(&vms);

    // The command channel: exec in a guest, its output and status come back.
    let out = lab
        .exec(
            &vms[0].name,
            "cat /proc/cmdline; grep -c . /sys/fs/cgroup/cgroup.controllers; exit 3",
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(out.code, 3);
    assert!(
        out.stdout.contains(&format!("lab.name={}", vms[0].name)),
        "{}",
        out.stdout
    );

    // A guest that dies is reported dead, and `down` still cleans it up.
    // SAFETY: kill has no memory preconditions; the pid is the lab's QEMU.
    unsafe { libc::kill(vms[1].pid as libc::pid_t, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while vms[1].alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = lab.status().unwrap();
    eprintln!("{status}");
    let line = status
        .lines()
        .find(|l| l.starts_with(&vms[1].name))
        .unwrap();
    assert!(line.contains(" dead "), "{line}");
    let line = status
        .lines()
        .find(|l| l.starts_with(&vms[0].name))
        .unwrap();
    assert!(line.contains(" running "), "{line}");

    let down_started = Instant::now();
    lab.down().unwrap();
    eprintln!("down in {:?}", down_started.elapsed());
    for vm in &vms {
        assert!(!vm.alive(), "{} (pid {}) still runs", vm.name, vm.pid);
        assert!(
            !vm.qmp.exists() && !vm.cmd.exists(),
            "{}: sockets left",
            vm.name
        );
        for dir in &vm.cgroups {
            assert!(!dir.exists(), "cgroup {} left", dir.display());
        }
        for (root, _) in thread_hierarchies() {
            let scope = root.join("machine.slice").join(&vm.scope);
            assert!(!scope.exists(), "{} left", scope.display());
        }
    }
    assert!(
        !lab.run_dir().join("vms").exists(),
        "VM state left in {}",
        lab.run_dir().display()
    );
}
