//! `interference top`: a live table per VM (and per vCPU with --vcpus).

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use interference::telemetry::{Latency, VmSample};

use interference::agent::{start_loop, Overrides};

use super::args::ConfigArgs;
use super::parse_duration;

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Refresh period.
    #[arg(short, long, default_value = "2s", value_parser = parse_duration)]
    pub interval: Duration,
    /// One row per vCPU under each VM.
    #[arg(long)]
    pub vcpus: bool,
    /// Stop after this many refreshes (default: until Ctrl-C).
    #[arg(short = 'n', long)]
    pub iterations: Option<u64>,
    /// Print each table after the previous one instead of redrawing the screen.
    #[arg(long)]
    pub no_clear: bool,
}

pub fn run(args: TopArgs) -> anyhow::Result<()> {
    let settings = args.config.settings(Overrides {
        interval: Some(args.interval),
        ..Overrides::default()
    })?;
    let interval = settings.interval;
    let duration = args.iterations.map(|n| interval * n as u32);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut lp = start_loop(&settings)?;
    let mut stdout = std::io::stdout();
    let mut write_err = None;
    runtime.block_on(interference::agent::run(
        &mut lp,
        interval,
        duration,
        |report| {
            let mut screen = String::new();
            if !args.no_clear {
                screen.push_str("\x1b[H\x1b[2J");
            }
            screen.push_str(&render(&report.samples, args.vcpus));
            if let Err(e) = stdout
                .write_all(screen.as_bytes())
                .and_then(|_| stdout.flush())
            {
                write_err.get_or_insert(e);
            }
        },
    ))?;
    match write_err {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn ms(s: f64) -> String {
    format!("{:.2}", s * 1e3)
}

/// Share of the tick spent waiting in the run queue, summed over threads (percent).
fn wait_pct(l: &Latency, interval: f64) -> String {
    if interval <= 0.0 {
        return "-".into();
    }
    format!("{:.1}", 100.0 * l.wait_seconds / interval)
}

/// The table for one tick. Columns: run-queue wait share and mean/max wait, the
/// top aggressor, block I/O throughput, CPU usage.
pub fn render(samples: &[VmSample], vcpus: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>4} {:>7} {:>9} {:>9} {:>8} {:<20} {:>9} {:>9} {:>7}",
        "VM",
        "THR",
        "WAIT%",
        "AVG_MS",
        "MAX_MS",
        "PREEMPT",
        "TOP_AGGRESSOR",
        "READ_KB/s",
        "WRITE_KB/s",
        "CPU%"
    );
    for s in samples {
        let l = &s.runqueue;
        let avg = if l.waits > 0 {
            l.wait_seconds / l.waits as f64
        } else {
            0.0
        };
        let top = s
            .preempted_by
            .first()
            .map(|p| format!("{} {}ms", p.by, (p.seconds * 1e3).round()))
            .unwrap_or_else(|| "-".into());
        let per_s = |v: u64| {
            if s.interval_seconds > 0.0 {
                format!("{:.0}", v as f64 / 1024.0 / s.interval_seconds)
            } else {
                "-".into()
            }
        };
        let (rd, wr) = match &s.block_io {
            Some(io) => (per_s(io.read_bytes), per_s(io.write_bytes)),
            None => ("-".into(), "-".into()),
        };
        let cpu = s
            .cpu
            .as_ref()
            .filter(|_| s.interval_seconds > 0.0)
            .map(|c| format!("{:.1}", 100.0 * c.usage_seconds / s.interval_seconds))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<20} {:>4} {:>7} {:>9} {:>9} {:>8} {:<20} {:>9} {:>9} {:>7}",
            truncate(&s.vm, 20),
            s.threads,
            wait_pct(l, s.interval_seconds),
            ms(avg),
            ms(l.max_seconds),
            l.preemptions,
            truncate(&top, 20),
            rd,
            wr,
            cpu
        );
        if vcpus {
            for v in &s.vcpus {
                let l = &v.latency;
                let avg = if l.waits > 0 {
                    l.wait_seconds / l.waits as f64
                } else {
                    0.0
                };
                let _ = writeln!(
                    out,
                    "  vcpu {:<13} {:>4} {:>7} {:>9} {:>9} {:>8}",
                    format!("{} (tid {})", v.vcpu, v.tid),
                    1,
                    wait_pct(l, s.interval_seconds),
                    ms(avg),
                    ms(l.max_seconds),
                    l.preemptions
                );
            }
        }
    }
    if samples.is_empty() {
        out.push_str("(no VMs tracked yet)\n");
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('~');
        t
    }
}
