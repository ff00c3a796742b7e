//! `interference forecast`: the demand forecaster outside the agent.
//!
//! - `--replay FILE.csv[.gz]`: a utilisation trace through the forecaster the agent runs
//!   (same rollups, same time features, the trace's own clock), one JSON line per VM per
//!   point and horizon. The accuracy tables of models/README.md are computed from this
//!   output, so anyone can check them on traces of their own.
//! - `--import FILE.csv[.gz]`: the same kind of trace as history in the agent's rollups
//!   (`[forecast] state_dir`), one row per step of the agent's clock, the last row on
//!   the last step ended by `--until`, so that a new agent forecasts from yesterday and
//!   last week at once. Run it while the agent is stopped: a running agent writes its
//!   own rollups over the file.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use interference_forecast::{
    contract::DAY_STEPS, horizon, import_trace, replay::trace::TraceReader, replay_file,
    DemandModel, Forecaster, RollupStore,
};

use super::args::ConfigArgs;
use interference::host::Mounts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `{"vm", "minute", "horizon_min", "forecast"}` per line.
    Jsonl,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["replay", "import"])))]
pub struct ForecastArgs {
    /// The trace to replay: a `minute` column, then one column per VM (utilisation in
    /// percent of its cores), as in the Azure traces; gzip when it starts with gzip's
    /// magic bytes.
    #[arg(long, value_name = "FILE.csv[.gz]")]
    pub replay: Option<PathBuf>,
    /// A trace in the same format to import as history into the agent's rollups
    /// (`[forecast]` of --config: step, day, origin offset, state_dir); the column names
    /// are the VM names.
    #[arg(long, value_name = "FILE.csv[.gz]", conflicts_with_all = ["horizon", "format", "model"])]
    pub import: Option<PathBuf>,
    /// With --import: the last row becomes the last step ended at this instant (`now`,
    /// Unix seconds, or RFC 3339 like 2026-12-03T16:00:00Z); default: now. A later instant is
    /// allowed: the agent then drops its ticks until it has passed.
    #[arg(long, value_name = "TIME", requires = "import")]
    pub until: Option<String>,
    /// With --import: the agent's configuration, whose `[forecast]` gives the clock and
    /// the state_dir [default: the embedded defaults].
    #[arg(short, long, value_name = "FILE", requires = "import")]
    pub config: Option<PathBuf>,
    /// Horizons to print, comma-separated (whole steps of the trace, at most 12).
    #[arg(long, default_value = "5m,1h", value_name = "LIST")]
    pub horizon: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// A demand model's sidecar (its ONNX file beside it); default: the built-in model.
    #[arg(long, value_name = "SIDECAR.json")]
    pub model: Option<PathBuf>,
}

pub fn run(args: ForecastArgs) -> anyhow::Result<()> {
    match (&args.replay, &args.import) {
        (Some(replay), None) => run_replay(replay.clone(), &args),
        (None, Some(import)) => run_import(import.clone(), &args),
        _ => bail!("give one of --replay and --import"),
    }
}

fn run_replay(replay: PathBuf, args: &ForecastArgs) -> anyhow::Result<()> {
    let horizons = horizon::parse_list(&args.horizon)
        .with_context(|| format!("--horizon {}", args.horizon))?;
    let model = match &args.model {
        Some(p) => DemandModel::open(p).with_context(|| format!("--model {}", p.display()))?,
        None => DemandModel::builtin().context("loading the built-in demand model")?,
    };
    let mut forecaster = Forecaster::new(model);
    let started = Instant::now();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = match replay_file(&replay, &horizons, &mut forecaster, &mut out) {
        Ok(s) => s,
        // `| head` closed the pipe: what was asked for has been printed.
        Err(e) if e.is_broken_pipe() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        r => r.context("writing the forecasts")?,
    }
    tracing::info!(
        "{} forecasts ({} rows, {} VMs, step {} min) in {:.1} s",
        summary.lines,
        summary.rows,
        summary.vms,
        summary.step_minutes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn run_import(trace: PathBuf, args: &ForecastArgs) -> anyhow::Result<()> {
    let mounts =
        Mounts::read(std::path::Path::new("/proc")).context("reading the cgroup mounts")?;
    let config = ConfigArgs {
        config: args.config.clone(),
    }
    .load(&mounts)?
    .forecast;
    let clock = config.clock(DAY_STEPS).context("[forecast] step and day")?;
    let until = match &args.until {
        Some(text) => parse_instant(text).with_context(|| format!("--until {text}"))?,
        None => SystemTime::now(),
    };
    // The step that contains `until` has not ended at `until` (unless `until` is its
    // very start, where the previous one just ended).
    let last_step = clock.step_of(until) - 1;
    let reader = TraceReader::open(&trace)?;
    let (mut store, problems) = RollupStore::open(&config.state_dir, &clock);
    if !problems.is_empty() {
        tracing::warn!(
            "{} problem(s) with the existing rollups (see above): their VMs start from the import",
            problems.len()
        );
    }
    let summary = import_trace(reader, &mut store, last_step)?;
    store.save().with_context(|| {
        format!(
            "saving the rollups in {} ([forecast] state_dir)",
            config.state_dir.display()
        )
    })?;
    let week = clock.week_steps() as i64;
    let trace_phase = (summary.last_minute / summary.step_minutes).rem_euclid(week);
    let host_phase = last_step.rem_euclid(week);
    tracing::info!(
        "imported {} VM(s) from {} ({} rows, {} kept, {}-minute steps) into {}: the last row \
         (minute {}) is step {} ({}), {} replaced, without values: {:?}",
        summary.imported.len(),
        trace.display(),
        summary.rows,
        summary.rows_kept,
        summary.step_minutes,
        store
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        summary.last_minute,
        last_step,
        humantime::format_rfc3339_seconds(clock.step_start(last_step)),
        summary.replaced.len(),
        summary.without_values
    );
    if trace_phase != host_phase {
        // The host is `ahead` steps later in its week than the trace; an origin later by
        // one step makes every instant one step earlier.
        let diff = (host_phase - trace_phase).rem_euclid(week);
        let ahead = if diff > week / 2 { diff - week } else { diff };
        let step_s = clock.step().as_secs_f64();
        tracing::warn!(
            "the trace's last row is step {trace_phase} of its week, the host clock's step \
             {host_phase}: time of day and week differ by {} steps; to keep the trace's \
             rhythm set origin_offset_seconds = {} (now {})",
            ahead.abs(),
            config.origin_offset_seconds as f64 + ahead as f64 * step_s,
            config.origin_offset_seconds
        );
    }
    if !config.enabled {
        tracing::warn!("[forecast] is not enabled in this config: the agent will not read the rollups until it is");
    }
    Ok(())
}

/// `now`, Unix seconds (fractions allowed) or RFC 3339.
fn parse_instant(text: &str) -> anyhow::Result<SystemTime> {
    if text == "now" {
        return Ok(SystemTime::now());
    }
    if let Ok(seconds) = text.parse::<f64>() {
        if !(seconds.is_finite() && seconds >= 0.0) {
            bail!("{seconds} is not an instant after 1970");
        }
        return Ok(UNIX_EPOCH + Duration::from_secs_f64(seconds));
    }
    humantime::parse_rfc3339_weak(text)
        .map_err(|e| anyhow::anyhow!("not Unix seconds nor RFC 3339 ({e})"))
}
