//! The flag groups commands share, and the one way they become [`Settings`]: the
//! file's values with the flags on top (see `interference::agent::settings`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use interference::agent::{Overrides, Settings};
use interference::config::{Config, ScorerKind};
use interference::inventory::Mounts;

use super::parse_duration;

/// The configuration file, for every command that reads the host's VMs.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration: static `[[vm]]` inventory and settings [default: the
    /// embedded defaults].
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    /// The file checked against `mounts`, or the embedded defaults without one.
    pub fn load(&self, mounts: &Mounts) -> anyhow::Result<Config> {
        match &self.config {
            Some(path) => Ok(Config::load_with(path, mounts)?),
            None => Ok(Config::default()),
        }
    }

    /// `o` over the file over the defaults, checked (bad combinations are refused
    /// before anything is loaded or attached).
    pub fn settings(&self, o: Overrides) -> anyhow::Result<Settings> {
        let mounts = Mounts::read(Path::new("/proc")).context("reading the cgroup mounts")?;
        let config = self.load(&mounts)?;
        Ok(Settings::resolve(
            o,
            config,
            mounts,
            &Settings::kernel_host_name(),
        )?)
    }
}

/// The tick loop's flags: `agent`, `collect`, `score`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoopArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Collector tick [default: `[collect] interval`, 5s].
    #[arg(short, long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Stop after this long (default: until SIGINT/SIGTERM).
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Append one JSON sample per VM per tick to this file (docs/samples.md)
    /// [default: `[collect] samples`].
    #[arg(long, value_name = "FILE.jsonl")]
    pub samples: Option<PathBuf>,
    /// Rewrite this Prometheus textfile atomically every tick [default: `[collect]
    /// metrics_file`].
    #[arg(long, value_name = "FILE.prom")]
    pub metrics_file: Option<PathBuf>,
}

impl LoopArgs {
    /// The overrides these flags make.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            interval: self.interval,
            samples: self.samples.clone(),
            metrics_file: self.metrics_file.clone(),
            ..Overrides::default()
        }
    }
}

/// Which scorer: `agent` and `score`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScorerArgs {
    /// nowcast (default): the share of each VM's runnable time each neighbour took;
    /// lstm: the model predicts the next horizon; heuristic: the reactive baseline
    /// [default: `[score] scorer`].
    #[arg(long, value_enum)]
    pub scorer: Option<ScorerKind>,
    /// ONNX model for the lstm scorer (its sidecar: the same path with .json)
    /// [default: the built-in model].
    #[arg(long, value_name = "FILE.onnx")]
    pub model: Option<PathBuf>,
    /// How often every pair is scored [default: every tick for the nowcast, the
    /// model's interval otherwise].
    #[arg(long, value_parser = parse_duration)]
    pub every: Option<Duration>,
}

impl ScorerArgs {
    /// `o` with these flags added.
    pub fn add_to(&self, o: Overrides) -> Overrides {
        Overrides {
            scorer: self.scorer,
            model: self.model.clone(),
            every: self.every,
            ..o
        }
    }
}

/// Where `bill` and `explain` find the ledger.
#[derive(Debug, Clone, clap::Args)]
pub struct LedgerArgs {
    /// The ledger directory [default: `[billing] ledger_dir` of --config, else
    /// /var/lib/interference/ledger].
    #[arg(long, value_name = "DIR")]
    pub ledger: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

impl LedgerArgs {
    /// The ledger directory: --ledger, else the file's, else the default. Reading a
    /// ledger needs no cgroup, so the file is read without checking its paths.
    pub fn dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.ledger {
            return Ok(dir.clone());
        }
        Ok(match &self.config.config {
            Some(path) => {
                Config::load(path)
                    .with_context(|| format!("loading {}", path.display()))?
                    .billing
                    .ledger_dir
            }
            None => Config::default().billing.ledger_dir,
        })
    }
}
