//! The Contention Score families of the textfile: gauges of the last scoring round,
//! rendered after the telemetry families through the same [`TextWriter`].
//!
//! Each unordered pair is written under both orders (`vm="a",neighbor="b"` and
//! `vm="b",neighbor="a"`, same value), so `max by (vm)` gives every VM its worst
//! neighbour without a join. Series of pairs that were not scored in the last round
//! (a VM left, or its window is not full yet) are absent, not zero.

use super::text::TextWriter;
use crate::predict::{ContentionScore, DirectedScore};

/// The last scoring round, as the exporter shows it.
#[derive(Debug, Default, Clone)]
pub struct ScoreMetrics {
    /// `nowcast`, `lstm` or `heuristic`, and the model's name and version (empty for
    /// the others).
    pub scorer: String,
    pub model: String,
    pub version: String,
    pub contention: Vec<ContentionScore>,
    pub directed: Vec<DirectedScore>,
    /// (VM, dimension) its scores cannot see (`llc`, `membw` without a PMU).
    pub unobservable: Vec<(String, &'static str)>,
    /// Feature assembly plus inference of the round.
    pub duration_seconds: Option<f64>,
    /// Scoring rounds that failed since start (the previous scores stay out).
    pub failures: u64,
    pub rounds: u64,
}

impl ScoreMetrics {
    pub fn render_into(&self, w: &mut TextWriter) {
        w.gauge(
            "interference_scorer_info",
            "The scorer producing Contention Scores; always 1.",
        )
        .sample(
            &[
                ("scorer", &self.scorer),
                ("model", &self.model),
                ("version", &self.version),
            ],
            1u64,
        );
        w.counter(
            "interference_score_rounds_total",
            "Scoring rounds completed (every pair with a full window scored in one batch).",
        )
        .sample(&[], self.rounds);
        w.counter(
            "interference_score_failures_total",
            "Scoring rounds that failed; their scores are absent from this file.",
        )
        .sample(&[], self.failures);
        if let Some(d) = self.duration_seconds {
            w.gauge(
                "interference_score_duration_seconds",
                "Time the last scoring round took: feature assembly and inference.",
            )
            .sample(&[], d);
        }
        let mut f = w.gauge(
            "interference_pair_contention_score",
            "Contention Score of the VM pair, 0-100: the larger predicted slowdown of its two directions.",
        );
        for c in &self.contention {
            let score = f64::from(c.score);
            f.sample(&[("vm", &c.vm), ("neighbor", &c.neighbor)], score);
            f.sample(&[("vm", &c.neighbor), ("neighbor", &c.vm)], score);
        }
        let mut f = w.gauge(
            "interference_score_unobservable_info",
            "A contention dimension the scores of this VM (as the victim) cannot see, so a low score says nothing about it (llc and membw without a hardware PMU); always 1.",
        );
        for (vm, dim) in &self.unobservable {
            f.sample(&[("vm", vm), ("dimension", dim)], 1u64);
        }
        let mut f = w.gauge(
            "interference_pair_predicted_slowdown_ratio",
            "Slowdown of the victim caused by the aggressor, 0-1: for the nowcast the share of its runnable time the aggressor took over the smoothing window, for a model its prediction over the model's horizon.",
        );
        for d in &self.directed {
            f.sample(
                &[("victim", &d.victim), ("aggressor", &d.aggressor)],
                f64::from(d.slowdown) / 100.0,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::prometheus::check::validate;

    #[test]
    fn scores_render_both_orders_and_ratios() {
        let m = ScoreMetrics {
            scorer: "lstm".into(),
            model: "contention-lstm".into(),
            version: "1.0.0".into(),
            contention: vec![ContentionScore {
                vm: "a".into(),
                neighbor: "b".into(),
                score: 40.0,
                victim: "b".into(),
                aggressor: "a".into(),
                ..ContentionScore::default()
            }],
            directed: vec![
                DirectedScore {
                    victim: "a".into(),
                    aggressor: "b".into(),
                    slowdown: 10.0,
                    ..DirectedScore::default()
                },
                DirectedScore {
                    victim: "b".into(),
                    aggressor: "a".into(),
                    slowdown: 40.0,
                    ..DirectedScore::default()
                },
            ],
            duration_seconds: Some(0.002),
            failures: 0,
            rounds: 3,
            unobservable: vec![("b".into(), "llc")],
        };
        let mut w = TextWriter::new();
        m.render_into(&mut w);
        let text = w.finish();
        let families = validate(&text).expect("valid exposition");
        let (kind, samples) = &families["interference_pair_contention_score"];
        assert_eq!(kind, "gauge");
        assert_eq!(samples.len(), 2);
        assert!(text.contains("interference_pair_contention_score{vm=\"b\",neighbor=\"a\"} 40"));
        assert!(text.contains(
            "interference_pair_predicted_slowdown_ratio{victim=\"b\",aggressor=\"a\"} 0.4"
        ));
        assert!(text.contains("interference_score_rounds_total 3"));
    }
}
