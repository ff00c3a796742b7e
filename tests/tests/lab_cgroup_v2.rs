//! The cgroup v2 knobs the enforcement engine uses, exercised for real in a lab guest
//! (pure cgroup v2, every controller enabled at the root, Debian's 6.1 kernel): the
//! build machines' own hierarchy is hybrid and its v2 tree has no controllers.
//!
//! In a 2-vCPU guest, two spinners live in `enf/light` and `enf/heavy`:
//! 1. both confined to CPU 0 by the parent's `cpuset.cpus`, with `cpu.weight` 100 vs 400:
//!    the heavier one gets at least twice the CPU (4x expected), both together one CPU;
//! 2. disjoint cpusets (`0` and `1`): `cpuset.cpus.effective` and the tasks' affinity
//!    follow, and each gets (nearly) a whole CPU;
//! 3. `cpu.max` "50000 100000" on one: `nr_throttled` grows and it gets about half a CPU.
//!
//! CPU shares are measured from each cgroup's `cpu.stat` `usage_usec` against the
//! guest's `/proc/uptime`, inside the guest: TCG stretches host time, not guest time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use interference_tests::lab::{Lab, LabOptions};
use interference_tests::require_root;

const CG: &str = "/sys/fs/cgroup/enf";

/// Shell helpers every phase's script starts with: `usage G`, `cstat G KEY`, `now`.
const HELPERS: &str = r#"C=/sys/fs/cgroup/enf
cstat() { sed -n "s/^$2 //p" "$C/$1/cpu.stat"; }
usage() { cstat "$1" usage_usec; }
now() { cut -d' ' -f1 /proc/uptime; }
"#;

/// Runs a phase script in the guest; its `key=value` output lines.
fn phase(lab: &Lab, vm: &str, what: &str, script: &str) -> BTreeMap<String, String> {
    let started = Instant::now();
    let cmd = format!("{HELPERS}{script}");
    let out = lab
        .exec(vm, &cmd, Duration::from_secs(40))
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

fn num(kv: &BTreeMap<String, String>, key: &str) -> f64 {
    kv.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {key} in {kv:?}"))
}

/// The measurement both CPU phases share: usage of light and heavy over ~3 s.
const MEASURE: &str = r#"sleep 1
t0=$(now); l0=$(usage light); h0=$(usage heavy)
sleep 3
t1=$(now); l1=$(usage light); h1=$(usage heavy)
echo "elapsed_us=$(echo "($t1 - $t0) * 1000000" | bc)"
echo "light_us=$((l1 - l0))"
echo "heavy_us=$((h1 - h0))"
"#;

#[test]
#[ignore = "needs root/QEMU"]
fn cgroup_v2_weight_cpuset_and_max_work_in_a_guest() {
    require_root("cgroup_v2_weight_cpuset_and_max_work_in_a_guest");
    let started = Instant::now();
    let lab = Lab::up(
        "cg",
        &LabOptions {
            vms: 1,
            vcpus: 2,
            workloads: vec!["idle".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let vm = lab.names()[0].clone();

    // 1. Weights, both spinners confined to CPU 0 by the common parent.
    let weight = phase(
        &lab,
        &vm,
        "weights 100 vs 400 on one CPU",
        &format!(
            r#"set -e
echo "kernel=$(uname -r)"
echo "cpus=$(nproc)"
echo "root_fs=$(awk '$2 == "/sys/fs/cgroup" {{ print $3 }}' /proc/mounts)"
echo "root_subtree=$(cat /sys/fs/cgroup/cgroup.subtree_control)"
mkdir -p {CG}
echo "+cpu +cpuset" >$C/cgroup.subtree_control
echo 0 >$C/cpuset.cpus
mkdir -p $C/light $C/heavy
echo "light_controllers=$(cat $C/light/cgroup.controllers)"
echo 100 >$C/light/cpu.weight
echo 400 >$C/heavy/cpu.weight
for g in light heavy; do
    sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &
    echo $! >$C/$g/cgroup.procs
    echo "pid_$g=$!"
done
echo "weights=$(cat $C/light/cpu.weight) $(cat $C/heavy/cpu.weight)"
for g in light heavy; do
    echo "allowed_$g=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/$(cat $C/$g/cgroup.procs)/status)"
done
{MEASURE}"#
        ),
    );
    assert!(
        weight["kernel"].starts_with("6.1."),
        "guest kernel {}",
        weight["kernel"]
    );
    assert_eq!(weight["cpus"], "2");
    assert_eq!(weight["root_fs"], "cgroup2", "pure cgroup v2 in the guest");
    for c in ["cpu", "cpuset"] {
        assert!(
            weight["light_controllers"]
                .split_whitespace()
                .any(|w| w == c),
            "{c} not available in the child: {}",
            weight["light_controllers"]
        );
    }
    assert_eq!(weight["weights"], "100 400");
    assert_eq!(weight["allowed_light"], "0", "parent cpuset confines light");
    assert_eq!(weight["allowed_heavy"], "0", "parent cpuset confines heavy");
    let elapsed = num(&weight, "elapsed_us");
    let (light, heavy) = (num(&weight, "light_us"), num(&weight, "heavy_us"));
    eprintln!(
        "weights: light {:.2} CPU, heavy {:.2} CPU, heavy/light {:.2} (4 expected), together {:.2} CPU",
        light / elapsed,
        heavy / elapsed,
        heavy / light,
        (light + heavy) / elapsed
    );
    assert!(elapsed > 2.5e6, "measured over {elapsed} us");
    assert!(
        heavy >= 2.0 * light,
        "cpu.weight 400 vs 100: heavy {heavy} us, light {light} us"
    );
    assert!(light > 0.05 * elapsed, "light still runs: {light} us");
    assert!(
        (light + heavy) < 1.2 * elapsed,
        "both on CPU 0 share one CPU: {light} + {heavy} us in {elapsed} us"
    );

    // 2. Disjoint cpusets: each gets its own CPU.
    let pinned = phase(
        &lab,
        &vm,
        "disjoint cpusets 0 and 1",
        &format!(
            r#"set -e
echo 0-1 >$C/cpuset.cpus
echo 0 >$C/light/cpuset.cpus
echo 1 >$C/heavy/cpuset.cpus
for g in light heavy; do
    echo "effective_$g=$(cat $C/$g/cpuset.cpus.effective)"
    echo "allowed_$g=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/$(cat $C/$g/cgroup.procs)/status)"
done
{MEASURE}"#
        ),
    );
    assert_eq!(pinned["effective_light"], "0");
    assert_eq!(pinned["effective_heavy"], "1");
    assert_eq!(pinned["allowed_light"], "0");
    assert_eq!(pinned["allowed_heavy"], "1");
    let elapsed = num(&pinned, "elapsed_us");
    let (light2, heavy2) = (num(&pinned, "light_us"), num(&pinned, "heavy_us"));
    eprintln!(
        "disjoint cpusets: light {:.2} CPU (was {:.2}), heavy {:.2} CPU (was {:.2})",
        light2 / elapsed,
        light / num(&weight, "elapsed_us"),
        heavy2 / elapsed,
        heavy / num(&weight, "elapsed_us"),
    );
    for (g, used) in [("light", light2), ("heavy", heavy2)] {
        assert!(
            used >= 0.7 * elapsed,
            "{g} alone on its CPU got {used} us of {elapsed} us"
        );
    }

    // 3. Bandwidth limit: 50 ms per 100 ms period on light.
    let limited = phase(
        &lab,
        &vm,
        "cpu.max 50000 100000 on light",
        r#"set -e
echo "throttled_before=$(cstat light nr_throttled)"
echo "throttled_usec_before=$(cstat light throttled_usec)"
echo "50000 100000" >$C/light/cpu.max
echo "cpu_max=$(cat $C/light/cpu.max)"
sleep 1
t0=$(now); u0=$(usage light); n0=$(cstat light nr_throttled); p0=$(cstat light nr_periods)
sleep 3
t1=$(now); u1=$(usage light); n1=$(cstat light nr_throttled); p1=$(cstat light nr_periods)
echo "elapsed_us=$(echo "($t1 - $t0) * 1000000" | bc)"
echo "light_us=$((u1 - u0))"
echo "throttled=$((n1 - n0))"
echo "periods=$((p1 - p0))"
echo "throttled_usec_after=$(cstat light throttled_usec)"
echo "heavy_max=$(cat $C/heavy/cpu.max)"
"#,
    );
    assert_eq!(limited["cpu_max"], "50000 100000");
    assert_eq!(limited["heavy_max"], "max 100000", "heavy is not limited");
    let elapsed = num(&limited, "elapsed_us");
    let used = num(&limited, "light_us");
    let throttled = num(&limited, "throttled");
    let periods = num(&limited, "periods");
    eprintln!(
        "cpu.max: light {:.2} CPU (0.5 expected), throttled in {throttled} of {periods} periods, \
         throttled_usec {} -> {}",
        used / elapsed,
        limited["throttled_usec_before"],
        limited["throttled_usec_after"]
    );
    assert!(
        throttled >= 5.0,
        "nr_throttled grew by {throttled} in {elapsed} us"
    );
    assert!(
        num(&limited, "throttled_usec_after") > num(&limited, "throttled_usec_before"),
        "throttled_usec grows"
    );
    assert!(
        used <= 0.65 * elapsed && used >= 0.3 * elapsed,
        "light limited to half a CPU got {used} us of {elapsed} us"
    );
    drop(lab);
    eprintln!("cgroup v2 checks done in {:.1?}", started.elapsed());
}
