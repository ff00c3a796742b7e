//! The agent: above every stage, it wires them. The tick loop of `interference agent`,
//! `collect`, `top` and `score` (this file): discover VMs, sample them, (re)register
//! them with the kernel side, score the pairs when a scorer is set, decide and enforce
//! when mitigation is on, write the outputs. Kept short on purpose: each step belongs
//! to its stage, this only wires them.
//!
//! | module       | job                                                          |
//! |--------------|--------------------------------------------------------------|
//! | `settings`   | flags and the config file resolved once ([`Settings`])        |
//! | `assemble`   | [`Agent::build`]: the pipeline from settings                 |
//! | `scoring`    | feeding the scorer every tick, a round every score interval |
//! | `forecasting`| demand rollups every tick, forecast pair scores each round   |
//! | `mitigation` | decide, enforce, bill after each round                       |
//! | `refusals`   | VMs the cgroup guard refuses, logged once, not every tick    |
//! | `desired`    | a fleet policy from the controller, applied between ticks    |
//! | `restore`    | bill, then put back, what an agent left ([`restore()`])      |
//! | `replay`     | recorded samples back into ticks                             |

mod assemble;
mod desired;
pub mod forecasting;
mod migrations;
mod mitigation;
mod refusals;
pub mod replay;
mod restore;
mod scoring;
pub mod settings;

pub use assemble::{build_mitigation, load_scorer, online_cpus, start_loop, Agent, AgentError};
pub use forecasting::{Forecasting, ForecastingError};
pub use mitigation::{bill_owed, Mitigation, MitigationReport};
pub use restore::{restore, RestoreReport};
pub use scoring::{ScoreRound, Scoring, ScoringError};
pub use settings::{Overrides, Settings, SettingsError};

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;

use crate::export::jsonl::SampleWriter;
use crate::export::prometheus::{write_atomic, MetricsExporter, TextWriter};
use crate::fleet::report::{ReportInput, Reporter};
use crate::fleet::{FleetLink, HostFacts};
use crate::inventory::Vm;
use crate::policy::{Action, Outcome};
use crate::telemetry::collector::{CollectError, Collector};
use crate::telemetry::kernel::KernelMaps;
use crate::telemetry::VmSample;

#[derive(Debug, Error)]
pub enum TickError {
    #[error("collecting telemetry")]
    Collect(#[from] CollectError),
    #[error("discovering VMs")]
    Inventory(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where each tick's results go.
#[derive(Default)]
pub struct Outputs {
    pub samples: Option<SampleWriter>,
    pub metrics: Option<(PathBuf, MetricsExporter)>,
}

/// What one tick produced.
pub struct TickReport {
    pub samples: Vec<VmSample>,
    pub vms: Vec<Vm>,
    pub duration: Duration,
    /// When a scoring round ran this tick.
    pub scores: Option<ScoreRound>,
    /// What the policy decided and the enforcer did after that round.
    pub mitigation: Option<MitigationReport>,
}

pub type Discover =
    Box<dyn FnMut() -> Result<Vec<Vm>, Box<dyn std::error::Error + Send + Sync>> + Send>;

pub struct TickLoop<K: KernelMaps> {
    collector: Collector<K>,
    discover: Discover,
    outputs: Outputs,
    vms: Vec<Vm>,
    scoring: Option<Scoring>,
    forecasting: Option<Forecasting>,
    mitigation: Option<Mitigation>,
    fleet: Option<Fleet>,
}

/// The controller link and what it needs each tick.
struct Fleet {
    link: FleetLink,
    /// Turns ticks into the items the controller gets besides the ledger.
    reporter: Reporter,
    host_cpus: usize,
    memory_mib: u64,
}

impl<K: KernelMaps> TickLoop<K> {
    /// Discovers and registers the VMs present now, so the first tick has data.
    pub fn start(
        mut collector: Collector<K>,
        mut discover: Discover,
        outputs: Outputs,
    ) -> Result<Self, TickError> {
        let vms = discover().map_err(TickError::Inventory)?;
        collector.track(&vms)?;
        Ok(Self {
            collector,
            discover,
            outputs,
            vms,
            scoring: None,
            forecasting: None,
            mitigation: None,
            fleet: None,
        })
    }

    /// Scores the VM pairs as the ticks go (`interference score`, the agent).
    pub fn with_scoring(mut self, scoring: Scoring) -> Self {
        self.scoring = Some(scoring);
        self
    }

    pub fn scoring(&self) -> Option<&Scoring> {
        self.scoring.as_ref()
    }

    /// Forecasts demand and folds forecast pair scores into every scoring round
    /// (`[forecast] enabled`).
    pub fn with_forecasting(mut self, forecasting: Forecasting) -> Self {
        self.forecasting = Some(forecasting);
        self
    }

    pub fn forecasting(&self) -> Option<&Forecasting> {
        self.forecasting.as_ref()
    }

    /// Reports to a controller (`[fleet]`): the host's capacity, what was done and
    /// each VM's summary every `rollup_window`; the link uploads them and the ledger
    /// on its own thread.
    pub fn with_fleet(
        mut self,
        link: FleetLink,
        host_cpus: usize,
        rollup_window: Duration,
    ) -> Self {
        if let Some(m) = self.mitigation.as_mut() {
            m.set_placer(link.placer());
        }
        self.fleet = Some(Fleet {
            link,
            reporter: Reporter::new(rollup_window.as_millis() as u64),
            host_cpus,
            memory_mib: crate::fleet::facts::memory_mib(),
        });
        self
    }

    /// Saves what must outlive the run (the forecaster's rollups) and lets the
    /// controller link send what is left: at exit, after the last billing.
    pub fn save_state(&mut self) {
        if let Some(f) = self.forecasting.as_mut() {
            f.save();
        }
        if let Some(f) = self.fleet.as_mut() {
            f.link.push(&f.reporter.flush());
            f.link.shutdown();
        }
    }

    /// Tells the controller what the journal holds and what a restore put back (see
    /// `fleet::report::journal_phases`); nothing without `[fleet]`.
    pub fn report_journal(&self, history: &[(Action, Outcome)], restored: &[Outcome]) {
        if let Some(f) = &self.fleet {
            f.link
                .push(&crate::fleet::report::journal_phases(history, restored));
        }
    }

    /// Decides and enforces after every scoring round (`interference agent`).
    pub fn with_mitigation(mut self, mitigation: Mitigation) -> Self {
        self.mitigation = Some(mitigation);
        self
    }

    pub fn mitigation_mut(&mut self) -> Option<&mut Mitigation> {
        self.mitigation.as_mut()
    }

    pub fn collector(&self) -> &Collector<K> {
        &self.collector
    }

    /// One tick. A failed discovery keeps the previous VM list (logged); a failed
    /// output write is logged and retried next tick: telemetry keeps flowing.
    pub fn tick(&mut self) -> Result<TickReport, TickError> {
        let started = Instant::now();
        match (self.discover)() {
            Ok(vms) => self.vms = vms,
            Err(e) => tracing::warn!("discovering VMs failed, keeping the previous list: {e}"),
        }
        // A fleet policy from the controller applies before this tick decides.
        if let Some(f) = &self.fleet {
            if let Some(prepared) = f.link.take_desired() {
                desired::apply(
                    prepared,
                    self.mitigation.as_mut(),
                    self.scoring.as_mut(),
                    &f.link,
                );
            }
        }
        let samples = self.collector.sample(&self.vms)?;
        self.collector.track(&self.vms)?;
        if let Some(w) = &mut self.outputs.samples {
            if let Err(e) = w.write_all(&samples) {
                tracing::warn!("{e}");
            }
        }
        if let Some(f) = self.forecasting.as_mut() {
            f.tick(&self.vms, &samples, SystemTime::now());
        }
        let mut scores = match self.scoring.as_mut().and_then(|s| s.push(&samples)) {
            Some(Ok(round)) => Some(round),
            Some(Err(e)) => {
                tracing::warn!("scoring failed, no scores this round: {e}");
                None
            }
            None => None,
        };
        if let (Some(f), Some(round)) = (self.forecasting.as_mut(), scores.as_mut()) {
            round.forecasts = f.attach(round, &self.vms, &samples);
        }
        let mitigation = self
            .mitigation
            .as_mut()
            .and_then(|m| m.tick(&self.vms, &samples, scores.as_ref()));
        if let Some(f) = self.fleet.as_mut() {
            // A QEMU waiting for an incoming migration is the room a reservation holds
            // (the controller counts it): it does not make the host look full.
            let here = self
                .vms
                .iter()
                .filter(|v| !self.mitigation.as_ref().is_some_and(|m| m.is_arriving(v)));
            let capacity = crate::fleet::facts::capacity(here, f.host_cpus, f.memory_mib);
            f.link.learn_uuids(&self.vms);
            f.link.update(HostFacts {
                capacity,
                contention: scores
                    .as_ref()
                    .and_then(|r| r.contention.first())
                    .map_or(0.0, |c| c.score),
            });
            let (active_sha, shadow_sha) = self
                .scoring
                .as_ref()
                .map_or((None, None), Scoring::model_shas);
            let items = f.reporter.tick(&ReportInput {
                now_ms: crate::clock::now_ms(),
                samples: &samples,
                pairs: scores.as_ref().map_or(&[][..], |r| &r.contention[..]),
                off_threshold: self.mitigation.as_ref().map(Mitigation::off_threshold),
                actions: mitigation.as_ref().map_or(&[][..], |m| &m.actions[..]),
                capacity,
                model_sha: active_sha,
                shadow: shadow_sha.zip(scores.as_ref().map(|r| &r.shadow[..])),
                forecast_errors: self.forecasting.as_ref().map(Forecasting::step_errors),
            });
            f.link.push(&items);
        }
        let duration = started.elapsed();
        if let Some((path, exporter)) = &mut self.outputs.metrics {
            exporter.update(&samples, &self.collector.status().as_pairs(), duration);
            let mut w = TextWriter::new();
            exporter.render_into(&mut w);
            crate::export::prometheus::render_process(&mut w);
            if let Some(s) = &self.scoring {
                s.metrics().render_into(&mut w);
            }
            if let Some(f) = &self.forecasting {
                crate::export::prometheus::render_forecast(
                    &mut w,
                    f.metrics(),
                    scores.as_ref().map_or(&[][..], |r| &r.forecasts[..]),
                );
            }
            if let Some(m) = &self.mitigation {
                m.render_into(&mut w);
            }
            if let Some(f) = &self.fleet {
                crate::fleet::render_status(&mut w, &f.link.status());
            }
            if let Err(e) = write_atomic(path, w.finish().as_bytes()) {
                tracing::warn!("{e}");
            }
        }
        Ok(TickReport {
            samples,
            vms: self.vms.clone(),
            duration,
            scores,
            mitigation,
        })
    }
}

/// Runs ticks every `interval` until `duration` has passed or SIGINT/SIGTERM arrives.
/// `on_tick` sees every report (the `top` view, progress logs).
pub async fn run<K: KernelMaps>(
    lp: &mut TickLoop<K>,
    interval: Duration,
    duration: Option<Duration>,
    mut on_tick: impl FnMut(&TickReport),
) -> Result<(), TickError> {
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval_at(started + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        let deadline = duration.map(|d| started + d);
        tokio::select! {
            _ = ticker.tick() => {
                let report = lp.tick()?;
                on_tick(&report);
                if let Some(d) = deadline {
                    if tokio::time::Instant::now() + interval / 2 >= d {
                        return Ok(());
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("SIGINT: stopping");
                return Ok(());
            }
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {
                tracing::info!("SIGTERM: stopping");
                return Ok(());
            }
        }
    }
}
