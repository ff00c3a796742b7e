//! Cross-kernel check: the eBPF programs load and collect inside a lab guest running
//! Debian's 6.1 cloud kernel (the host runs another kernel), from the release binary with
//! the host's loader and libraries (scripts/guest-bundle.sh) on the lab's share disk.
//!
//! In a 1-vCPU guest, two busy loops in the cgroup `/sys/fs/cgroup/spin` take turns on
//! the one CPU, so one of them is always waiting. `interference collect` runs in the
//! guest with a static `[[vm]]` for that cgroup; its samples must show the waits, charge
//! them to the spinners themselves, and agree with the guest kernel's own run-queue
//! accounting (/proc/<tid>/schedstat of both spinners, sampled every 0.1 s in the guest
//! with wall-clock timestamps and interpolated at the collector's tick boundaries).
//!
//! A second static VM, the cgroup `/sys/fs/cgroup/io`, reads the guest's lab disk with
//! O_DIRECT once the collector runs, with the disk's I/O scheduler set to `none` (blk-mq
//! then issues each request from the submitting task): the block programs' bytes
//! (`struct request` offsets from the 6.1 BTF) must match the cgroup's own `io.stat`.
//! A third, `/sys/fs/cgroup/iosched`, then reads under `mq-deadline` (Debian's default
//! for the single-queue virtio disk), where requests are dispatched by kblockd workers:
//! what reaches that VM is printed, not asserted (a known attribution gap: at
//! `block_rq_issue` the current task is the kworker, not the submitter).

use std::path::Path;
use std::time::{Duration, Instant};

use interference_tests::lab::{ExecOutput, Lab, LabOptions};
use interference_tests::oracle::rel_diff;
use interference_tests::{guest_bundle, require_root};
use serde_json::Value;

const GUEST_CONFIG: &str = r#"[[vm]]
name = "spin"
cgroups = ["/sys/fs/cgroup/spin"]

[[vm]]
name = "io"
cgroups = ["/sys/fs/cgroup/io"]

[[vm]]
name = "iosched"
cgroups = ["/sys/fs/cgroup/iosched"]

[discovery]
qemu = false
libvirt = false
"#;

fn exec(lab: &Lab, vm: &str, cmd: &str, timeout_s: u64) -> ExecOutput {
    let started = Instant::now();
    let out = lab
        .exec(vm, cmd, Duration::from_secs(timeout_s))
        .unwrap_or_else(|e| panic!("exec in {vm} failed: {e:#}\ncommand: {cmd}"));
    eprintln!(
        "guest$ {} -> rc {} ({:.1?})",
        cmd.lines().next().unwrap_or(""),
        out.code,
        started.elapsed()
    );
    out
}

/// Linear interpolation of `(t, v)` points (sorted by t) at `t`.
fn interpolate(points: &[(f64, f64)], t: f64) -> Option<f64> {
    let i = points.windows(2).position(|w| w[0].0 <= t && t <= w[1].0)?;
    let ((t0, v0), (t1, v1)) = (points[i], points[i + 1]);
    if t1 == t0 {
        return Some(v0);
    }
    Some(v0 + (v1 - v0) * (t - t0) / (t1 - t0))
}

/// Reads completed by a VM: what our samples say, or the cgroup's io.stat.
#[derive(Debug, Default, Clone, Copy)]
struct Reads {
    ops: u64,
    bytes: u64,
    latency_seconds: f64,
}

/// The VM's reads summed over its samples, and its cgroup's io.stat (every device).
fn block_io(lab: &Lab, vm: &str, samples: &[Value], name: &str) -> (Reads, Reads) {
    let mut ours = Reads::default();
    for s in samples.iter().filter(|s| s["vm"] == name) {
        let b = &s["block_io"];
        ours.ops += b["read_ops"].as_u64().unwrap_or(0);
        ours.bytes += b["read_bytes"].as_u64().unwrap_or(0);
        ours.latency_seconds += b["latency_seconds"].as_f64().unwrap_or(0.0);
    }
    let stat = exec(lab, vm, &format!("cat /sys/fs/cgroup/{name}/io.stat"), 30);
    let field = |key: &str| -> u64 {
        stat.stdout
            .split_whitespace()
            .filter_map(|w| w.strip_prefix(key))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum()
    };
    let kernel = Reads {
        ops: field("rios="),
        bytes: field("rbytes="),
        latency_seconds: 0.0,
    };
    eprintln!(
        "block I/O of {name}: ours {} reads, {} bytes, {:.2} ms mean latency; io.stat {} reads, {} bytes",
        ours.ops,
        ours.bytes,
        1e3 * ours.latency_seconds / ours.ops.max(1) as f64,
        kernel.ops,
        kernel.bytes
    );
    (ours, kernel)
}

#[test]
#[ignore = "needs root/QEMU"]
fn ebpf_loads_and_collects_on_the_guest_6_1_kernel() {
    require_root("ebpf_loads_and_collects_on_the_guest_6_1_kernel");
    let started = Instant::now();
    let share = guest_bundle::share_dir(&[("guest.toml", GUEST_CONFIG.to_string())]);
    let lab = Lab::up(
        "xk",
        &LabOptions {
            vms: 1,
            vcpus: 1,
            // The guest's own workload must not compete with the spinners.
            workloads: vec!["idle".into()],
            share: Some(share.path().to_path_buf()),
            ..Default::default()
        },
    )
    .unwrap();
    let vm = lab.names()[0].clone();

    let release = exec(&lab, &vm, "uname -r; nproc", 30);
    assert_eq!(release.code, 0, "{}", release.stdout);
    let mut lines = release.stdout.lines();
    let guest_kernel = lines.next().unwrap_or("").trim().to_string();
    let guest_cpus: u32 = lines.next().unwrap_or("").trim().parse().unwrap_or(0);
    eprintln!(
        "guest kernel {guest_kernel} ({guest_cpus} CPU), host kernel {}",
        interference_tests::kernel_release()
    );
    assert!(
        guest_kernel.starts_with("6.1."),
        "the lab guest should run Debian's 6.1 kernel, not {guest_kernel:?}"
    );
    assert_eq!(guest_cpus, 1, "a 1-vCPU guest");

    // Two spinners in the cgroup; their pids come back on the first line.
    let setup = exec(
        &lab,
        &vm,
        "mkdir -p /sys/fs/cgroup/spin /sys/fs/cgroup/io /sys/fs/cgroup/iosched && \
         for i in 1 2; do \
           sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 & \
           echo $! >/sys/fs/cgroup/spin/cgroup.procs || exit 1; \
         done; \
         echo $(cat /sys/fs/cgroup/spin/cgroup.procs)",
        30,
    );
    assert_eq!(setup.code, 0, "setting up the spinners: {}", setup.stdout);
    let pids: Vec<u32> = setup
        .stdout
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(
        pids.len(),
        2,
        "two spinners in the cgroup: {}",
        setup.stdout
    );

    // The schedstat sampler runs around the whole collection; `ts` stamps each line with
    // the wall clock in microseconds (busybox date has no %N).
    let run = format!(
        "P1={p1}; P2={p2}; rm -f /tmp/stop
( while [ ! -e /tmp/stop ]; do
    read a d1 c </proc/$P1/schedstat; read a d2 c </proc/$P2/schedstat
    echo \"$d1 $d2\"; sleep 0.1
  done | ts '%.s' >/tmp/sched.log ) &
sleep 0.5
# Once the first tick is written, 2 MiB of O_DIRECT reads of the lab disk from the io
# cgroup with the scheduler none, then 1 MiB from iosched with mq-deadline.
for d in /sys/block/vd*; do [ \"$(cat $d/serial 2>/dev/null)\" = labdisk ] && N=${{d##*/}}; done
D=/dev/$N; Q=/sys/block/$N/queue/scheduler
echo \"scheduler=$(cat $Q)\" >/tmp/dd.log
( i=0; while [ ! -s /tmp/s.jsonl ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
  echo dd-start | ts '%.s'
  echo none >$Q
  sh -c \"echo \\$\\$ >/sys/fs/cgroup/io/cgroup.procs && exec dd if=$D of=/dev/null bs=64k count=32 iflag=direct\" \
    >>/tmp/dd.log 2>&1; echo \"dd-rc=$?\" >>/tmp/dd.log
  echo mq-deadline >$Q
  sh -c \"echo \\$\\$ >/sys/fs/cgroup/iosched/cgroup.procs && exec dd if=$D of=/dev/null bs=64k count=16 skip=64 iflag=direct\" \
    >>/tmp/dd.log 2>&1; echo \"dd-sched-rc=$?\" >>/tmp/dd.log
  echo dd-end | ts '%.s' ) >/tmp/dd-times.log &
/mnt/share/interference -v collect --config /mnt/share/guest.toml --interval 1s \
  --duration 4s --samples /tmp/s.jsonl --metrics-file /tmp/m.prom >/tmp/collect.log 2>&1
rc=$?
sleep 0.5; touch /tmp/stop; sleep 0.5
cat /tmp/collect.log
echo \"disk=$D\"; cat /tmp/dd.log /tmp/dd-times.log
echo \"collect-rc=$rc\"",
        p1 = pids[0],
        p2 = pids[1]
    );
    let collect = exec(&lab, &vm, &run, 60);
    let log = collect.stdout.clone();
    let rc = log
        .lines()
        .find_map(|l| l.strip_prefix("collect-rc="))
        .and_then(|v| v.trim().parse::<i32>().ok());
    assert_eq!(
        rc,
        Some(0),
        "interference collect failed in the guest ({guest_kernel}); its -v log:\n{log}"
    );
    assert!(
        log.contains("eBPF programs attached"),
        "no 'eBPF programs attached' in the guest's log:\n{log}"
    );
    // The offsets come from the guest kernel's BTF, not the host's.
    if let Some(line) = log.lines().find(|l| l.contains("task_struct.pid at")) {
        eprintln!("guest: {}", line.trim());
        let guest_off: Option<u32> = line
            .split("task_struct.pid at ")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok());
        let host = interference::telemetry::btf::KernelOffsets::from_btf_file(Path::new(
            interference::telemetry::btf::VMLINUX_BTF,
        ));
        if let (Some(g), Ok(h)) = (guest_off, host) {
            eprintln!("task_struct.pid: guest {g}, host {}", h.task_pid);
            if !interference_tests::kernel_release().starts_with("6.1.") {
                assert_ne!(g, h.task_pid, "the guest used the host's offsets?");
            }
        }
    }

    let samples_out = exec(&lab, &vm, "cat /tmp/s.jsonl", 30);
    assert_eq!(samples_out.code, 0, "{}", samples_out.stdout);
    let samples: Vec<Value> = samples_out
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let spin: Vec<&Value> = samples.iter().filter(|s| s["vm"] == "spin").collect();
    assert!(
        spin.len() >= 3,
        "at least 3 ticks of vm spin in 4 s, got {}:\n{}",
        spin.len(),
        samples_out.stdout
    );
    let mut total_waits = 0u64;
    let mut total_wait = 0.0;
    let mut total_interval = 0.0;
    for s in &spin {
        let rq = &s["runqueue"];
        let waits = rq["waits"].as_u64().unwrap();
        let wait = rq["wait_seconds"].as_f64().unwrap();
        let interval = s["interval_seconds"].as_f64().unwrap();
        let by: Vec<String> = s["preempted_by"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{}:{}/{:.3}s",
                    p["by"].as_str().unwrap_or("?"),
                    p["count"],
                    p["seconds"].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        eprintln!(
            "tick {:.3}s: threads {} waits {waits} wait {wait:.3}s max {:.4}s cpu {:.3}s preempted_by {by:?}",
            interval,
            s["threads"],
            rq["max_seconds"].as_f64().unwrap_or(0.0),
            s["cpu"]["usage_seconds"].as_f64().unwrap_or(f64::NAN),
        );
        assert_eq!(s["threads"], 2, "both spinners tracked: {s}");
        total_waits += waits;
        total_wait += wait;
        total_interval += interval;
    }
    eprintln!(
        "total: {total_waits} waits, {total_wait:.3}s waiting over {total_interval:.3}s \
         ({:.2} s/s; two spinners on one CPU: about 1)",
        total_wait / total_interval
    );
    assert!(total_waits > 0, "no run-queue waits recorded");
    // One of the two is always waiting, so ~1 s per second; TCG and a busy host only
    // stretch the run, so 0.4 s/s is a safe floor.
    assert!(
        total_wait > 0.4 * total_interval,
        "two spinners on one vCPU waited only {total_wait:.3}s in {total_interval:.3}s"
    );
    // They take the CPU from each other: a good part of the preempted time is charged to
    // "spin" (the rest to "host": the collector, the schedstat sampler, the guest's init).
    let by_spin: f64 = spin
        .iter()
        .flat_map(|s| s["preempted_by"].as_array().unwrap().iter())
        .filter(|p| p["by"] == "spin")
        .map(|p| p["seconds"].as_f64().unwrap())
        .sum();
    assert!(
        by_spin > 0.25 * total_wait,
        "the spinners preempt each other: {by_spin:.3}s of {total_wait:.3}s charged to spin"
    );
    let cpu: f64 = spin
        .iter()
        .filter_map(|s| s["cpu"]["usage_seconds"].as_f64())
        .sum();
    assert!(
        cpu > 0.4 * total_interval,
        "cgroup v2 cpu.stat usage of the spinners: {cpu:.3}s"
    );

    // Block I/O against each cgroup's io.stat (the cgroups are new: they start at 0).
    for l in log
        .lines()
        .filter(|l| l.contains("dd-") || l.contains("records") || l.contains("scheduler="))
    {
        eprintln!("guest: {l}");
    }
    assert!(
        log.contains("dd-rc=0") && log.contains("dd-sched-rc=0"),
        "dd in the io cgroups failed:\n{log}"
    );
    let (ours, kernel) = block_io(&lab, &vm, &samples, "io");
    assert_eq!(kernel.bytes, 2 << 20, "io.stat of the io cgroup");
    assert!(
        rel_diff(ours.bytes as f64, kernel.bytes as f64) < 0.01,
        "block I/O bytes on 6.1 (scheduler none): ours {ours:?} vs io.stat {kernel:?}"
    );
    assert_eq!(ours.ops, kernel.ops, "one operation per request");
    assert!(ours.latency_seconds > 0.0, "latency of the reads: {ours:?}");
    let (ours, kernel) = block_io(&lab, &vm, &samples, "iosched");
    assert_eq!(kernel.bytes, 1 << 20, "io.stat of the iosched cgroup");
    // mq-deadline: kblockd issues the requests, so the submitter is taken at insert.
    assert_eq!(
        ours.bytes, kernel.bytes,
        "block I/O on 6.1 (scheduler mq-deadline): ours {ours:?} vs io.stat {kernel:?}"
    );
    assert_eq!(
        ours.ops, kernel.ops,
        "one operation per request (mq-deadline)"
    );

    // The guest kernel's own accounting over ticks 2..N (the first tick starts before
    // the spinners are registered).
    let sched_out = exec(&lab, &vm, "cat /tmp/sched.log", 30);
    let points: Vec<(f64, f64)> = sched_out
        .stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<f64> = l
                .split_whitespace()
                .map(|w| w.parse::<f64>())
                .collect::<Result<_, _>>()
                .ok()?;
            (f.len() == 3).then(|| (f[0], (f[1] + f[2]) / 1e9))
        })
        .collect();
    assert!(
        points.len() > 20,
        "schedstat sampler lines: {}",
        sched_out.stdout
    );
    let t_start = spin[0]["timestamp_ms"].as_f64().unwrap() / 1e3;
    let t_end = spin[spin.len() - 1]["timestamp_ms"].as_f64().unwrap() / 1e3;
    let (Some(k0), Some(k1)) = (interpolate(&points, t_start), interpolate(&points, t_end)) else {
        panic!(
            "schedstat samples ({:.3}..{:.3}) do not cover the ticks {t_start:.3}..{t_end:.3}",
            points[0].0,
            points[points.len() - 1].0
        );
    };
    let kernel = k1 - k0;
    let ours: f64 = spin[1..]
        .iter()
        .map(|s| s["runqueue"]["wait_seconds"].as_f64().unwrap())
        .sum();
    eprintln!(
        "ticks 2..{}: ours {ours:.3}s, guest schedstat {kernel:.3}s ({:.1}%)",
        spin.len(),
        100.0 * rel_diff(ours, kernel)
    );
    assert!(
        rel_diff(ours, kernel) < 0.10,
        "run-queue wait on 6.1: ours {ours:.3}s vs schedstat {kernel:.3}s"
    );

    let metrics = exec(&lab, &vm, "cat /tmp/m.prom", 30);
    assert!(
        metrics
            .stdout
            .lines()
            .any(|l| l.trim() == r#"interference_collector_up{collector="sched"} 1"#),
        "metrics file:\n{}",
        metrics.stdout
    );
    for l in metrics.stdout.lines().filter(|l| {
        l.starts_with("interference_collector_up") || l.starts_with("interference_ticks_total")
    }) {
        eprintln!("guest metrics: {l}");
    }
    drop(lab);
    eprintln!("cross-kernel check done in {:.1?}", started.elapsed());
}
