//! `interference score`: the collector plus the Contention Score of every VM pair,
//! printed each scoring round as a table or JSONL.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use interference::agent::replay::{read_ticks, recorded_interval};
use interference::agent::{load_scorer, start_loop, Forecasting, Overrides, ScoreRound, Scoring};
use interference::config::ScorerKind;
use interference::predict::WITHOUT_PMU;
use interference::telemetry::VmSample;
use interference_forecast::pairs::PairForecast;

use super::args::{LoopArgs, ScorerArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table per round, highest score first.
    Table,
    /// One JSON object per pair per round.
    Jsonl,
}

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub tick: LoopArgs,
    #[command(flatten)]
    pub scorer: ScorerArgs,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Leave pairs below this score out of the output.
    #[arg(long, default_value_t = 0.0, value_name = "SCORE")]
    pub min_score: f32,
    /// Score a recorded samples file (`collect --samples`, the dataset recorder)
    /// instead of this host, with the same code. JSONL output is then one line per
    /// ordered pair of the VMs of each tick: {"timestamp_ms", "victim", "aggressor",
    /// "score", ...}, the external-scorer format of scripts/model/evaluate.py.
    /// The collector interval is the recording's unless --interval says. With
    /// `[forecast] enabled` in --config the recording's clock drives the forecaster and
    /// each line adds "now" (measured) and "forecast"; "score" is then their larger.
    #[arg(
        long,
        value_name = "SAMPLES.jsonl",
        conflicts_with_all = ["samples", "metrics_file", "duration"]
    )]
    pub replay: Option<PathBuf>,
}

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    if let Some(path) = args.replay.clone() {
        return replay(args, &path);
    }
    let settings = args
        .tick
        .config
        .settings(args.scorer.add_to(args.tick.overrides()))?;
    // The model is loaded (and refused if it does not match) before any probe is attached.
    let scorer = load_scorer(&settings)?;
    tracing::info!("scorer: {}", scorer.describe());
    let scoring = Scoring::new(scorer, settings.interval, settings.every)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut lp = start_loop(&settings)?.with_scoring(scoring);
    if settings.config.forecast.enabled {
        let cpus = interference::agent::online_cpus()?;
        lp = lp.with_forecasting(Forecasting::open(&settings.config.forecast, cpus)?);
    }
    let mut out = std::io::stdout().lock();
    let mut failed: Option<std::io::Error> = None;
    let format = args.format;
    let min = args.min_score;
    runtime.block_on(interference::agent::run(
        &mut lp,
        settings.interval,
        args.tick.duration,
        |report| {
            let Some(round) = &report.scores else {
                return;
            };
            if failed.is_some() {
                return;
            }
            let written = match format {
                Format::Table => write_table(&mut out, round, min),
                Format::Jsonl => write_jsonl(&mut out, round, min),
            };
            if let Err(e) = written.and_then(|()| out.flush()) {
                failed = Some(e);
            }
        },
    ))?;
    lp.save_state();
    match failed {
        // `interference score | head` is a normal way to stop.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Some(e) => Err(e).context("writing scores to stdout"),
        None => Ok(()),
    }
}

/// `--replay`: the recording's ticks through the same scoring, printed as it goes.
fn replay(args: ScoreArgs, path: &std::path::Path) -> anyhow::Result<()> {
    let ticks = read_ticks(path).with_context(|| format!("replaying {}", path.display()))?;
    let interval = match args.tick.interval {
        Some(i) => i,
        None => recorded_interval(&ticks)
            .with_context(|| format!("{} holds no samples to replay", path.display()))?,
    };
    let settings = args.tick.config.settings(args.scorer.add_to(Overrides {
        interval: Some(interval),
        ..Overrides::default()
    }))?;
    let scorer = load_scorer(&settings)?;
    tracing::info!(
        "replaying {} ticks of {} at {} with {}",
        ticks.len(),
        path.display(),
        humantime::format_duration(interval),
        scorer.describe()
    );
    let mut scoring = Scoring::new(scorer, interval, settings.every)?;
    // With `[forecast] enabled`, the recording's own clock drives the forecaster: its
    // steps end as the recorded ticks pass them, exactly as in the agent.
    let mut forecasting = if settings.config.forecast.enabled {
        let cpus = interference::agent::online_cpus()?;
        Some(Forecasting::open(&settings.config.forecast, cpus)?)
    } else {
        None
    };
    let mut out = std::io::stdout().lock();
    let written: std::io::Result<()> = (|| {
        for t in &ticks {
            if let Some(f) = forecasting.as_mut() {
                let at = t.iter().map(|s| s.timestamp_ms).max().unwrap_or(0);
                f.tick(&[], t, UNIX_EPOCH + Duration::from_millis(at));
            }
            let Some(round) = scoring.push(t) else {
                continue;
            };
            let mut round = match round {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("scoring failed, no scores this round: {e}");
                    continue;
                }
            };
            let forecasts = match forecasting.as_mut() {
                Some(f) => f.attach(&mut round, &[], t),
                None => Vec::new(),
            };
            match args.format {
                Format::Table => write_table(&mut out, &round, args.min_score)?,
                Format::Jsonl => write_replay_jsonl(
                    &mut out,
                    &round,
                    t,
                    &forecasts,
                    settings.scorer,
                    args.min_score,
                )?,
            }
        }
        out.flush()
    })();
    if let Some(f) = forecasting.as_mut() {
        f.save();
    }
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing scores to stdout"),
    }
}

/// Every ordered pair of the tick's VMs, 0 where nobody took anything; with forecasts, `score` is what the policy acts on, the
/// larger of the measured score (`now`) and the pair's `forecast`.
fn write_replay_jsonl(
    out: &mut impl std::io::Write,
    r: &ScoreRound,
    tick: &[VmSample],
    forecasts: &[PairForecast],
    kind: ScorerKind,
    min: f32,
) -> std::io::Result<()> {
    for v in tick {
        for a in tick.iter().filter(|a| a.vm != v.vm) {
            let d = r
                .directed
                .iter()
                .find(|d| d.victim == v.vm && d.aggressor == a.vm);
            let now = d.map_or(0.0, |d| d.slowdown);
            let forecast = forecasts
                .iter()
                .find(|f| f.victim == v.vm && f.aggressor == a.vm)
                .map(|f| f.score as f32);
            let score = forecast.map_or(now, |f| now.max(f));
            if score < min {
                continue;
            }
            let n = r
                .nowcast
                .iter()
                .find(|n| *n.victim == *v.vm && *n.aggressor == *a.vm);
            let mut line = serde_json::json!({
                "timestamp_ms": r.timestamp_ms,
                "victim": v.vm,
                "aggressor": a.vm,
                "score": score,
            });
            // The nowcast sees the scheduler only: it names what it cannot see (the
            // victim's hardware counters were not read).
            if kind == ScorerKind::Nowcast {
                line["tick"] = n.map_or(0.0, |n| n.tick).into();
                if v.llc.is_none() {
                    line["unobservable"] = WITHOUT_PMU.to_vec().into();
                }
            }
            if !forecasts.is_empty() {
                line["now"] = now.into();
                line["forecast"] = forecast.unwrap_or(0.0).into();
            }
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

fn clock(timestamp_ms: u64) -> String {
    let s = timestamp_ms / 1000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

fn write_table(out: &mut impl std::io::Write, r: &ScoreRound, min: f32) -> std::io::Result<()> {
    writeln!(
        out,
        "{} UTC  {} pairs scored in {:.1} ms{}",
        clock(r.timestamp_ms),
        r.contention.len(),
        r.duration.as_secs_f64() * 1e3,
        if r.warming_up.is_empty() {
            String::new()
        } else {
            format!("; window filling: {}", r.warming_up.join(", "))
        }
    )?;
    if r.contention.is_empty() {
        return writeln!(out);
    }
    let width = r
        .contention
        .iter()
        .flat_map(|c| [c.vm.len(), c.neighbor.len()])
        .max()
        .unwrap_or(2)
        .max(9);
    writeln!(
        out,
        "{:<width$}  {:<width$}  {:>5}  {:<width$}  {:<width$}  {:>7}  UNOBSERVABLE",
        "VM", "NEIGHBOR", "SCORE", "VICTIM", "AGGRESSOR", "REVERSE"
    )?;
    for c in r.contention.iter().filter(|c| c.score >= min) {
        let reverse = r
            .directed
            .iter()
            .find(|d| d.victim == c.aggressor && d.aggressor == c.victim)
            .map(|d| d.slowdown)
            .unwrap_or(f32::NAN);
        let unobservable = if c.unobservable.is_empty() {
            "-".to_owned()
        } else {
            c.unobservable.join(",")
        };
        writeln!(
            out,
            "{:<width$}  {:<width$}  {:>5.1}  {:<width$}  {:<width$}  {:>7.1}  {unobservable}",
            c.vm, c.neighbor, c.score, c.victim, c.aggressor, reverse
        )?;
    }
    writeln!(out)
}

fn write_jsonl(out: &mut impl std::io::Write, r: &ScoreRound, min: f32) -> std::io::Result<()> {
    for c in r.contention.iter().filter(|c| c.score >= min) {
        let reverse = r
            .directed
            .iter()
            .find(|d| d.victim == c.aggressor && d.aggressor == c.victim)
            .map(|d| d.slowdown);
        let line = serde_json::json!({
            "timestamp_ms": r.timestamp_ms,
            "vm": c.vm,
            "neighbor": c.neighbor,
            "score": c.score,
            "victim": c.victim,
            "aggressor": c.aggressor,
            "reverse_slowdown": reverse,
        });
        let mut line = line;
        if !c.unobservable.is_empty() {
            line["unobservable"] = c.unobservable.clone().into();
        }
        // With `[forecast] enabled`: the measured and forecast parts of `score`.
        if let Some(f) = &c.forecast {
            line["now"] = f.now.into();
            line["forecast"] = f.forecast.into();
            line["horizon_s"] = (f.horizon_ms as f64 / 1000.0).into();
            line["realised"] = f.realised.into();
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}
