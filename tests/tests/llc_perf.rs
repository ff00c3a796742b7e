//! The LLC collector's plumbing. These machines have no PMU, so the hardware path must
//! report itself unavailable, and the same code path, fed by software events, must
//! count what the kernel says each thread ran.

use std::time::Duration;

use interference::telemetry::collector::{Collector, CollectorOptions};
use interference::telemetry::ebpf::{EbpfProbes, ProbeSet};
use interference::telemetry::perf::CounterSet;
use interference_tests::oracle::{rel_diff, schedstat};
use interference_tests::{require_root, vm_for, TestCgroup};

fn pmu_present() -> bool {
    std::path::Path::new("/sys/bus/event_source/devices/cpu/events").exists()
}

#[test]
#[ignore = "needs root/QEMU"]
fn llc_collector_reports_no_pmu_and_software_path_counts() {
    require_root("llc_collector_reports_no_pmu_and_software_path_counts");
    let mut cg = TestCgroup::new("llc").unwrap();
    let pid = cg.spin(None).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let vms = [vm_for(&cg, &[pid])];

    // Hardware counters: on a host without a PMU the collector says so and yields None.
    let mut hw = Collector::new(
        EbpfProbes::load(ProbeSet {
            sched: false,
            block_io: false,
        })
        .unwrap(),
        CollectorOptions {
            host: "t".into(),
            counters: CounterSet::Hardware,
            sched: false,
            block_io: false,
        },
    )
    .unwrap();
    hw.track(&vms).unwrap();
    let s = hw.sample(&vms).unwrap();
    if pmu_present() {
        eprintln!("this host has a PMU: hardware LLC counters are live");
        assert!(hw.llc_unavailable().is_none());
    } else {
        let why = hw.llc_unavailable().expect("unavailable without a PMU");
        assert!(why.contains("no hardware PMU"), "{why}");
        assert!(s[0].llc.is_none(), "no LLC data without a PMU");
        assert!(!hw.status().llc, "collector_up{{llc}} is 0");
    }
    drop(hw);

    // Software events through the same path: task-clock ns == schedstat run time.
    let mut sw = Collector::new(
        EbpfProbes::load(ProbeSet {
            sched: false,
            block_io: false,
        })
        .unwrap(),
        CollectorOptions {
            host: "t".into(),
            counters: CounterSet::Software,
            sched: false,
            block_io: false,
        },
    )
    .unwrap();
    sw.track(&vms).unwrap();
    sw.sample(&vms).unwrap();
    let tid = vms[0].threads[0].tid;
    let before = schedstat(tid).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let s = sw.sample(&vms).unwrap();
    let after = schedstat(tid).unwrap();
    let llc = s[0].llc.clone().expect("software counters available");
    let ran = (after.run_ns - before.run_ns) as f64;
    eprintln!(
        "task clock {} ns, schedstat run {} ns, context switches {}",
        llc.llc_misses, ran, llc.instructions
    );
    assert!(ran > 0.5e9, "the spinner ran: {ran}");
    assert!(
        rel_diff(llc.llc_misses as f64, ran) < 0.05,
        "task clock {} vs schedstat {ran}",
        llc.llc_misses
    );
    assert!(sw.status().llc);
}
