//! CPU and memory of `interference collect` (or, with `AGENT_OVERHEAD_COMMAND=agent`,
//! of the whole agent: collect, scoring of all pairs with the default nowcast, policy,
//! enforcement and billing, side by side with `--scorer lstm`, rounds alternating) while
//! it tracks 64 VMs, and the median duration of
//! one tick as the agent reports it (`interference_tick_duration_seconds`, sampled
//! every tick).
//!
//! `cargo bench -p interference-user --bench agent_overhead` (root). Builds 64 static
//! VMs as cgroups (v1 cpu/cpuacct/memory/blkio + the v2 hierarchy), each holding one
//! process of 6 threads that wake 20 times a second (vCPU-like activity), runs the
//! release binary at a 5 s tick for ROUND seconds, and reads its CPU time from
//! /proc/<pid>/task/*/schedstat and its peak RSS (VmHWM) from /proc/<pid>/status.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

const VMS: usize = 64;
const THREADS_PER_VM: usize = 6;
const ROUNDS: usize = 3;
const ROUND: Duration = Duration::from_secs(60);

fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let v2 = if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        "/sys/fs/cgroup/unified"
    } else {
        "/sys/fs/cgroup"
    };
    let mut dirs = vec![Path::new(v2).join("interference-bench").join(name)];
    for c in ["cpu", "cpuacct", "memory", "blkio"] {
        let root = Path::new("/sys/fs/cgroup").join(c);
        if root.join("tasks").exists() {
            dirs.push(root.join("interference-bench").join(name));
        }
    }
    dirs
}

fn spawn_vm(name: &str) -> anyhow::Result<Child> {
    let dirs = cgroup_dirs(name);
    for d in &dirs {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .arg("--vm-child")
        .stdout(Stdio::null())
        .spawn()
        .context("spawning a VM stand-in")?;
    for d in &dirs {
        fs::write(d.join("cgroup.procs"), child.id().to_string())
            .with_context(|| format!("moving into {}", d.display()))?;
    }
    Ok(child)
}

/// The stand-in VM: THREADS_PER_VM threads waking every 50 ms, like idle vCPUs.
fn vm_child() -> ! {
    for _ in 0..THREADS_PER_VM - 1 {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_millis(50));
        });
    }
    loop {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CPU time of every thread of `pid`, from schedstat (nanoseconds, unlike the
/// clock-tick granularity of /proc/<pid>/stat).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let mut ns = 0u64;
    for e in fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = e?.path().join("schedstat");
        if let Ok(s) = fs::read_to_string(&path) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(ns as f64 / 1e9)
}

fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{key} in /proc/{pid}/status"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One variant's figures over the rounds.
#[derive(Default)]
struct Measured {
    cpu_pct: Vec<f64>,
    rss: Vec<f64>,
    ticks_ms: Vec<f64>,
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--vm-child") {
        vm_child();
    }
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("agent_overhead: needs root; skipped");
        return Ok(());
    }
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/interference");
    if !bin.exists() {
        bail!("{} missing: run cargo build --release first", bin.display());
    }
    let dir = tempfile::tempdir()?;
    // Only the 64 stand-ins: other QEMU processes on the machine must not be tracked.
    let mut config = String::from("[discovery]\nqemu = false\nlibvirt = false\n\n");
    let mut children = vec![];
    for i in 0..VMS {
        let name = format!("vm-{i:02}");
        children.push(spawn_vm(&name)?);
        let paths: Vec<String> = cgroup_dirs(&name)
            .iter()
            .map(|p| format!("{:?}", p.display().to_string()))
            .collect();
        config.push_str(&format!(
            "[[vm]]\nname = \"{name}\"\ncgroups = [{}]\ncustomer = \"c{}\"\nvcpus = 2\nmemory_mib = 2048\n\n",
            paths.join(", "),
            i % 8
        ));
    }
    // Billing at its busiest: a 10 s charge interval posts every VM's base lines every
    // other tick (one synced write per tick that has any).
    config.push_str("[billing]\ncharge_interval = \"10s\"\n");
    let cfg = dir.path().join("bench.toml");
    fs::write(&cfg, &config)?;
    let command = std::env::var("AGENT_OVERHEAD_COMMAND").unwrap_or_else(|_| "collect".into());
    // The agent is measured side by side with its previous default scorer (the LSTM),
    // rounds alternating, so both see the same machine.
    let variants: Vec<Vec<&str>> = if command == "agent" {
        vec![vec![], vec!["--scorer", "lstm"]]
    } else {
        vec![vec![]]
    };
    let mut results: Vec<Measured> = variants.iter().map(|_| Measured::default()).collect();
    for round in 0..ROUNDS {
        for (variant, extra) in variants.iter().enumerate() {
            let m = &mut results[variant];
            let metrics = dir.path().join("m.prom");
            let samples = dir.path().join("s.jsonl");
            let mut cmd = Command::new(&bin);
            cmd.args([command.as_str(), "--config"]).arg(&cfg);
            if command == "agent" {
                cmd.arg("--journal")
                    .arg(dir.path().join("journal.jsonl"))
                    .arg("--ledger")
                    .arg(dir.path().join("ledger"));
            }
            let mut agent = cmd
                .args(extra)
                .args(["--interval", "5s", "--metrics-file"])
                .arg(&metrics)
                .arg("--samples")
                .arg(&samples)
                .arg("--quiet")
                .spawn()?;
            let pid = agent.id();
            // Start-up (BTF parsing, program load) is not steady state: measure after it.
            std::thread::sleep(Duration::from_secs(6));
            let c0 = cpu_seconds(pid)?;
            let t0 = Instant::now();
            while t0.elapsed() < ROUND {
                std::thread::sleep(Duration::from_secs(5));
                let text = fs::read_to_string(&metrics).unwrap_or_default();
                if let Some(v) = text
                    .lines()
                    .find(|l| l.starts_with("interference_tick_duration_seconds "))
                    .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                {
                    m.ticks_ms.push(v * 1e3);
                }
            }
            let c1 = cpu_seconds(pid)?;
            let wall = t0.elapsed().as_secs_f64();
            m.rss.push(status_kib(pid, "VmHWM:")? as f64 / 1024.0);
            m.cpu_pct.push(100.0 * (c1 - c0) / wall);
            let text = fs::read_to_string(&metrics).unwrap_or_default();
            m.threads = text
                .lines()
                .filter(|l| l.starts_with("interference_vm_threads{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as usize;
            let _ = Command::new("kill")
                .arg("-INT")
                .arg(pid.to_string())
                .status();
            agent.wait()?;
            eprintln!(
                "round {round} {command} {}: cpu {:.3}% rss {:.1} MiB, {} threads tracked",
                extra.join(" "),
                m.cpu_pct[round],
                m.rss[round],
                m.threads
            );
        }
    }
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    for i in 0..VMS {
        for d in cgroup_dirs(&format!("vm-{i:02}")) {
            let _ = fs::remove_dir(&d);
        }
    }
    for d in cgroup_dirs("") {
        let _ = fs::remove_dir(&d);
    }
    println!("| command | VMs | threads tracked | tick | median CPU (% of one core) | median peak RSS (MiB) | median tick duration (ms) | ticks sampled | rounds |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut tick_medians = vec![];
    for (extra, m) in variants.iter().zip(results) {
        let ticks = m.ticks_ms.len();
        let tick = median(m.ticks_ms);
        tick_medians.push(tick);
        println!(
            "| {command} {} | {VMS} | {} | 5 s | {:.3} | {:.1} | {tick:.1} | {ticks} | {ROUNDS} x {} s |",
            extra.join(" "),
            m.threads,
            median(m.cpu_pct),
            median(m.rss),
            ROUND.as_secs()
        );
    }
    if let [default, lstm] = tick_medians[..] {
        println!("tick duration, default / lstm: {:.3}", default / lstm);
    }
    Ok(())
}
