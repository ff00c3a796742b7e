//! One forecasting round of 100 VMs on one core: tract against onnxruntime.
//!
//! `cargo bench -p interference-forecast --bench forecast` (no root). 100 VMs whose
//! rollups hold real history (the Azure trace's VMs, cycled, at row 6000: the rows
//! `scripts/forecast/bench.py` feeds onnxruntime), pinned to CPU 0, tract
//! single-threaded. Timed: the agent's round (inputs of every VM from its ring,
//! normalisation, one batched tract run, post-processing), and its parts. Then the
//! same run by onnxruntime, single-threaded under `taskset -c 0`
//! (`scripts/forecast/bench.py`, python from $INTERFERENCE_VENV, default
//! /var/cache/interference-model/venv), printed side by side with the ratio.
//! Target: the round at most 5 ms.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, UNIX_EPOCH};

use interference_forecast::inputs::{normalise, raw_inputs, ROW_LEN};
use interference_forecast::replay::trace::TraceReader;
use interference_forecast::{Clock, DemandModel, Forecaster, RollupStore};

const VMS: usize = 100;
const ORIGIN_ROW: i64 = 6000;
const WARMUP: usize = 20;
const ITERATIONS: usize = 400;
const TARGET_MS: f64 = 5.0;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Pins this thread (the only one tract uses) to CPU 0.
fn pin_to_cpu0() -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it for this thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(format!(
            "sched_setaffinity(CPU 0): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// This thread's CPU time: what the round cost, whatever else shares the core.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

/// Wall-clock median and p90, CPU-time median, in ms.
struct Timing {
    median: f64,
    p90: f64,
    cpu: f64,
}

fn time_ms(mut f: impl FnMut()) -> Timing {
    for _ in 0..WARMUP {
        f();
    }
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..ITERATIONS {
        let (t0, c0) = (Instant::now(), thread_cpu_seconds());
        f();
        cpu.push((thread_cpu_seconds() - c0) * 1e3);
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Timing {
        median: quantile(&mut wall, 0.5),
        p90: quantile(&mut wall, 0.9),
        cpu: quantile(&mut cpu, 0.5),
    }
}

/// 100 VMs' rollups from the Azure trace, closed at `ORIGIN_ROW`.
fn store_from_trace(trace: &Path) -> Result<(RollupStore, Vec<String>), String> {
    let clock = Clock::new(
        Duration::from_secs(300),
        Duration::from_secs(86_400),
        UNIX_EPOCH,
        288,
    )
    .map_err(|e| e.to_string())?;
    let mut reader = TraceReader::open(trace).map_err(|e| e.to_string())?;
    let columns = reader.vms().len();
    let names: Vec<String> = (0..VMS).map(|i| format!("vm{i:03}")).collect();
    let mut store = RollupStore::in_memory(&clock);
    while let Some(row) = reader.next_row().map_err(|e| e.to_string())? {
        let step = row.minute / 5;
        if step > ORIGIN_ROW {
            break;
        }
        if step < ORIGIN_ROW - 2100 {
            continue;
        }
        for (i, name) in names.iter().enumerate() {
            if let Some(v) = row.values[i % columns] {
                store.record(name, step, v);
            }
        }
        store.close_step(step);
    }
    Ok((store, names))
}

struct Ort {
    timing: Timing,
    version: String,
    python_features_ms: f64,
}

fn run_onnxruntime(trace: &Path) -> Result<Option<Ort>, String> {
    let venv = std::env::var_os("INTERFERENCE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/interference-model/venv"));
    let python = venv.join("bin/python");
    if !python.exists() {
        eprintln!(
            "forecast bench: {} missing (scripts/model/setup-venv.sh creates it): onnxruntime side skipped",
            python.display()
        );
        return Ok(None);
    }
    let out = Command::new("taskset")
        .args(["-c", "0"])
        .arg(&python)
        .arg(repo().join("scripts/forecast/bench.py"))
        .args([
            "--vms",
            &VMS.to_string(),
            "--iterations",
            &ITERATIONS.to_string(),
        ])
        .arg("--trace")
        .arg(trace)
        .output()
        .map_err(|e| format!("running scripts/forecast/bench.py under taskset: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "bench.py failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("bench.py's JSON line: {e}"))?;
    let num = |k: &str| {
        report[k]
            .as_f64()
            .ok_or_else(|| format!("{k} missing in {report}"))
    };
    Ok(Some(Ort {
        timing: Timing {
            median: num("median_ms")?,
            p90: num("p90_ms")?,
            cpu: num("cpu_median_ms")?,
        },
        version: report["onnxruntime"].as_str().unwrap_or("?").to_string(),
        python_features_ms: num("python_features_ms")?,
    }))
}

fn row(runtime: &str, what: &str, t: &Timing) {
    println!(
        "| {runtime} | {what} | {:.3} | {:.3} | {:.3} |",
        t.median, t.p90, t.cpu
    );
}

fn main() -> Result<(), String> {
    pin_to_cpu0()?;
    let trace = std::env::var_os("INTERFERENCE_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/traces"))
        .join("azure-v1-cpu-avg-5min-train.csv.gz");
    let (store, names) = store_from_trace(&trace)?;
    let model = DemandModel::builtin().map_err(|e| e.to_string())?;
    let sidecar = model.sidecar().clone();
    let mut forecaster = Forecaster::new(DemandModel::builtin().map_err(|e| e.to_string())?);
    let vm_names: Vec<&str> = names.iter().map(String::as_str).collect();

    // The agent's call: the whole round.
    let mut checksum = 0.0;
    let round = time_ms(|| {
        let r = forecaster.round(&store, ORIGIN_ROW, vm_names.iter().copied());
        checksum = r.forecasts.iter().map(|f| f.demand[0]).sum::<f64>();
    });
    let r = forecaster.round(&store, ORIGIN_ROW, vm_names.iter().copied());
    if r.forecasts.len() != VMS || r.run_error.is_some() {
        return Err(format!(
            "the round forecast {} VMs of {VMS} ({:?})",
            r.forecasts.len(),
            r.run_error
        ));
    }
    // Its parts: the inputs (rings to normalised batch), and the model run alone on
    // the batch onnxruntime is also timed on.
    let mut raw = vec![0.0f32; VMS * ROW_LEN];
    let mut normalised = vec![0.0f32; VMS * ROW_LEN];
    let inputs = time_ms(|| {
        for (i, name) in names.iter().enumerate() {
            if let Some(ring) = store.get(name) {
                raw_inputs(ring, ORIGIN_ROW, &mut raw[i * ROW_LEN..(i + 1) * ROW_LEN]);
            }
        }
        normalise(
            &raw,
            &sidecar.normalisation.mean,
            &sidecar.normalisation.std,
            &mut normalised,
        );
    });
    let mut run_ok = true;
    let run = time_ms(|| {
        run_ok &= model.run_normalised(&normalised, VMS).is_ok();
    });
    if !run_ok {
        return Err("a tract run failed".to_string());
    }

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{VMS} VMs (the Azure trace's VMs cycled, origin row {ORIGIN_ROW}), model {} {} ({}), \
         pinned to CPU 0, single-threaded; {WARMUP} warm-up + {ITERATIONS} rounds each",
        sidecar.name, sidecar.version, sidecar.architecture.kind
    );
    println!(
        "load average before onnxruntime: {}; mean 5-min forecast {:.3} %",
        load.split(' ').take(3).collect::<Vec<_>>().join(" "),
        checksum / VMS as f64
    );
    let ort = run_onnxruntime(&trace)?;
    println!();
    println!("| runtime | what | median (ms) | p90 (ms) | CPU median (ms) |");
    println!("|---|---|---|---|---|");
    row(
        "tract 0.23.9",
        "round(): inputs + 1 run + post-processing",
        &round,
    );
    row(
        "tract 0.23.9",
        "inputs of 100 VMs (rings to normalised batch)",
        &inputs,
    );
    row("tract 0.23.9", "1 run of [100, 36, 12]", &run);
    if let Some(ort) = &ort {
        row(
            &format!("onnxruntime {}", ort.version),
            "session.run(): 1 run of [100, 36, 12]",
            &ort.timing,
        );
        println!();
        println!(
            "tract / onnxruntime, median wall (CPU): model run {:.2}x ({:.2}x); tract's whole \
             round {:.2}x ({:.2}x) onnxruntime's run alone",
            run.median / ort.timing.median,
            run.cpu / ort.timing.cpu,
            round.median / ort.timing.median,
            round.cpu / ort.timing.cpu,
        );
        println!(
            "(bench.py's numpy builds the same inputs in {:.1} ms, one cold call)",
            ort.python_features_ms
        );
    }
    let verdict = if round.median <= TARGET_MS {
        "within"
    } else {
        "ABOVE"
    };
    println!(
        "tract round: {:.2} ms median for {VMS} VMs, {verdict} the {TARGET_MS} ms target",
        round.median
    );
    Ok(())
}
