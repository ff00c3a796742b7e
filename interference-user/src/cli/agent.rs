//! `interference agent`: the main job. Every tick it collects, scores every VM pair,
//! decides and enforces; on exit (end of --duration, SIGINT, SIGTERM) it puts back every
//! change it made, and at start it first restores what a crashed run left behind.
//! Applied actions and the VMs' allocation are billed into the ledger as it goes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use interference::billing::Billing;
use interference::collect::{Mitigation, Scoring};
use interference::config::ScorerKind;
use interference::enforce::{Enforcer, EnforcerOptions, DEFAULT_JOURNAL};
use interference::policy::{ActionResult, Policy, Rung};
use interference::telemetry::balloon::{BalloonProbe, DEFAULT_MIN_INTERVAL};
use interference::telemetry::cgroup::parse_cpu_list;

use super::collect::{host_name, start_loop, LoopSettings};
use super::score::load_scorer;
use super::{parse_duration, ConfigArgs};

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Collector tick [default: `[collect] interval`, 5s].
    #[arg(short, long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Stop after this long (default: until SIGINT/SIGTERM); every change is put back.
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Decide, log and report, change nothing (overrides `[policy] dry_run`).
    #[arg(long)]
    pub dry_run: bool,
    /// The write-ahead journal of every change.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_JOURNAL)]
    pub journal: PathBuf,
    /// The billing ledger's directory [default: `[billing] ledger_dir`,
    /// /var/lib/interference/ledger].
    #[arg(long, value_name = "DIR")]
    pub ledger: Option<PathBuf>,
    /// Do not bill (overrides `[billing] enabled`).
    #[arg(long, conflicts_with = "ledger")]
    pub no_ledger: bool,
    /// nowcast (default), lstm or heuristic.
    #[arg(long, value_enum)]
    pub scorer: Option<ScorerKind>,
    /// ONNX model instead of the built-in one (sidecar: same path, .json).
    #[arg(long, value_name = "FILE.onnx")]
    pub model: Option<PathBuf>,
    #[arg(long, value_name = "FILE.jsonl")]
    pub samples: Option<PathBuf>,
    #[arg(long, value_name = "FILE.prom")]
    pub metrics_file: Option<PathBuf>,
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let settings = LoopSettings::from_config(
        &args.config,
        args.interval,
        args.samples,
        args.metrics_file,
        None,
    )?;
    let cfg = &settings.config;
    let kind = args.scorer.unwrap_or(cfg.score.scorer);
    let scorer = load_scorer(
        kind,
        args.model.as_deref().or(cfg.score.model.as_deref()),
        cfg.score.smoothing,
    )?;
    tracing::info!("scorer: {}", scorer.describe());
    let every = cfg.score.every(kind, settings.interval);
    let scoring = Scoring::new(scorer, settings.interval, every)?;
    let mut policy_cfg = cfg.policy.clone();
    policy_cfg.dry_run |= args.dry_run;
    let dry_run = policy_cfg.dry_run;
    let floor = policy_cfg.balloon_floor_mib << 20;
    let host = host_name(cfg);
    let mut billing_cfg = cfg.billing.clone();
    if let Some(dir) = args.ledger {
        billing_cfg.ledger_dir = dir;
        billing_cfg.enabled = true;
    }
    let ledger = (billing_cfg.enabled && !args.no_ledger).then(|| billing_cfg.ledger_dir.clone());
    let mut enforcer = Enforcer::open(
        EnforcerOptions {
            journal: args.journal.clone(),
            dry_run,
            balloon_floor_bytes: Some(floor),
            owes_ledger: ledger.is_some(),
            ..EnforcerOptions::default()
        },
        settings.mounts.clone(),
    )
    .with_context(|| format!("opening the journal {}", args.journal.display()))?;
    let mut billing = match &ledger {
        Some(dir) => {
            let mut b = Billing::open(billing_cfg, &host, dry_run)
                .with_context(|| format!("opening the ledger {}", dir.display()))?;
            b.set_tick_ms(u64::try_from(settings.interval.as_millis()).unwrap_or(u64::MAX));
            Some(b)
        }
        None => None,
    };
    // Action ids are `<host>-<run>-<tick>-<seq>`: the run is above every run the
    // journal and the ledger have seen, so no id is ever issued twice.
    let ledger_run = match billing.as_mut() {
        Some(b) => b
            .max_run(interference::clock::now_ms())
            .with_context(|| format!("reading the ledger {}", b.config().ledger_dir.display()))?,
        None => 0,
    };
    let run = enforcer
        .start_run(&host, ledger_run + 1)
        .with_context(|| format!("starting a run in the journal {}", args.journal.display()))?;
    let policy = Policy::new(policy_cfg, format!("{host}-{run}"))?;
    let host_cpus = online_cpus()?;
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
    tracing::info!("run {run}: action ids are {host}-{run}-<tick>-<seq>");
    // A crashed run's changes: billed, then put back, before anything new is decided.
    let leftover = mitigation.recover();
    if !leftover.is_empty() {
        tracing::info!(
            "restored {} changes a previous run left in effect",
            leftover.len()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut lp = start_loop(&settings)?
        .with_scoring(scoring)
        .with_mitigation(mitigation);
    tracing::info!(
        "agent: tick {}, scoring every {}, journal {}, ledger {}{}",
        humantime::format_duration(settings.interval),
        humantime::format_duration(every),
        args.journal.display(),
        match (&ledger, dry_run) {
            (None, _) => "off".to_owned(),
            (Some(_), true) => "not written (dry run)".to_owned(),
            (Some(d), false) => d.display().to_string(),
        },
        if dry_run { ", dry run" } else { "" }
    );
    let result = runtime.block_on(interference::collect::run(
        &mut lp,
        settings.interval,
        args.duration,
        |report| {
            if let Some(r) = &report.scores {
                if let Some(top) = r.contention.first() {
                    tracing::info!(
                        "top pair {}/{}: {:.1} ({} slowed by {})",
                        top.vm,
                        top.neighbor,
                        top.score,
                        top.victim,
                        top.aggressor
                    );
                }
            }
        },
    ));
    // Whatever ended the loop, the host gets its values back.
    if let Some(m) = lp.mitigation_mut() {
        let restored = m.restore_all();
        let failed = restored
            .iter()
            .filter(|o| o.result == ActionResult::Failed)
            .count();
        tracing::info!("restored {} changes ({failed} failed)", restored.len());
    }
    drop(lp);
    result?;
    Ok(())
}

fn online_cpus() -> anyhow::Result<Vec<u32>> {
    let path = Path::new("/sys/devices/system/cpu/online");
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_cpu_list(&text).with_context(|| format!("parsing {}", path.display()))
}
