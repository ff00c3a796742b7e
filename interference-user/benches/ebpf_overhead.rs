//! Cost per event of our eBPF programs against bpftrace's runqlat, side by side in one
//! run, under a context-switch storm in which every switching thread is tracked.
//!
//! `cargo bench -p interference-user --bench ebpf_overhead` (root). Measures with
//! kernel.bpf_stats_enabled (run_time_ns / run_cnt per program) over several rounds and
//! prints medians; docs/benchmarks.md records the results.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aya::programs::loaded_programs;
use interference::inventory::{Vm, VmSource, VmThread};
use interference::telemetry::ebpf::{EbpfProbes, ProbeSet};
use interference::telemetry::registry::Registry;

const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_secs(4);
fn pairs() -> usize {
    std::env::var("STORM_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

/// bpftrace's runqlat.bt without `#include <linux/sched.h>` (which fails to compile
/// with Debian 12's bpftrace on this kernel), testing `prev_state == 0` instead.
const RUNQLAT: &str = r#"
tracepoint:sched:sched_wakeup, tracepoint:sched:sched_wakeup_new { @qtime[args->pid] = nsecs; }
tracepoint:sched:sched_switch {
  if (args->prev_state == 0) { @qtime[args->prev_pid] = nsecs; }
  $ns = @qtime[args->next_pid];
  if ($ns) { @usecs = hist((nsecs - $ns) / 1000); }
  delete(@qtime[args->next_pid]);
}
"#;

#[derive(Default, Clone, Copy, Debug)]
struct Cost {
    run_ns: u64,
    runs: u64,
}

impl Cost {
    fn per_event(self) -> f64 {
        if self.runs == 0 {
            f64::NAN
        } else {
            self.run_ns as f64 / self.runs as f64
        }
    }
}

/// Pairs of threads bouncing a byte over two pipes: two switches and two wakeups per
/// round trip, all of them in tracked threads.
struct Storm {
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<()>>,
    tids: Vec<u32>,
}

fn pipe() -> [i32; 2] {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for two descriptors.
    let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "pipe() failed");
    fds
}

impl Storm {
    fn start(pairs: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut handles = vec![];
        for _ in 0..pairs {
            let a = pipe();
            let b = pipe();
            for side in 0..2 {
                let (rd, wr) = if side == 0 {
                    (a[0], b[1])
                } else {
                    (b[0], a[1])
                };
                let stop = stop.clone();
                let tx = tx.clone();
                handles.push(std::thread::spawn(move || {
                    // SAFETY: gettid has no preconditions.
                    let _ = tx.send(unsafe { libc::gettid() } as u32);
                    let mut byte = [0u8; 1];
                    if side == 0 {
                        // SAFETY: valid fd and buffer.
                        unsafe { libc::write(wr, byte.as_ptr().cast(), 1) };
                    }
                    while !stop.load(Ordering::Relaxed) {
                        // SAFETY: valid fds and buffer.
                        unsafe {
                            if libc::read(rd, byte.as_mut_ptr().cast(), 1) != 1 {
                                break;
                            }
                            libc::write(wr, byte.as_ptr().cast(), 1);
                        }
                    }
                    // SAFETY: closing our own ends wakes the peer.
                    unsafe {
                        libc::close(wr);
                    }
                }));
            }
        }
        let tids = (0..pairs * 2).filter_map(|_| rx.recv().ok()).collect();
        Storm {
            stop,
            handles,
            tids,
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            let _ = h.join();
        }
    }
}

fn delta(after: &[(String, Cost)], before: &[(String, Cost)], name: &str) -> Cost {
    let sum = |v: &[(String, Cost)]| {
        v.iter()
            .filter(|(n, _)| n == name)
            .fold(Cost::default(), |a, (_, c)| Cost {
                run_ns: a.run_ns + c.run_ns,
                runs: a.runs + c.runs,
            })
    };
    let (a, b) = (sum(after), sum(before));
    Cost {
        run_ns: a.run_ns - b.run_ns,
        runs: a.runs - b.runs,
    }
}

/// bpftrace resolves tracepoints through tracefs; mount it if the host has not.
fn ensure_tracefs() -> anyhow::Result<()> {
    if std::path::Path::new("/sys/kernel/tracing/events/sched").exists() {
        return Ok(());
    }
    let status = Command::new("mount")
        .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
        .status()
        .context("mounting tracefs")?;
    if !status.success() {
        bail!("tracefs is not mounted and `mount -t tracefs nodev /sys/kernel/tracing` failed");
    }
    Ok(())
}

fn start_bpftrace() -> anyhow::Result<Child> {
    ensure_tracefs()?;
    let mut child = Command::new("bpftrace")
        .args(["-e", RUNQLAT])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting bpftrace (apt-get install bpftrace)")?;
    let out = child.stdout.take().context("bpftrace stdout")?;
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .context("waiting for bpftrace to attach")?;
    if !line.contains("Attaching") {
        bail!("bpftrace did not attach: {line}");
    }
    Ok(child)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("ebpf_overhead: needs root (loads eBPF programs); skipped");
        return Ok(());
    }
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enabling bpf stats")?;
    let storm = Storm::start(pairs());
    let mut probes = EbpfProbes::load(ProbeSet::default()).context("loading our programs")?;
    let half = storm.tids.len() / 2;
    let vm = |name: &str, tids: &[u32]| Vm {
        threads: tids
            .iter()
            .map(|t| VmThread {
                tid: *t,
                name: "storm".into(),
                vcpu: None,
            })
            .collect(),
        ..Vm::new(name, VmSource::Static)
    };
    let vms = [
        vm("storm-a", &storm.tids[..half]),
        vm("storm-b", &storm.tids[half..]),
    ];
    let mut registry = Registry::new();
    registry
        .sync(&vms, &|_| BTreeSet::new(), &mut probes)
        .context("registering the storm threads")?;
    let mut bpftrace = start_bpftrace()?;
    std::thread::sleep(Duration::from_millis(500));

    let ours = ["sched_switch", "sched_wakeup"];
    let mut rows: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("sched_switch: interference", vec![], vec![]),
        ("sched_wakeup: interference", vec![], vec![]),
        ("sched_switch: bpftrace runqlat", vec![], vec![]),
        ("sched_wakeup: bpftrace runqlat", vec![], vec![]),
    ];
    // bpftrace names its programs after the probe: "sched_switch", "sched_wakeup"...
    // tell ours apart by kernel program id.
    let our_ids: BTreeSet<u32> = probes.program_ids().into_iter().map(|(_, id)| id).collect();
    for round in 0..ROUNDS {
        let before = snapshot(&our_ids)?;
        let t0 = Instant::now();
        std::thread::sleep(ROUND);
        let after = snapshot(&our_ids)?;
        let secs = t0.elapsed().as_secs_f64();
        for (i, (ours_flag, name)) in [
            (true, ours[0]),
            (true, ours[1]),
            (false, "sched_switch"),
            (false, "sched_wakeup"),
        ]
        .iter()
        .enumerate()
        {
            let key = if *ours_flag {
                format!("ours:{name}")
            } else {
                format!("bpftrace:{name}")
            };
            let c = delta(&after, &before, &key);
            rows[i].1.push(c.per_event());
            rows[i].2.push(c.runs as f64 / secs);
        }
        eprintln!("round {round} done");
    }
    let _ = bpftrace.kill();
    let _ = bpftrace.wait();
    storm.stop();
    drop(probes);

    println!("| program | median ns/event | events/s | rounds |");
    println!("|---|---|---|---|");
    for (name, ns, rate) in &rows {
        println!(
            "| {name} | {:.0} | {:.0} | {} |",
            median(ns.clone()),
            median(rate.clone()),
            ns.len()
        );
    }
    let ratio = |a: usize, b: usize| median(rows[b].1.clone()) / median(rows[a].1.clone());
    println!();
    println!(
        "runqlat / interference: sched_switch {:.2}x, sched_wakeup {:.2}x",
        ratio(0, 2),
        ratio(1, 3)
    );
    Ok(())
}

/// Costs keyed "ours:<name>" for our program ids, "bpftrace:<name>" for the others.
fn snapshot(our_ids: &BTreeSet<u32>) -> anyhow::Result<Vec<(String, Cost)>> {
    let mut out = vec![];
    for p in loaded_programs() {
        let p = p.context("listing loaded programs")?;
        let name = p.name_as_str().unwrap_or("").to_string();
        let owner = if our_ids.contains(&p.id()) {
            "ours"
        } else {
            "bpftrace"
        };
        out.push((
            format!("{owner}:{name}"),
            Cost {
                run_ns: p.run_time().as_nanos() as u64,
                runs: p.run_count(),
            },
        ));
    }
    Ok(out)
}
