//! Command-line definitions (one doc per flag feeds --help) and dispatch.

mod agent;
mod args;
mod bill;
mod check_config;
mod collect;
mod explain;
mod forecast;
mod inventory;
mod restore;
mod score;
mod top;

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use interference::agent::AgentError;
use interference::telemetry::preflight::PreflightError;
use interference_core::cli::{CompletionsArgs, LogArgs, LogFormat, ManArgs};

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
    #[command(flatten)]
    pub logs: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job: collect, score every VM pair, decide and enforce each tick; every
    /// change is journalled and put back on exit.
    #[command(after_help = "Examples:
  interference agent                               # this host's VMs, embedded defaults
  interference agent -c /etc/interference/agent.toml
  interference agent --dry-run --duration 10m      # decide and log, change nothing
  interference --log-format json agent             # one JSON object per log line

Each decision is one log line: `ID applied: REASON action=ID pair=VICTIM/AGGRESSOR
score=... rung=... change=... vm=... result=...` (`failed:` and a warning when it
failed). SIGTERM or SIGINT restores every change and bills it; `interference restore`
does the same after a crash.")]
    Agent(agent::AgentArgs),
    /// Check a configuration file before a restart: every problem at once, then the
    /// settings in effect and the VMs the agent would track.
    #[command(after_help = "Examples:
  interference check-config /etc/interference/agent.toml
  interference check-config --brief agent.toml && systemctl restart interference-agent

Exit status: 0 valid, 1 problems (each printed as file:line:column: field: message),
2 bad command line, 4 the file or the host's cgroup mounts cannot be read.")]
    CheckConfig(check_config::CheckConfigArgs),
    /// Collect per-VM telemetry every tick into JSONL samples and a Prometheus textfile.
    #[command(after_help = "Examples:
  interference collect --samples /var/tmp/samples.jsonl --duration 1m
  interference collect --metrics-file /var/lib/node_exporter/textfile/interference.prom")]
    Collect(collect::CollectArgs),
    /// A live table of the host's VMs: run-queue latency, preemptions, I/O, CPU.
    #[command(after_help = "Examples:
  interference top
  interference top --vcpus -n 3 --no-clear         # three refreshes, one row per vCPU")]
    Top(top::TopArgs),
    /// List the VMs discovered on this host (QEMU processes, libvirt, config).
    #[command(after_help = "Examples:
  interference inventory
  interference inventory --json | jq .name")]
    Inventory(inventory::InventoryArgs),
    /// Score every VM pair each round (the nowcast by default; LSTM or heuristic).
    #[command(after_help = "Examples:
  interference score --duration 30s --min-score 20
  interference score --replay samples.jsonl --format jsonl   # a recording, offline")]
    Score(score::ScoreArgs),
    /// Put back every cgroup and balloon change an agent left in effect (from its journal).
    #[command(after_help = "Examples:
  interference restore                             # /var/lib/interference/journal.jsonl
  interference restore --journal /tmp/journal.jsonl --no-ledger")]
    Restore(restore::RestoreArgs),
    /// A customer's invoice for a billing period: base price, interference charges,
    /// good-neighbour credits, one line per reason.
    #[command(after_help = "Examples:
  interference bill --customer acme
  interference bill --customer acme --period 2026-11 --format json")]
    Bill(bill::BillArgs),
    /// The full derivation of one ledger record.
    #[command(after_help = "Example:
  interference explain 'h1-12-0/1764115200000/charge'   # a record id from the ledger")]
    Explain(explain::ExplainArgs),
    /// Replay a utilisation trace through the demand forecaster the agent runs (one
    /// JSON line per VM, point and horizon), or import one as the agent's history.
    #[command(after_help = "Examples:
  interference forecast --replay trace.csv.gz --horizon 5m,1h
  interference forecast --import trace.csv.gz -c /etc/interference/agent.toml")]
    Forecast(forecast::ForecastArgs),
    /// Shell completions on stdout (the package installs them).
    #[command(after_help = "Examples:
  interference completions bash > /etc/bash_completion.d/interference
  interference completions zsh > ~/.zfunc/_interference")]
    Completions(CompletionsArgs),
    /// Write the manual pages (interference.1 and one per command) into a directory.
    #[command(hide = true)]
    Man(ManArgs),
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 5s or 1m: {e}"))
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Agent(a) => agent::run(a),
        Command::CheckConfig(a) => check_config::run(a),
        Command::Completions(a) => {
            interference_core::cli::completions::<Cli>(&a).context("writing the completions")
        }
        Command::Man(a) => interference_core::cli::man::<Cli>(&a)
            .with_context(|| format!("writing manual pages into {}", a.dir.display())),
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

/// 1: failure; 3: missing privilege or kernel feature (nothing was started);
/// `check-config` has its own (see its help).
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(check) = err.downcast_ref::<check_config::CheckFailed>() {
        return check.exit_code();
    }
    if err.chain().any(|e| {
        e.downcast_ref::<PreflightError>().is_some()
            || matches!(e.downcast_ref(), Some(AgentError::Preflight(_)))
    }) {
        3
    } else {
        1
    }
}

/// Logs at -q/-v's level in `format`.
pub fn init_logging(verbose: u8, quiet: bool, format: LogFormat) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    interference_core::cli::init_logging(format, level);
}
