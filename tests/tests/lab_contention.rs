//! A lab guest's own progress rate shows the slowdown a noisy neighbour causes: two
//! VMs' vCPUs share one host CPU, the neighbour switches from idle to a CPU spin over
//! its command channel, and back.

use interference_tests::lab::{Lab, LabOptions};
use interference_tests::require_root;

#[test]
#[ignore = "needs root/QEMU"]
fn progress_rate_drops_with_a_spinning_neighbour_and_recovers() {
    require_root("progress_rate_drops_with_a_spinning_neighbour_and_recovers");
    let options = LabOptions {
        vms: 2,
        workloads: vec!["cpu".into(), "idle".into()],
        ..LabOptions::default()
    };
    let lab = Lab::up("noisy", &options).expect("lab up");
    let victim = lab.vm(&lab.names()[0]).unwrap();
    let neighbour = &lab.names()[1];
    // One host CPU for both vCPUs, so contention is certain on a 2-core machine.
    lab.pin_vcpus(&victim.name, "1").unwrap();
    lab.pin_vcpus(neighbour, "1").unwrap();

    let solo = victim.median_rate("cpu", 1, 5).unwrap();

    lab.set_workload(neighbour, "cpu").unwrap();
    let contended = victim.median_rate("cpu", 2, 5).unwrap();

    lab.set_workload(neighbour, "idle").unwrap();
    let recovered = victim.median_rate("cpu", 2, 5).unwrap();

    let drop = 1.0 - contended / solo;
    eprintln!(
        "victim rate: solo {solo:.0}, with a spinning neighbour {contended:.0} ({:.0}% slower), \
         after it stopped {recovered:.0} ({:.0}% of solo)",
        drop * 100.0,
        recovered / solo * 100.0
    );
    assert!(drop > 0.25, "rate dropped only {:.0}%", drop * 100.0);
    assert!(
        recovered > 0.8 * solo,
        "rate recovered only to {:.0}% of solo",
        recovered / solo * 100.0
    );
}
