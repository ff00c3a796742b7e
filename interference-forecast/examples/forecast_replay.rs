//! `interference forecast --replay` until the agent's CLI wires it: replays a trace
//! through the built-in model (or `--model SIDECAR`) and prints the JSONL lines.
//!
//!     cargo run --release -p interference-forecast --example forecast_replay -- \
//!         FILE.csv[.gz] [--horizon 5m,1h] [--model models/demand-forecast.json] > out.jsonl

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use interference_forecast::{horizon, replay_file, DemandModel, Forecaster};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut trace, mut horizons, mut model) = (None, "5m,1h".to_string(), None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--horizon" => horizons = args.next().unwrap_or_default(),
            "--model" => model = args.next().map(PathBuf::from),
            "--format" => {
                if args.next().as_deref() != Some("jsonl") {
                    eprintln!("--format: only jsonl");
                    return ExitCode::from(2);
                }
            }
            _ if trace.is_none() => trace = Some(PathBuf::from(a)),
            _ => {
                eprintln!(
                    "usage: forecast_replay FILE.csv[.gz] [--horizon 5m,1h] [--model SIDECAR]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let Some(trace) = trace else {
        eprintln!("usage: forecast_replay FILE.csv[.gz] [--horizon 5m,1h] [--model SIDECAR]");
        return ExitCode::from(2);
    };
    let horizons = match horizon::parse_list(&horizons) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let loaded = match &model {
        Some(p) => DemandModel::open(p),
        None => DemandModel::builtin(),
    };
    let model = match loaded {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut forecaster = Forecaster::new(model);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let started = std::time::Instant::now();
    match replay_file(&trace, &horizons, &mut forecaster, &mut out) {
        Ok(s) => {
            let _ = out.flush();
            eprintln!(
                "{} forecasts ({} rows, {} VMs, step {} min) in {:.1} s",
                s.lines,
                s.rows,
                s.vms,
                s.step_minutes,
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
