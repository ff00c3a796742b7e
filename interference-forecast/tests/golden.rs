//! docs/forecast.md, section 9, points 1-3: the golden vectors of
//! `models/demand-forecast.golden.json` through this crate.
//!
//! 1. Inputs: each golden row's rollup rebuilt from the Azure trace (its VM's values
//!    from its first minute to its origin), then section 4: raw inputs within 1e-5,
//!    L and S within 1e-9 relative.
//! 2. Model: the golden normalised inputs through tract: outputs within 1e-4.
//! 3. Forecasts: within 1e-3 points, from the golden outputs and from the whole chain.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use interference_forecast::contract::{FEATURES, FEATURE_COUNT, HORIZON_STEPS, WINDOW};
use interference_forecast::inputs::{normalise, raw_inputs, ROW_LEN};
use interference_forecast::{Clock, DemandModel, Forecaster, RollupStore, VmRollup};

const ROWS: usize = 32;

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

#[test]
fn golden_model_outputs_through_tract() {
    let g = common::golden();
    let input: Vec<f32> = common::f64s(&g["input"])
        .iter()
        .map(|&x| x as f32)
        .collect();
    let expected = common::f64s(&g["output"]);
    assert_eq!(input.len(), ROWS * WINDOW * FEATURE_COUNT);
    let model = DemandModel::builtin().expect("built-in model loads");
    let out = model
        .run_normalised(&input, ROWS)
        .expect("tract runs the batch");
    assert_eq!(out.len(), ROWS * HORIZON_STEPS);
    let worst = out
        .iter()
        .zip(&expected)
        .map(|(&a, &b)| (f64::from(a) - b).abs())
        .fold(0.0, f64::max);
    eprintln!(
        "max |tract - onnxruntime| over {} outputs: {worst:.2e}",
        out.len()
    );
    assert!(
        worst <= 1e-4,
        "tract and the golden outputs differ by {worst}"
    );

    // Forecasts from these outputs and the golden L and S.
    let (level, scale) = (common::f64s(&g["level"]), common::f64s(&g["scale"]));
    for (i, row) in g["forecast"]
        .as_array()
        .expect("forecast rows")
        .iter()
        .enumerate()
    {
        for (k, f) in common::f64s(row).into_iter().enumerate() {
            let ours = (level[i] + scale[i] * f64::from(out[i * HORIZON_STEPS + k])).max(0.0);
            assert!(
                (ours - f).abs() <= 1e-3,
                "row {i} column {k}: {ours} vs {f}"
            );
        }
    }
}

#[test]
fn golden_model_runs_one_row_at_a_time_as_in_one_batch() {
    let g = common::golden();
    let input: Vec<f32> = common::f64s(&g["input"])
        .iter()
        .map(|&x| x as f32)
        .collect();
    let model = DemandModel::builtin().expect("built-in model loads");
    let batch = model.run_normalised(&input, ROWS).expect("batch");
    for i in [0, 7, 31] {
        let one = model
            .run_normalised(&input[i * ROW_LEN..(i + 1) * ROW_LEN], 1)
            .expect("one row");
        for k in 0..HORIZON_STEPS {
            let d = (one[k] - batch[i * HORIZON_STEPS + k]).abs();
            assert!(d <= 1e-5, "row {i} column {k}: {d}");
        }
    }
}

/// Rebuilds the golden rows' rollups from the trace and checks section 4 and the whole
/// chain (inputs, normalisation, tract, post-processing) against the golden file.
#[test]
fn golden_inputs_from_rollups_rebuilt_from_the_azure_trace() {
    let g = common::golden();
    let trace = common::load_trace(&common::azure_trace());
    let step = trace.minutes[1] - trace.minutes[0];
    let raw_expected = common::f64s(&g["raw_input"]);
    let input_expected = common::f64s(&g["input"]);
    let (level, scale) = (common::f64s(&g["level"]), common::f64s(&g["scale"]));
    let model = DemandModel::builtin().expect("built-in model loads");
    let sidecar = model.sidecar().clone();
    assert_eq!(sidecar.features, FEATURES);

    let clock = Clock::new(
        Duration::from_secs(300),
        Duration::from_secs(86_400),
        UNIX_EPOCH,
        288,
    )
    .expect("the traces' clock");
    let mut worst_raw = 0.0f64;
    let mut worst_norm = 0.0f64;
    let mut raw = vec![0.0f32; ROW_LEN];
    let mut norm = vec![0.0f32; ROW_LEN];
    let mut names = Vec::new();
    for (i, row) in g["rows"].as_array().expect("rows").iter().enumerate() {
        let vm = row["vm"].as_str().expect("vm");
        let column = trace
            .vms
            .iter()
            .position(|v| v == vm)
            .expect("VM in the trace");
        let first = (row["first_minute"].as_i64().expect("first") / step) as usize;
        let origin = (row["origin_minute"].as_i64().expect("origin") / step) as usize;
        // The rollup as the agent keeps it: one value per step, float32.
        let mut ring: Option<VmRollup> = None;
        for k in first..=origin {
            let v = trace.rows[k][column].expect("the Azure trace has no gaps") as f32;
            match &mut ring {
                None => ring = Some(VmRollup::new(k as i64, v)),
                Some(r) => {
                    r.push_step(k as i64, Some(v));
                }
            }
        }
        let ring = ring.expect("at least the origin");
        let ls = raw_inputs(&ring, origin as i64, &mut raw);
        assert!(
            relative(ls.level, level[i]) <= 1e-9,
            "row {i}: L {} vs {}",
            ls.level,
            level[i]
        );
        assert!(
            relative(ls.scale, scale[i]) <= 1e-9,
            "row {i}: S {} vs {}",
            ls.scale,
            scale[i]
        );
        for (j, (&ours, &theirs)) in raw.iter().zip(&raw_expected[i * ROW_LEN..]).enumerate() {
            let d = (f64::from(ours) - theirs).abs();
            assert!(
                d <= 1e-5,
                "row {i} ({vm}, age {}), position {}, feature {}: {ours} vs {theirs}",
                ring.age(),
                j / FEATURE_COUNT,
                FEATURES[j % FEATURE_COUNT]
            );
            worst_raw = worst_raw.max(d);
        }
        normalise(
            &raw,
            &sidecar.normalisation.mean,
            &sidecar.normalisation.std,
            &mut norm,
        );
        for (&ours, &theirs) in norm.iter().zip(&input_expected[i * ROW_LEN..]) {
            worst_norm = worst_norm.max((f64::from(ours) - theirs).abs());
        }
        names.push((format!("row{i:02}"), origin));
    }
    eprintln!("max |raw input - golden| {worst_raw:.2e}, normalised {worst_norm:.2e}");
    assert!(
        worst_norm <= 1e-4,
        "normalised inputs differ by {worst_norm}"
    );

    // The whole chain, one round per golden row (each row has its own origin).
    let expected: Vec<Vec<f64>> = g["forecast"]
        .as_array()
        .expect("forecasts")
        .iter()
        .map(common::f64s)
        .collect();
    let mut forecaster = Forecaster::new(model);
    for (i, (name, origin)) in names.iter().enumerate() {
        let mut one = RollupStore::in_memory(&clock);
        let column = trace
            .vms
            .iter()
            .position(|v| v == g["rows"][i]["vm"].as_str().expect("vm"))
            .expect("VM");
        let first = (g["rows"][i]["first_minute"].as_i64().expect("first") / step) as usize;
        for k in first..=*origin {
            one.record(name, k as i64, trace.rows[k][column].expect("no gaps"));
            one.close_step(k as i64);
        }
        let round = forecaster.round(&one, *origin as i64, [name.as_str()]);
        let f = &round.forecasts[0];
        assert_eq!(expected[i].len(), HORIZON_STEPS);
        for (k, (ours, theirs)) in f.demand.iter().zip(&expected[i]).enumerate() {
            let d = (ours - theirs).abs();
            assert!(d <= 1e-3, "row {i} column {k}: {ours} vs {theirs}");
        }
    }
}
