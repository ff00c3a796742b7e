//! MetricsExporter through its public API: golden rendering, accumulation, vanishing
//! VMs, histogram rules (checked by `check::validate`), and the written file.

use std::collections::BTreeMap;
use std::time::Duration;

use interference_common::HIST_BUCKETS;

use super::check::{validate, Sample};
use super::*;
use crate::inventory::Priority;
use crate::telemetry::*;

const GOLDEN: &str = "src/export/prometheus/testdata/golden.prom";
const COLLECTORS: [(&str, bool); 4] = [
    ("sched", true),
    ("block_io", true),
    ("llc", false),
    ("cgroup", true),
];

fn hist(entries: &[(usize, u64)]) -> Vec<u64> {
    let mut h = vec![0; HIST_BUCKETS];
    for (i, n) in entries {
        h[*i] = *n;
    }
    h
}

fn latency(waits: u64, seconds: f64, entries: &[(usize, u64)]) -> Latency {
    Latency {
        waits,
        wait_seconds: seconds,
        max_seconds: 0.0,
        preemptions: 0,
        preempted_seconds: 0.0,
        histogram: hist(entries),
    }
}

fn sample(vm: &str) -> VmSample {
    VmSample {
        schema: SAMPLE_SCHEMA,
        timestamp_ms: 1_700_000_000_000,
        interval_seconds: 5.0,
        host: "kvm-1".into(),
        vm: vm.into(),
        uuid: Some("6f1c0b9e-1111-2222-3333-444455556666".into()),
        customer: Some("acme".into()),
        workload: None,
        priority: Priority::High,
        runqueue: latency(6, 0.5, &[(10, 4), (20, 1), (31, 1)]),
        vcpus: vec![VcpuSample {
            vcpu: 0,
            tid: 4242,
            latency: latency(5, 0.25, &[(10, 3), (20, 1), (31, 1)]),
        }],
        other_threads: latency(1, 0.25, &[(10, 1)]),
        preempted_by: vec![
            Preemption {
                by: "noisy".into(),
                count: 2,
                seconds: 0.5,
            },
            Preemption {
                by: "host".into(),
                count: 1,
                seconds: 0.25,
            },
        ],
        block_io: Some(BlockIo {
            read_ops: 3,
            write_ops: 1,
            other_ops: 0,
            read_bytes: 12288,
            write_bytes: 4096,
            other_bytes: 0,
            latency_seconds: 0.125,
            latency_histogram: hist(&[(16, 2), (17, 2)]),
        }),
        cpu: Some(CpuUsage {
            usage_seconds: 1.5,
            user_seconds: Some(1.0),
            system_seconds: Some(0.5),
            periods: Some(50),
            throttled_periods: Some(2),
            throttled_seconds: Some(0.25),
        }),
        memory: Some(Memory {
            usage_bytes: 1 << 30,
            limit_bytes: Some(2 << 30),
            swap_bytes: Some(0),
            anon_bytes: Some(1 << 29),
            file_bytes: Some(1 << 29),
            major_faults: Some(3),
        }),
        psi: Some(Psi {
            cpu: Some(PsiResource {
                some_seconds: 0.5,
                full_seconds: None,
                some_avg10: 10.0,
                full_avg10: None,
            }),
            memory: None,
            io: Some(PsiResource {
                some_seconds: 0.25,
                full_seconds: Some(0.125),
                some_avg10: 5.0,
                full_avg10: Some(2.5),
            }),
        }),
        llc: Some(Llc {
            llc_misses: 1000,
            instructions: 1_000_000,
        }),
        threads: 3,
        cpus: Some(vec![0, 1]),
    }
}

fn families(e: &MetricsExporter) -> BTreeMap<String, (String, Vec<Sample>)> {
    let text = e.render();
    validate(&text).unwrap_or_else(|err| panic!("{err}\n{text}"))
}

/// Value of the one sample of `name` whose labels include all of `labels`.
fn value(e: &MetricsExporter, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let fams = families(e);
    let found: Vec<f64> = fams
        .values()
        .flat_map(|(_, samples)| samples)
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    assert!(found.len() <= 1, "{name}{labels:?} matches {found:?}");
    found.first().copied()
}

#[test]
fn renders_the_golden_snapshot() {
    let mut e = MetricsExporter::new();
    e.update(&[sample("web-1")], &COLLECTORS, Duration::from_millis(125));
    let text = e.render();
    if std::env::var_os("INTERFERENCE_UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &text).unwrap();
    }
    let golden = std::fs::read_to_string(GOLDEN).unwrap();
    assert!(
        text == golden,
        "rendering differs from {GOLDEN} (set INTERFERENCE_UPDATE_GOLDEN=1 to rewrite it after \
         checking the change):\n{text}"
    );
    validate(&text).unwrap();
}

#[test]
fn counters_accumulate_and_gauges_follow_the_last_tick() {
    let mut e = MetricsExporter::new();
    e.update(&[sample("web-1")], &COLLECTORS, Duration::from_millis(100));
    let mut second = sample("web-1");
    second.memory.as_mut().unwrap().usage_bytes = 42;
    second.threads = 7;
    second.cpu = None;
    e.update(&[second], &[("sched", false)], Duration::from_millis(200));

    let vm = [("vm", "web-1")];
    assert_eq!(value(&e, "interference_ticks_total", &[]), Some(2.0));
    assert_eq!(
        value(&e, "interference_tick_duration_seconds", &[]),
        Some(0.2)
    );
    assert_eq!(
        value(&e, "interference_collector_up", &[("collector", "sched")]),
        Some(0.0)
    );
    assert_eq!(
        value(&e, "interference_collector_up", &[("collector", "llc")]),
        None
    );
    assert_eq!(
        value(
            &e,
            "interference_vm_preempted_total",
            &[("vm", "web-1"), ("by", "noisy")]
        ),
        Some(4.0)
    );
    assert_eq!(
        value(
            &e,
            "interference_vm_preempted_seconds_total",
            &[("by", "host")]
        ),
        Some(0.5)
    );
    assert_eq!(
        value(
            &e,
            "interference_vm_block_io_bytes_total",
            &[("op", "read")]
        ),
        Some(24576.0)
    );
    assert_eq!(
        value(
            &e,
            "interference_vm_block_io_operations_total",
            &[("op", "other")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&e, "interference_vm_cpu_usage_seconds_total", &vm),
        Some(1.5),
        "a tick without CPU data adds nothing"
    );
    assert_eq!(
        value(&e, "interference_vm_memory_usage_bytes", &vm),
        Some(42.0)
    );
    assert_eq!(
        value(&e, "interference_vm_memory_major_faults_total", &vm),
        Some(6.0)
    );
    assert_eq!(value(&e, "interference_vm_threads", &vm), Some(7.0));
    assert_eq!(
        value(&e, "interference_vm_psi_io_full_seconds_total", &vm),
        Some(0.25)
    );
    assert_eq!(
        value(&e, "interference_vm_psi_cpu_full_seconds_total", &vm),
        None
    );
    assert_eq!(
        value(&e, "interference_vm_psi_memory_some_seconds_total", &vm),
        None
    );
    assert_eq!(
        value(&e, "interference_vm_llc_misses_total", &vm),
        Some(2000.0)
    );
    assert_eq!(
        value(
            &e,
            "interference_vcpu_runqueue_latency_seconds_count",
            &[("vcpu", "0")]
        ),
        Some(10.0)
    );
    assert_eq!(
        value(
            &e,
            "interference_vcpu_runqueue_latency_seconds_sum",
            &[("vcpu", "other")]
        ),
        Some(0.5)
    );
}

#[test]
fn a_vanished_vm_loses_its_series_and_its_aggressor_series() {
    let mut e = MetricsExporter::new();
    let mut a = sample("a");
    a.preempted_by[0].by = "b".into();
    e.update(&[a.clone(), sample("b")], &COLLECTORS, Duration::ZERO);
    assert!(value(
        &e,
        "interference_vm_preempted_total",
        &[("vm", "a"), ("by", "b")]
    )
    .is_some());

    a.preempted_by.clear();
    e.update(&[a], &COLLECTORS, Duration::ZERO);
    let text = e.render();
    assert!(!text.contains("vm=\"b\""), "{text}");
    assert!(!text.contains("by=\"b\""), "{text}");
    assert!(text.contains("by=\"host\""), "{text}");
    validate(&text).unwrap();

    e.update(&[], &COLLECTORS, Duration::ZERO);
    let text = e.render();
    assert!(!text.contains("vm="), "{text}");
    validate(&text).unwrap();
}

#[test]
fn histogram_buckets_are_cumulative_and_inf_equals_count() {
    let mut e = MetricsExporter::new();
    e.update(&[sample("web-1")], &COLLECTORS, Duration::ZERO);
    let fams = families(&e);
    let (kind, samples) = &fams["interference_vcpu_runqueue_latency_seconds"];
    assert_eq!(kind, "histogram");
    let buckets: Vec<(&str, f64)> = samples
        .iter()
        .filter(|s| s.name.ends_with("_bucket") && s.labels["vcpu"] == "0")
        .map(|s| (s.labels["le"].as_str(), s.value))
        .collect();
    assert_eq!(buckets.len(), HIST_BUCKETS, "31 finite bounds and +Inf");
    // Bucket 10 holds [1024, 2048) ns: its le is 2048 ns.
    assert_eq!(buckets[9], ("0.000001024", 0.0));
    assert_eq!(buckets[10], ("0.000002048", 3.0));
    assert_eq!(buckets[19], ("0.001048576", 3.0));
    assert_eq!(buckets[20], ("0.002097152", 4.0));
    assert_eq!(buckets[30], ("2.147483648", 4.0));
    assert_eq!(buckets[31], ("+Inf", 5.0), "bucket 31 is the overflow");
    assert_eq!(
        value(
            &e,
            "interference_vcpu_runqueue_latency_seconds_count",
            &[("vcpu", "0")]
        ),
        Some(5.0)
    );
}

#[test]
fn llc_families_only_for_vms_with_counters_and_odd_names_escape() {
    let mut e = MetricsExporter::new();
    let mut odd = sample("we\"ird\\vm\nname");
    odd.llc = None;
    odd.block_io = None;
    odd.vcpus.clear();
    e.update(&[sample("web-1"), odd], &COLLECTORS, Duration::ZERO);
    let text = e.render();
    let fams = validate(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
    let llc = &fams["interference_vm_llc_misses_total"].1;
    assert_eq!(llc.len(), 1);
    assert_eq!(llc[0].labels["vm"], "web-1");
    assert!(text.contains(r#"vm="we\"ird\\vm\nname""#));
    let threads = &fams["interference_vm_threads"].1;
    assert!(
        threads
            .iter()
            .any(|s| s.labels["vm"] == "we\"ird\\vm\nname"),
        "label values round-trip through escaping"
    );
}

#[test]
fn nothing_but_agent_metrics_before_the_first_vm() {
    let mut e = MetricsExporter::new();
    e.update(&[], &COLLECTORS, Duration::from_millis(5));
    let fams = families(&e);
    let names: Vec<&str> = fams.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "interference_collector_up",
            "interference_tick_duration_max_seconds",
            "interference_tick_duration_seconds",
            "interference_ticks_total"
        ]
    );
}

#[test]
fn the_slowest_tick_and_the_ticks_over_budget_are_kept() {
    let mut e = MetricsExporter::new().with_tick_budget(Duration::from_secs(1));
    for ms in [200, 1500, 300, 1000, 1001] {
        e.update(&[], &COLLECTORS, Duration::from_millis(ms));
    }
    assert_eq!(
        value(&e, "interference_tick_duration_seconds", &[]),
        Some(1.001)
    );
    assert_eq!(
        value(&e, "interference_tick_duration_max_seconds", &[]),
        Some(1.5)
    );
    // 1.5 s and 1.001 s; a tick of exactly the interval is within it.
    assert_eq!(
        value(&e, "interference_ticks_over_budget_total", &[]),
        Some(2.0)
    );
}

#[test]
fn other_families_share_the_writer() {
    let mut e = MetricsExporter::new();
    e.update(&[sample("a")], &COLLECTORS, Duration::ZERO);
    let mut w = TextWriter::new();
    e.render_into(&mut w);
    w.gauge(
        "interference_pair_contention_score",
        "Predicted slowdown, percent.",
    )
    .sample(&[("victim", "a"), ("aggressor", "b")], 42.0);
    let fams = validate(&w.finish()).unwrap();
    assert!(fams.contains_key("interference_pair_contention_score"));
}

#[test]
fn writes_the_textfile() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("interference.prom");
    let mut e = MetricsExporter::new();
    e.update(&[sample("a")], &COLLECTORS, Duration::ZERO);
    e.write_textfile(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), e.render());
}

/// `promtool check metrics` (on PATH, or named by $PROMTOOL; scripts/setup.sh installs
/// it) on a rendering with odd names: the official parser is the oracle.
#[test]
#[ignore = "needs promtool (scripts/setup.sh installs it)"]
fn promtool_accepts_the_output() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut e = MetricsExporter::new();
    let mut odd = sample("we\"ird\\vm\nname");
    odd.llc = None;
    e.update(
        &[sample("web-1"), odd],
        &COLLECTORS,
        Duration::from_millis(3),
    );
    let child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        panic!("{promtool} not found: scripts/setup.sh installs it (or set PROMTOOL to its path)");
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(e.render().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
