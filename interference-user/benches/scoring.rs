//! Scoring every pair of a full host in one batched run: tract against onnxruntime.
//!
//! `cargo bench -p interference-user --bench scoring` (no root). 100 VMs make 4950
//! unordered pairs; the benchmark scores 4950 realistic raw windows with the shipped
//! model (models/contention-lstm.*) or, until it exists, the test fixture, pinned to
//! CPU 0 with tract single-threaded. Then it runs scripts/model/bench_onnxruntime.py on
//! the same normalised batch with onnxruntime single-threaded under `taskset -c 0`
//! (python from $INTERFERENCE_VENV, default /var/cache/interference-model/venv), checks
//! that both give the same outputs within 1e-4, and prints both side by side.
//! Target: tract at most 50 ms for the 4950 pairs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use interference::predict::{LstmScorer, PairScorer, DEFAULT_MAX_BATCH};

const PAIRS: usize = 4950;
/// Enough for glibc's dynamic mmap and trim thresholds to settle on the run's sizes.
const WARMUP: usize = 5;
const ITERATIONS: usize = 30;
const TOLERANCE: f32 = 1e-4;
const TARGET_MS: f64 = 50.0;

/// A small deterministic generator (PCG-style LCG): the same windows on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Raw windows shaped like the agent's features (docs/dataset.md): ratios in 0..2 that
/// drift from tick to tick, logs in 0..12, one-hot workload classes, a shared-CPU
/// fraction, and unit-circle time features constant over the window.
fn realistic_windows(names: &[&str], n: usize, t: usize) -> Vec<f32> {
    let f = names.len();
    let mut rng = Rng(20260601);
    let mut raw = vec![0.0f32; n * t * f];
    for w in 0..n {
        let (day, week) = (
            rng.next() * std::f32::consts::TAU,
            rng.next() * std::f32::consts::TAU,
        );
        let classes = [(rng.next() * 4.0) as usize, (rng.next() * 4.0) as usize];
        let shared = [0.0, 0.5, 1.0][(rng.next() * 3.0) as usize % 3];
        let level: Vec<f32> = (0..f).map(|_| rng.next() * 2.0).collect();
        for tick in 0..t {
            let row = &mut raw[(w * t + tick) * f..][..f];
            for (i, name) in names.iter().enumerate() {
                let base = name
                    .strip_prefix("v_")
                    .or_else(|| name.strip_prefix("a_"))
                    .unwrap_or(name);
                let side = usize::from(name.starts_with("a_"));
                row[i] = match base {
                    "class_cpu" => f32::from(classes[side] == 0),
                    "class_memory" => f32::from(classes[side] == 1),
                    "class_io" => f32::from(classes[side] == 2),
                    "class_other" => f32::from(classes[side] == 3),
                    "pair_shared_cpus" => shared,
                    "time_day_sin" => day.sin(),
                    "time_day_cos" => day.cos(),
                    "time_week_sin" => week.sin(),
                    "time_week_cos" => week.cos(),
                    b if b.ends_with("_log") => level[i] * 6.0 * (0.8 + 0.4 * rng.next()),
                    _ => level[i] * (0.8 + 0.4 * rng.next()) / 2.0,
                };
            }
        }
    }
    raw
}

/// The shipped model's ONNX and sidecar if they are there, else the test fixture's;
/// says which.
fn model_paths() -> (PathBuf, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = dir.join("../models/contention-lstm.json");
    if shipped.exists() {
        let onnx = shipped.with_file_name("contention-lstm.onnx");
        println!("model: shipped, {}", onnx.display());
        return (onnx, shipped);
    }
    let onnx = dir.join("src/predict/testdata/lstm.onnx");
    println!(
        "model: TEST FIXTURE {} (random weights, the shipped model's shape): \
         models/contention-lstm.json is not there yet",
        onnx.display()
    );
    (onnx, dir.join("src/predict/testdata/lstm.json"))
}

/// Pins this thread (the only one tract uses) to CPU 0.
fn pin_to_cpu0() -> anyhow::Result<()> {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it for this thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        bail!(
            "sched_setaffinity(CPU 0): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// This thread's CPU time: what the run cost, whatever else shares the core.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn p90(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() * 9 / 10).min(v.len() - 1)]
}

/// Wall-clock median and p90, and CPU-time median, in ms.
struct Timing {
    median: f64,
    p90: f64,
    cpu: f64,
}

fn time_ms(mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Timing> {
    for _ in 0..WARMUP {
        f()?;
    }
    let (mut wall, mut cpu) = (vec![], vec![]);
    for _ in 0..ITERATIONS {
        let (t0, c0) = (Instant::now(), thread_cpu_seconds());
        f()?;
        cpu.push((thread_cpu_seconds() - c0) * 1e3);
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Timing {
        median: median(&mut wall),
        p90: p90(&mut wall),
        cpu: median(&mut cpu),
    })
}

/// Largest |a - b|; infinite when either side has a NaN or the lengths differ.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter().zip(b).fold(0.0f32, |worst, (x, y)| {
        let d = (x - y).abs();
        if d.is_nan() {
            f32::INFINITY
        } else {
            worst.max(d)
        }
    })
}

struct Ort {
    timing: Timing,
    version: String,
    outputs: Vec<f32>,
}

fn run_onnxruntime(
    onnx: &Path,
    normalised: &[f32],
    t: usize,
    f: usize,
) -> anyhow::Result<Option<Ort>> {
    let venv = std::env::var_os("INTERFERENCE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/interference-model/venv"));
    let python = venv.join("bin/python");
    if !python.exists() {
        eprintln!(
            "scoring: {} missing (scripts/model/setup-venv.sh creates it): onnxruntime side skipped",
            python.display()
        );
        return Ok(None);
    }
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/model/bench_onnxruntime.py");
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("input.f32");
    let output = dir.path().join("output.f32");
    let bytes: Vec<u8> = normalised.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(&input, bytes)?;
    let out = Command::new("taskset")
        .args(["-c", "0"])
        .arg(&python)
        .arg(&script)
        .arg("--model")
        .arg(onnx)
        .arg("--input")
        .arg(&input)
        .arg("--shape")
        .arg(format!("{PAIRS},{t},{f}"))
        .arg("--output")
        .arg(&output)
        .args([
            "--warmup",
            &WARMUP.to_string(),
            "--iterations",
            &ITERATIONS.to_string(),
        ])
        .output()
        .context("running bench_onnxruntime.py under taskset")?;
    if !out.status.success() {
        bail!(
            "bench_onnxruntime.py failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("bench_onnxruntime.py's JSON line")?;
    let num = |k: &str| {
        report[k]
            .as_f64()
            .with_context(|| format!("{k} in {report}"))
    };
    let outputs = std::fs::read(&output)?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Some(Ort {
        timing: Timing {
            median: num("median_ms")?,
            p90: num("p90_ms")?,
            cpu: num("cpu_median_ms")?,
        },
        version: report["onnxruntime"].as_str().unwrap_or("?").to_string(),
        outputs,
    }))
}

fn row(runtime: &str, call: &str, t: &Timing) {
    println!(
        "| {runtime} | {call} | {:.2} | {:.2} | {:.2} | {:.2} |",
        t.median,
        t.p90,
        t.cpu,
        t.median * 1e3 / PAIRS as f64
    );
}

fn main() -> anyhow::Result<()> {
    pin_to_cpu0()?;
    let (onnx, sidecar_path) = model_paths();
    let scorer = LstmScorer::load(&onnx, &sidecar_path).context("loading the model")?;
    let one_run = LstmScorer::load(&onnx, &sidecar_path)
        .context("loading the model")?
        .with_max_batch(usize::MAX);
    let sidecar = scorer.sidecar();
    let names: Vec<&str> = sidecar.features.iter().map(String::as_str).collect();
    let (t, f) = (sidecar.window, names.len());
    let raw = realistic_windows(&names, PAIRS, t);
    let normalised: Vec<f32> = raw
        .chunks_exact(f)
        .flat_map(|row| {
            row.iter()
                .zip(&sidecar.normalisation.mean)
                .zip(&sidecar.normalisation.std)
                .map(|((x, m), s)| (x - m) / s)
        })
        .collect();

    // The agent's call: check names, normalise, run in chunks of DEFAULT_MAX_BATCH,
    // clamp. Then the runs alone on the normalised batch that onnxruntime gets, chunked,
    // and all 4950 windows in one run as onnxruntime does; that one last, since its
    // 15 MB intermediates change what glibc's allocator keeps for the others (each
    // block in turn, not interleaved: the agent runs one of them, not a mix).
    let mut scores = vec![];
    let agent = time_ms(|| {
        scores = scorer.score(&names, &raw, PAIRS, t, f)?;
        Ok(())
    })?;
    let mut chunked_out = vec![];
    let chunked = time_ms(|| {
        chunked_out = scorer.run_normalised(&normalised, PAIRS)?;
        Ok(())
    })?;
    let mut single_out = vec![];
    let single = time_ms(|| {
        single_out = one_run.run_normalised(&normalised, PAIRS)?;
        Ok(())
    })?;
    let spread = scores
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)));
    println!(
        "{PAIRS} windows of [{t}, {f}], hidden {}; predictions {:.1}..{:.1}; pinned to CPU 0, \
         single-threaded; {WARMUP} warm-up + {ITERATIONS} runs each",
        sidecar.architecture.hidden, spread.0, spread.1
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average during the run: {}",
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );

    let chunk = format!(
        "{} x <= {}",
        PAIRS.div_ceil(DEFAULT_MAX_BATCH),
        DEFAULT_MAX_BATCH
    );
    println!();
    println!("| runtime | call | median (ms) | p90 (ms) | CPU median (ms) | per pair (µs) |");
    println!("|---|---|---|---|---|---|");
    row(
        "tract 0.23",
        &format!("score(): normalise + {chunk} runs"),
        &agent,
    );
    row(
        "tract 0.23",
        &format!("run_normalised(): {chunk} runs"),
        &chunked,
    );
    row("tract 0.23", "run_normalised(): 1 run of 4950", &single);
    let ort = run_onnxruntime(&onnx, &normalised, t, f)?;
    if let Some(ort) = &ort {
        row(
            &format!("onnxruntime {}", ort.version),
            "session.run(): 1 run of 4950",
            &ort.timing,
        );
    }
    println!();
    let same = max_diff(&chunked_out, &single_out);
    println!("max |chunked - one run| (tract): {same:.2e}");
    if same > TOLERANCE {
        bail!("tract's chunked and single runs disagree by {same} (> {TOLERANCE})");
    }
    if let Some(ort) = ort {
        let worst = max_diff(&single_out, &ort.outputs);
        let identical = single_out
            .iter()
            .zip(&ort.outputs)
            .filter(|(a, b)| a.to_bits() == b.to_bits())
            .count();
        println!(
            "max |tract - onnxruntime| over {PAIRS} outputs: {worst:.2e} ({identical} bit-identical)"
        );
        println!(
            "tract / onnxruntime, median wall (CPU): agent's call {:.2}x ({:.2}x), one run {:.2}x ({:.2}x)",
            agent.median / ort.timing.median,
            agent.cpu / ort.timing.cpu,
            single.median / ort.timing.median,
            single.cpu / ort.timing.cpu,
        );
        if worst > TOLERANCE {
            bail!("tract and onnxruntime disagree by {worst} (> {TOLERANCE})");
        }
    }
    let verdict = if agent.median <= TARGET_MS {
        "within"
    } else {
        "ABOVE"
    };
    println!(
        "tract (agent's call): {:.1} ms for {PAIRS} pairs, {verdict} the {TARGET_MS} ms target",
        agent.median
    );
    Ok(())
}
