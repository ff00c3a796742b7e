//! `interference collect`: per-VM telemetry every tick into JSONL samples and a
//! Prometheus textfile, nothing decided.

use interference::agent::start_loop;

use super::args::LoopArgs;

#[derive(Debug, clap::Args)]
pub struct CollectArgs {
    #[command(flatten)]
    pub tick: LoopArgs,
    /// Feed the LLC columns from software events (task clock, context switches) instead
    /// of the PMU: proves the perf plumbing on hosts without one.
    #[arg(long, hide = true)]
    pub software_counters: bool,
}

pub fn run(args: CollectArgs) -> anyhow::Result<()> {
    let mut overrides = args.tick.overrides();
    overrides.software_counters = args.software_counters;
    let settings = args.tick.config.settings(overrides)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut lp = start_loop(&settings)?;
    tracing::info!(
        "collecting every {} from {} VMs",
        humantime::format_duration(settings.interval),
        lp.collector().registry().vms().len()
    );
    runtime.block_on(interference::agent::run(
        &mut lp,
        settings.interval,
        args.tick.duration,
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
