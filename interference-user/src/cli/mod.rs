//! Command-line definitions (one doc per flag feeds --help) and dispatch.

mod agent;
mod args;
mod bill;
mod collect;
mod explain;
mod forecast;
mod inventory;
mod restore;
mod score;
mod top;

use std::time::Duration;

use clap::{Parser, Subcommand};
use interference::agent::AgentError;
use interference::telemetry::preflight::PreflightError;

#[derive(Debug, Parser)]
#[command(
    name = "interference",
    version,
    about = "eBPF telemetry, interference prediction and mitigation for KVM hosts",
    long_about = "interference watches every VM on a KVM host with eBPF: how long vCPUs wait \
                  for a CPU, who takes the CPU from them, and what I/O each VM does."
)]
pub struct Cli {
    /// More logging (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job: collect, score every VM pair, decide and enforce each tick; every
    /// change is journalled and put back on exit.
    Agent(agent::AgentArgs),
    /// Collect per-VM telemetry every tick into JSONL samples and a Prometheus textfile.
    Collect(collect::CollectArgs),
    /// A live table of the host's VMs: run-queue latency, preemptions, I/O, CPU.
    Top(top::TopArgs),
    /// List the VMs discovered on this host (QEMU processes, libvirt, config).
    Inventory(inventory::InventoryArgs),
    /// Predict the Contention Score of every VM pair each round (LSTM or heuristic).
    Score(score::ScoreArgs),
    /// Put back every cgroup and balloon change an agent left in effect (from its journal).
    Restore(restore::RestoreArgs),
    /// A customer's invoice for a billing period: base price, interference charges,
    /// good-neighbour credits, one line per reason.
    Bill(bill::BillArgs),
    /// The full derivation of one ledger record.
    Explain(explain::ExplainArgs),
    /// Replay a utilisation trace through the demand forecaster the agent runs (one
    /// JSON line per VM, point and horizon), or import one as the agent's history.
    Forecast(forecast::ForecastArgs),
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 5s or 1m: {e}"))
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Agent(a) => agent::run(a),
        Command::Collect(a) => collect::run(a),
        Command::Top(a) => top::run(a),
        Command::Inventory(a) => inventory::run(a),
        Command::Score(a) => score::run(a),
        Command::Restore(a) => restore::run(a),
        Command::Bill(a) => bill::run(a),
        Command::Explain(a) => explain::run(a),
        Command::Forecast(a) => forecast::run(a),
    }
}

/// 1: failure; 3: missing privilege or kernel feature (nothing was started).
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| {
        e.downcast_ref::<PreflightError>().is_some()
            || matches!(e.downcast_ref(), Some(AgentError::Preflight(_)))
    }) {
        3
    } else {
        1
    }
}

pub fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
