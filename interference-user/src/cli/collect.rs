//! `interference collect`, and the pipeline set-up shared with `top`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use interference::collect::{Discover, Outputs, TickLoop};
use interference::config::Config;
use interference::export::jsonl::SampleWriter;
use interference::export::prometheus::MetricsExporter;
use interference::inventory::{Inventory, Mounts};
use interference::telemetry::collector::{Collector, CollectorOptions};
use interference::telemetry::ebpf::{EbpfProbes, ProbeSet};
use interference::telemetry::perf::CounterSet;
use interference::telemetry::preflight;

use super::{parse_duration, ConfigArgs};

#[derive(Debug, clap::Args)]
pub struct CollectArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Tick length [default: 5s, or `[collect] interval`].
    #[arg(short, long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Stop after this long (default: until SIGINT/SIGTERM).
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Append one JSON sample per VM per tick to this file (docs/samples.md).
    #[arg(long, value_name = "FILE.jsonl")]
    pub samples: Option<PathBuf>,
    /// Rewrite this Prometheus textfile atomically every tick.
    #[arg(long, value_name = "FILE.prom")]
    pub metrics_file: Option<PathBuf>,
    /// Feed the LLC columns from software events (task clock, context switches) instead
    /// of the PMU: proves the perf plumbing on hosts without one.
    #[arg(long, hide = true)]
    pub software_counters: bool,
}

/// Everything a tick loop needs, resolved from the config file and the flags.
pub struct LoopSettings {
    pub config: Config,
    pub mounts: Mounts,
    pub interval: Duration,
    pub samples: Option<PathBuf>,
    pub metrics_file: Option<PathBuf>,
    pub software_counters: bool,
}

impl LoopSettings {
    pub fn from_config(
        args: &ConfigArgs,
        interval: Option<Duration>,
        samples: Option<PathBuf>,
        metrics_file: Option<PathBuf>,
        software_counters: Option<bool>,
    ) -> anyhow::Result<Self> {
        let mounts = Mounts::read(Path::new("/proc")).context("reading the cgroup mounts")?;
        let config = match &args.config {
            Some(path) => Config::load_with(path, &mounts)?,
            None => Config::default(),
        };
        let interval = interval.unwrap_or(config.collect.interval);
        if interval < interference::config::MIN_INTERVAL {
            anyhow::bail!(
                "--interval {}: below the minimum of {}",
                humantime::format_duration(interval),
                humantime::format_duration(interference::config::MIN_INTERVAL)
            );
        }
        Ok(Self {
            samples: samples.or_else(|| config.collect.samples.clone()),
            metrics_file: metrics_file.or_else(|| config.collect.metrics_file.clone()),
            interval,
            mounts,
            config,
            software_counters: software_counters.unwrap_or(false),
        })
    }
}

pub(super) fn host_name(config: &Config) -> String {
    config.collect.host.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    })
}

/// Checks privileges, loads the eBPF programs and registers the VMs present now.
pub fn start_loop(s: &LoopSettings) -> anyhow::Result<TickLoop<EbpfProbes>> {
    preflight::check_host()?;
    let probes = EbpfProbes::load(ProbeSet::default()).context("loading the eBPF programs")?;
    tracing::info!(
        "eBPF programs attached (task_struct.pid at {}, __state at {})",
        probes.offsets.task_pid,
        probes.offsets.task_state
    );
    let collector = Collector::new(
        probes,
        CollectorOptions {
            host: host_name(&s.config),
            counters: if s.software_counters {
                CounterSet::Software
            } else {
                CounterSet::Hardware
            },
            sched: true,
            block_io: true,
        },
    )?;
    let inventory = Inventory::new(
        s.config
            .inventory_options(Path::new("/proc"), s.mounts.clone()),
    );
    let discover: Discover = Box::new(move || inventory.discover().map_err(Into::into));
    let mut outputs = Outputs::default();
    if let Some(path) = &s.samples {
        outputs.samples = Some(SampleWriter::open(path)?);
    }
    if let Some(path) = &s.metrics_file {
        outputs.metrics = Some((path.clone(), MetricsExporter::new()));
    }
    // The LLC collector reports itself unavailable (logged once) on hosts without a PMU.
    Ok(TickLoop::start(collector, discover, outputs)?)
}

pub fn run(args: CollectArgs) -> anyhow::Result<()> {
    let settings = LoopSettings::from_config(
        &args.config,
        args.interval,
        args.samples,
        args.metrics_file,
        Some(args.software_counters),
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut lp = start_loop(&settings)?;
    tracing::info!(
        "collecting every {} from {} VMs",
        humantime::format_duration(settings.interval),
        lp.collector().registry().vms().len()
    );
    runtime.block_on(interference::collect::run(
        &mut lp,
        settings.interval,
        args.duration,
        |report| {
            tracing::debug!(
                "tick: {} VMs in {:.1} ms",
                report.samples.len(),
                report.duration.as_secs_f64() * 1e3
            );
        },
    ))?;
    // Dropping the loop drops the probes: every program is detached here.
    drop(lp);
    tracing::info!("programs detached");
    Ok(())
}
