//! `interference forecast --replay FILE.csv[.gz]`: a utilisation trace through the
//! forecaster the agent runs (same rollups, same time features, the trace's own clock),
//! one JSON line per VM per point and horizon. The accuracy tables of
//! models/README.md are computed from this output, so anyone can check them on traces
//! of their own.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use interference_forecast::{horizon, replay_file, DemandModel, Forecaster};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `{"vm", "minute", "horizon_min", "forecast"}` per line.
    Jsonl,
}

#[derive(Debug, clap::Args)]
pub struct ForecastArgs {
    /// The trace: a `minute` column, then one column per VM (utilisation in percent of
    /// its cores), as in the Azure traces; gzip when the name ends in .gz.
    #[arg(long, value_name = "FILE.csv[.gz]")]
    pub replay: PathBuf,
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
    let summary = match replay_file(&args.replay, &horizons, &mut forecaster, &mut out) {
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
