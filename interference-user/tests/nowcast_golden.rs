//! The agent's nowcast computes the evaluation's: scores that scripts/model/nowcast.py
//! computed in Python from the small shipped dataset
//! (data/contention-small/nowcast.golden.json, by scripts/model/golden_nowcast.py) come
//! out of the agent's scoring fed with the same samples through the replay path of
//! `interference score --replay`, pair for pair, within 1e-3 points.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use interference::agent::replay::read_ticks;
use interference::agent::Scoring;
use interference::predict::Scorer;

#[derive(serde::Deserialize)]
struct Golden {
    window_seconds: f64,
    scores: Vec<GoldenScore>,
}

#[derive(serde::Deserialize)]
struct GoldenScore {
    experiment: String,
    timestamp_ms: u64,
    victim: String,
    aggressor: String,
    tick: f64,
    smoothed: f64,
}

#[test]
fn the_agents_nowcast_equals_the_evaluations() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/contention-small");
    let golden: Golden = serde_json::from_str(
        &std::fs::read_to_string(dir.join("nowcast.golden.json")).expect("golden file"),
    )
    .expect("golden JSON");
    let mut by_experiment: BTreeMap<&str, Vec<&GoldenScore>> = BTreeMap::new();
    for g in &golden.scores {
        by_experiment.entry(&g.experiment).or_default().push(g);
    }
    let mut checked = 0;
    let mut nonzero = 0;
    for (experiment, expected) in by_experiment {
        let ticks = read_ticks(&dir.join(experiment).join("samples.jsonl")).expect("samples");
        // The recorder's collector ticks every second (experiment.json tick_seconds).
        let tick = Duration::from_secs(1);
        let mut scoring = Scoring::new(
            Scorer::Nowcast {
                smoothing: Duration::from_secs_f64(golden.window_seconds),
            },
            tick,
            tick,
        )
        .expect("scoring");
        // (timestamp, victim, aggressor) -> (tick, smoothed)
        let mut got: BTreeMap<(u64, String, String), (f32, f32)> = BTreeMap::new();
        for t in &ticks {
            let round = scoring
                .push(t)
                .expect("a round every tick")
                .expect("scores");
            for n in &round.nowcast {
                got.insert(
                    (
                        round.timestamp_ms,
                        n.victim.to_string(),
                        n.aggressor.to_string(),
                    ),
                    (n.tick, n.smoothed),
                );
            }
        }
        for g in expected {
            let (tick, smoothed) = got
                .get(&(g.timestamp_ms, g.victim.clone(), g.aggressor.clone()))
                .copied()
                .unwrap_or((0.0, 0.0));
            assert!(
                (f64::from(tick) - g.tick).abs() < 1e-3
                    && (f64::from(smoothed) - g.smoothed).abs() < 1e-3,
                "{experiment} {} {} <- {}: agent ({tick}, {smoothed}), evaluation ({}, {})",
                g.timestamp_ms,
                g.victim,
                g.aggressor,
                g.tick,
                g.smoothed
            );
            checked += 1;
            nonzero += usize::from(g.smoothed > 0.0);
        }
    }
    assert!(
        checked >= 600 && nonzero >= 200,
        "{checked} checked, {nonzero} non-zero"
    );
}
