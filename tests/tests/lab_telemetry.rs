//! Telemetry on real QEMU guests: two lab VMs spin, their vCPUs sharing a host core. The inventory finds them as libvirt machines, and the run-queue latency our
//! programs charge to each vCPU thread agrees with that thread's schedstat within 5%,
//! under the right VM and vCPU index (checked against QMP query-cpus-fast), and each
//! VM's preemptions are charged to the neighbour sharing its CPUs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use interference::inventory::{Inventory, InventoryOptions, Mounts};
use interference_tests::lab::{Lab, LabOptions};
use interference_tests::oracle::{rel_diff, schedstat};
use interference_tests::{real_collector, require_root};

fn pin(tid: u32, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays inside it for cpu < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(tid as i32, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "pinning thread {tid} to CPU {cpu}");
    }
}

#[test]
#[ignore = "needs root/QEMU"]
fn lab_vcpu_runqueue_latency_matches_schedstat() {
    require_root("lab_vcpu_runqueue_latency_matches_schedstat");
    let lab = Lab::up(
        "tel",
        &LabOptions {
            vms: 2,
            vcpus: 1,
            workloads: vec!["cpu".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let inventory = Inventory::new(InventoryOptions {
        proc_root: "/proc".into(),
        mounts: Mounts::read(Path::new("/proc")).unwrap(),
        static_vms: vec![],
        qemu: true,
        libvirt: true,
        own_netns_only: false,
    });
    let vms: Vec<_> = inventory
        .discover()
        .unwrap()
        .into_iter()
        .filter(|v| lab.names().contains(&v.name))
        .collect();
    assert_eq!(vms.len(), 2, "both lab VMs discovered: {vms:?}");

    // Which thread is which vCPU, according to QEMU itself.
    let mut qmp_vcpus: BTreeMap<String, BTreeMap<u32, u32>> = BTreeMap::new();
    for name in lab.names() {
        let mut q = lab.qmp(name).unwrap();
        let cpus = q.execute("query-cpus-fast", None).unwrap();
        let map = cpus
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["cpu-index"].as_u64().unwrap() as u32,
                    c["thread-id"].as_u64().unwrap() as u32,
                )
            })
            .collect();
        qmp_vcpus.insert(name.clone(), map);
    }
    for vm in &vms {
        let found: BTreeMap<u32, u32> = vm
            .threads
            .iter()
            .filter_map(|t| Some((t.vcpu?, t.tid)))
            .collect();
        assert_eq!(found, qmp_vcpus[&vm.name], "{}: vCPU threads", vm.name);
    }

    // Both spinning vCPUs on host CPU 1: each VM's waits are caused by the other.
    // (Unpinned, a guest's runnable work and the host's placement decide who meets whom,
    // and a VM with two vCPUs often ends up waiting mostly for itself.)
    for map in qmp_vcpus.values() {
        for tid in map.values() {
            pin(*tid, 1);
        }
    }
    let mut c = real_collector().unwrap();
    c.track(&vms).unwrap();
    // A wait already under way when a thread is registered is charged in full by
    // schedstat when it ends, and not at all by us: start comparing a second later.
    std::thread::sleep(Duration::from_secs(1));
    let vcpu_tids: Vec<u32> = qmp_vcpus
        .values()
        .flat_map(|m| m.values().copied())
        .collect();
    let before: BTreeMap<u32, _> = vcpu_tids
        .iter()
        .map(|t| {
            (
                *t,
                (c.thread_totals(*t).unwrap().sum_ns, schedstat(*t).unwrap()),
            )
        })
        .collect();
    c.sample(&vms).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let mut results = vec![];
    for t in &vcpu_tids {
        let tot = c.thread_totals(*t).unwrap();
        let st = schedstat(*t).unwrap();
        results.push((
            *t,
            (tot.sum_ns - before[t].0) as f64,
            (st.run_delay_ns - before[t].1.run_delay_ns) as f64,
        ));
    }
    for (t, ours, kernel) in results {
        eprintln!(
            "vCPU thread {t}: ours {:.3}s schedstat {:.3}s ({:.2}%)",
            ours / 1e9,
            kernel / 1e9,
            100.0 * rel_diff(ours, kernel)
        );
        assert!(
            kernel > 1e9,
            "two spinning vCPUs on one core must wait: {kernel} ns"
        );
        assert!(
            rel_diff(ours, kernel) < 0.05,
            "thread {t}: ours {ours} vs schedstat {kernel}"
        );
    }
    let samples = c.sample(&vms).unwrap();
    for s in &samples {
        let expected = &qmp_vcpus[&s.vm];
        let got: BTreeMap<u32, u32> = s.vcpus.iter().map(|v| (v.vcpu, v.tid)).collect();
        assert_eq!(&got, expected, "{}: samples per vCPU", s.vm);
        for v in &s.vcpus {
            assert!(
                v.latency.wait_seconds > 0.2,
                "{} vcpu {}: {:?}",
                s.vm,
                v.vcpu,
                v.latency
            );
        }
        let other = lab.names().iter().find(|n| **n != s.vm).unwrap();
        assert_eq!(
            &s.preempted_by[0].by, other,
            "{} is preempted mostly by its neighbour: {:?}",
            s.vm, s.preempted_by
        );
        let charged: f64 = s.preempted_by.iter().map(|p| p.seconds).sum();
        assert!(
            rel_diff(charged, s.runqueue.preempted_seconds) < 0.01,
            "every preempted second is charged to someone: {charged} vs {}",
            s.runqueue.preempted_seconds
        );
    }
}
