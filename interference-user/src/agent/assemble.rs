//! The agent as a library object: [`Agent::build`] turns resolved [`Settings`] into a
//! running pipeline (eBPF probes, inventory, scorer, policy, enforcer, ledger), the
//! same way for the binary, the crash tests and the benchmarks. The CLI only parses
//! and prints.
//!
//! Order matters at start: the journal and the ledger are opened, the run number is
//! taken (above every run either has seen, so action ids never repeat), what a
//! crashed run left in effect (or owes the ledger) is billed and put back, and only
//! then are the probes attached and the first tick decided.

use std::path::Path;
use std::time::Duration;

use thiserror::Error;

use super::settings::Settings;
use super::{
    Discover, Forecasting, Mitigation, Outputs, Scoring, ScoringError, TickError, TickLoop,
    TickReport,
};
use crate::billing::{Billing, LedgerError};
use crate::clock::now_ms;
use crate::enforce::{EnforceError, Enforcer, EnforcerOptions, JournalError};
use crate::export::jsonl::{SampleFileError, SampleWriter};
use crate::export::prometheus::MetricsExporter;
use crate::host::CpuList;
use crate::inventory::Inventory;
use crate::policy::{ActionResult, Outcome, Policy, PolicyError, Rung};
use crate::predict::{HeuristicScorer, LstmScorer, PredictError, Scorer, ScorerKind};
use crate::telemetry::balloon::{BalloonProbe, DEFAULT_MIN_INTERVAL};
use crate::telemetry::collector::{CollectError, Collector, CollectorOptions};
use crate::telemetry::ebpf::{EbpfProbes, LoadError, ProbeSet};
use crate::telemetry::perf::CounterSet;
use crate::telemetry::preflight::{self, PreflightError};

/// Why the agent (or one of its parts) could not be built.
#[derive(Debug, Error)]
pub enum AgentError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error("loading the eBPF programs")]
    Load(#[from] LoadError),
    #[error("starting the collector")]
    Collect(#[from] CollectError),
    #[error("starting the tick loop")]
    Tick(#[from] TickError),
    #[error(transparent)]
    Samples(#[from] SampleFileError),
    #[error("loading the built-in model")]
    BuiltinModel(#[source] PredictError),
    #[error("loading the model {path}")]
    Model {
        path: std::path::PathBuf,
        #[source]
        source: PredictError,
    },
    #[error("the model {0}: only the lstm scorer uses a model")]
    ModelWithoutLstm(std::path::PathBuf),
    #[error(transparent)]
    Scoring(#[from] ScoringError),
    #[error("starting the forecaster")]
    Forecasting(#[from] super::ForecastingError),
    #[error("starting the controller link")]
    Fleet(#[from] crate::fleet::LinkError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("opening the journal {path}")]
    Enforcer {
        path: std::path::PathBuf,
        #[source]
        source: EnforceError,
    },
    #[error("opening the ledger {path}")]
    Ledger {
        path: std::path::PathBuf,
        #[source]
        source: LedgerError,
    },
    #[error("starting a run in the journal {path}")]
    Run {
        path: std::path::PathBuf,
        #[source]
        source: JournalError,
    },
    #[error("reading the host's online CPUs from {path}")]
    OnlineCpus {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing the host's online CPUs in {path}")]
    OnlineCpusText {
        path: std::path::PathBuf,
        #[source]
        source: crate::host::CpuListError,
    },
}

/// The scorer `s` asks for: the nowcast, the heuristic, or the LSTM from a file (its
/// sidecar next to it, `.json`) or built in.
pub fn load_scorer(s: &Settings) -> Result<Scorer, AgentError> {
    Ok(match (s.scorer, &s.model) {
        (ScorerKind::Nowcast | ScorerKind::Heuristic, Some(m)) => {
            return Err(AgentError::ModelWithoutLstm(m.clone()))
        }
        (ScorerKind::Nowcast, None) => Scorer::Nowcast {
            smoothing: s.config.score.smoothing,
        },
        (ScorerKind::Heuristic, None) => HeuristicScorer::new().into(),
        (ScorerKind::Lstm, Some(onnx)) => LstmScorer::load(onnx, &onnx.with_extension("json"))
            .map_err(|source| AgentError::Model {
                path: onnx.clone(),
                source,
            })?
            .into(),
        (ScorerKind::Lstm, None) => LstmScorer::builtin()
            .map_err(AgentError::BuiltinModel)?
            .into(),
    })
}

/// Checks privileges, loads the eBPF programs and registers the VMs present now.
pub fn start_loop(s: &Settings) -> Result<TickLoop<EbpfProbes>, AgentError> {
    preflight::check_host()?;
    let probes = EbpfProbes::load(ProbeSet::default())?;
    tracing::info!(
        "eBPF programs attached (task_struct.pid at {}, __state at {})",
        probes.offsets.task_pid,
        probes.offsets.task_state
    );
    let collector = Collector::new(
        probes,
        CollectorOptions {
            host: s.host.clone(),
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
        outputs.metrics = Some((
            path.clone(),
            MetricsExporter::new().with_tick_budget(s.interval),
        ));
    }
    // The LLC collector reports itself unavailable (logged once) on hosts without a PMU.
    Ok(TickLoop::start(collector, discover, outputs)?)
}

/// The decide-enforce-bill half of the agent: journal, ledger, run number, policy,
/// balloon probe. What a crashed run left is not recovered yet ([`Mitigation::recover`]).
pub fn build_mitigation(s: &Settings, host_cpus: Vec<u32>) -> Result<Mitigation, AgentError> {
    let mut enforcer = Enforcer::open(
        EnforcerOptions {
            journal: s.journal.clone(),
            dry_run: s.dry_run,
            balloon_floor_bytes: Some(s.config.policy.balloon_floor_mib << 20),
            owes_ledger: s.ledger.is_some(),
            ..EnforcerOptions::default()
        },
        s.mounts.clone(),
    )
    .map_err(|source| AgentError::Enforcer {
        path: s.journal.clone(),
        source,
    })?;
    let mut billing = match &s.ledger {
        Some(dir) => {
            let mut cfg = s.config.billing.clone();
            cfg.ledger_dir = dir.clone();
            let mut b =
                Billing::open(cfg, &s.host, s.dry_run).map_err(|source| AgentError::Ledger {
                    path: dir.clone(),
                    source,
                })?;
            b.set_tick_ms(u64::try_from(s.interval.as_millis()).unwrap_or(u64::MAX));
            Some(b)
        }
        None => None,
    };
    // Action ids are `<host>-<run>-<tick>-<seq>`: the run is above every run the
    // journal and the ledger have seen, so no id is ever issued twice.
    let ledger_run = match (billing.as_mut(), &s.ledger) {
        (Some(b), Some(dir)) => b.max_run(now_ms()).map_err(|source| AgentError::Ledger {
            path: dir.clone(),
            source,
        })?,
        _ => 0,
    };
    let run = enforcer
        .start_run(&s.host, ledger_run + 1)
        .map_err(|source| AgentError::Run {
            path: s.journal.clone(),
            source,
        })?;
    let mut policy_cfg = s.config.policy.clone();
    policy_cfg.dry_run = s.dry_run;
    let policy = Policy::new(policy_cfg, format!("{}-{run}", s.host))?;
    tracing::info!("run {run}: action ids are {}-{run}-<tick>-<seq>", s.host);
    let balloon_rung = policy.config().ladder().contains(&Rung::Balloon);
    let mut mitigation = Mitigation::new(policy, enforcer, host_cpus);
    if balloon_rung {
        mitigation = mitigation.with_balloon_probe(BalloonProbe::new(
            Duration::from_millis(200),
            DEFAULT_MIN_INTERVAL,
        ));
    }
    if let Some(b) = billing.take() {
        mitigation = mitigation.with_billing(b);
    }
    Ok(mitigation)
}

/// The host's online CPUs (`/sys/devices/system/cpu/online`).
pub fn online_cpus() -> Result<Vec<u32>, AgentError> {
    let path = Path::new("/sys/devices/system/cpu/online");
    let text = std::fs::read_to_string(path).map_err(|source| AgentError::OnlineCpus {
        path: path.to_path_buf(),
        source,
    })?;
    let cpus: CpuList = text.parse().map_err(|source| AgentError::OnlineCpusText {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(cpus.to_vec())
}

/// The whole agent: the tick loop with scoring and mitigation.
pub struct Agent {
    lp: TickLoop<EbpfProbes>,
    interval: Duration,
}

impl Agent {
    /// Opens the journal and the ledger, takes a run number, bills and puts back what
    /// a crashed run left, then attaches the probes and discovers the VMs. Nothing is
    /// decided until [`Agent::run`].
    pub fn build(s: &Settings) -> Result<Self, AgentError> {
        let scorer = load_scorer(s)?;
        tracing::info!("scorer: {}", scorer.describe());
        let scoring = Scoring::new(scorer, s.interval, s.every)?;
        let host_cpus = online_cpus()?;
        let forecasting = if s.config.forecast.enabled {
            let f = &s.config.forecast;
            tracing::info!(
                "forecasting demand: {} steps, {} days, acting {} ahead; state in {}",
                humantime::format_duration(f.step),
                humantime::format_duration(f.day),
                humantime::format_duration(f.horizon),
                f.state_dir.display()
            );
            Some(Forecasting::open(f, host_cpus.clone())?)
        } else {
            None
        };
        let cpu_count = host_cpus.len();
        let mut mitigation = build_mitigation(s, host_cpus)?;
        if forecasting.is_some() {
            mitigation = mitigation.with_forecast_outcomes();
        }
        // A crashed run's changes: billed, then put back, before anything new is decided.
        let history = mitigation.history();
        let leftover = mitigation.recover();
        if !leftover.is_empty() {
            tracing::info!(
                "restored {} changes a previous run left in effect",
                leftover.len()
            );
        }
        let mut lp = start_loop(s)?
            .with_scoring(scoring)
            .with_mitigation(mitigation);
        if let Some(f) = forecasting {
            lp = lp.with_forecasting(f);
        }
        if let Some(url) = &s.config.fleet.controller {
            // The ledger as billing writes it (nothing in a dry run).
            let ledger = s.ledger.clone().filter(|_| !s.dry_run);
            tracing::info!(
                "reporting to the controller at {url}; ledger upload {}",
                ledger
                    .as_ref()
                    .map_or("off".to_owned(), |d| d.display().to_string())
            );
            lp = lp.with_fleet(
                crate::fleet::FleetLink::start(&s.config.fleet, ledger)?,
                cpu_count,
                s.config.fleet.rollup_window,
            );
            lp.report_journal(&history, &leftover);
        }
        tracing::info!(
            "agent: tick {}, scoring every {}, journal {}, ledger {}{}",
            humantime::format_duration(s.interval),
            humantime::format_duration(s.every),
            s.journal.display(),
            match (&s.ledger, s.dry_run) {
                (None, _) => "off".to_owned(),
                (Some(_), true) => "not written (dry run)".to_owned(),
                (Some(d), false) => d.display().to_string(),
            },
            if s.dry_run { ", dry run" } else { "" }
        );
        Ok(Self {
            lp,
            interval: s.interval,
        })
    }

    /// Ticks until `duration` has passed or SIGINT/SIGTERM arrives; `on_tick` sees
    /// every report. Call [`Agent::shutdown`] afterwards, whatever this returns.
    pub async fn run(
        &mut self,
        duration: Option<Duration>,
        on_tick: impl FnMut(&TickReport),
    ) -> Result<(), TickError> {
        super::run(&mut self.lp, self.interval, duration, on_tick).await
    }

    /// Puts back (and bills) every change this agent made: the host gets its values
    /// back whatever ended the run. One outcome per action restored.
    pub fn shutdown(&mut self) -> Vec<Outcome> {
        let (history, restored) = match self.lp.mitigation_mut() {
            Some(m) => (m.history(), m.restore_all()),
            None => Default::default(),
        };
        self.lp.report_journal(&history, &restored);
        // After the last billing: the controller link gets the final lines.
        self.lp.save_state();
        let failed = restored
            .iter()
            .filter(|o| o.result == ActionResult::Failed)
            .count();
        tracing::info!("restored {} changes ({failed} failed)", restored.len());
        restored
    }
}
