//! From per-direction predictions to the Contention Score of each unordered VM pair
//! (models/README.md): the larger direction wins and names who is the
//! victim, so the policy knows whom to protect and whom to throttle. Pure functions.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde::Serialize;

use super::error::PredictError;

/// The predicted slowdown of `victim` caused by `aggressor`, 0-100.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DirectedScore {
    pub victim: String,
    pub aggressor: String,
    pub slowdown: f32,
    /// Contention dimensions the score cannot see for this victim (`llc`, `membw`
    /// without a PMU): a low score says nothing about them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unobservable: Vec<&'static str>,
}

/// One unordered pair: `vm < neighbor` by name; `score` (0-100) is the larger of the two
/// directions, and `victim`/`aggressor` is that direction.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ContentionScore {
    pub vm: String,
    pub neighbor: String,
    pub score: f32,
    pub victim: String,
    pub aggressor: String,
    /// What the winning direction could not see (see [`DirectedScore::unobservable`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unobservable: Vec<&'static str>,
}

/// Pairs the scorer's outputs with the `(victim, aggressor)` they were computed for.
pub fn directed_scores(
    pairs: &[(String, String)],
    slowdowns: &[f32],
) -> Result<Vec<DirectedScore>, PredictError> {
    if pairs.len() != slowdowns.len() {
        return Err(PredictError::Shape {
            what: format!("{} pairs but {} scores", pairs.len(), slowdowns.len()),
        });
    }
    Ok(pairs
        .iter()
        .zip(slowdowns)
        .map(|((victim, aggressor), &slowdown)| DirectedScore {
            victim: victim.clone(),
            aggressor: aggressor.clone(),
            slowdown,
            unobservable: Vec::new(),
        })
        .collect())
}

/// True when `a` should stand for its pair instead of `b`: higher slowdown, and on a tie
/// the lexicographically smaller victim, so the result never depends on input order.
fn wins(a: &DirectedScore, b: &DirectedScore) -> bool {
    match a.slowdown.total_cmp(&b.slowdown) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => a.victim < b.victim,
    }
}

/// Folds directed scores into one Contention Score per unordered pair, highest score
/// first, then by `vm`, then by `neighbor`. A pair seen in one direction only is scored
/// by that direction. A VM paired with itself is ignored.
pub fn contention_scores(directed: &[DirectedScore]) -> Vec<ContentionScore> {
    let mut best: HashMap<(&str, &str), &DirectedScore> = HashMap::new();
    for d in directed.iter().filter(|d| d.victim != d.aggressor) {
        let key = if d.victim < d.aggressor {
            (d.victim.as_str(), d.aggressor.as_str())
        } else {
            (d.aggressor.as_str(), d.victim.as_str())
        };
        best.entry(key)
            .and_modify(|b| {
                if wins(d, b) {
                    *b = d;
                }
            })
            .or_insert(d);
    }
    let mut scores: Vec<ContentionScore> = best
        .into_iter()
        .map(|((vm, neighbor), d)| ContentionScore {
            vm: vm.to_string(),
            neighbor: neighbor.to_string(),
            score: d.slowdown,
            victim: d.victim.clone(),
            aggressor: d.aggressor.clone(),
            unobservable: d.unobservable.clone(),
        })
        .collect();
    scores.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.vm.cmp(&b.vm))
            .then_with(|| a.neighbor.cmp(&b.neighbor))
    });
    scores
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(victim: &str, aggressor: &str, slowdown: f32) -> DirectedScore {
        DirectedScore {
            victim: victim.into(),
            aggressor: aggressor.into(),
            slowdown,
            ..DirectedScore::default()
        }
    }

    fn summary(scores: &[ContentionScore]) -> Vec<(String, String, f32, String)> {
        scores
            .iter()
            .map(|c| (c.vm.clone(), c.neighbor.clone(), c.score, c.victim.clone()))
            .collect()
    }

    #[test]
    fn larger_direction_names_the_victim_and_sorts_descending() {
        let directed = [
            d("web", "db", 10.0),
            d("db", "web", 35.0),
            d("batch", "web", 60.0),
            d("web", "batch", 5.0),
            d("db", "batch", 1.0),
        ];
        let scores = contention_scores(&directed);
        assert_eq!(
            summary(&scores),
            vec![
                ("batch".into(), "web".into(), 60.0, "batch".into()),
                ("db".into(), "web".into(), 35.0, "db".into()),
                ("batch".into(), "db".into(), 1.0, "db".into()),
            ]
        );
        assert_eq!(scores[1].aggressor, "web");
        assert_eq!(scores[2].aggressor, "batch");
    }

    #[test]
    fn ties_pick_the_smaller_victim_whatever_the_order() {
        let a = [d("b", "a", 20.0), d("a", "b", 20.0)];
        let b = [d("a", "b", 20.0), d("b", "a", 20.0)];
        for directed in [&a[..], &b[..]] {
            let s = contention_scores(directed);
            assert_eq!(s.len(), 1);
            assert_eq!((s[0].victim.as_str(), s[0].aggressor.as_str()), ("a", "b"));
            assert_eq!((s[0].vm.as_str(), s[0].neighbor.as_str()), ("a", "b"));
        }
    }

    #[test]
    fn equal_scores_sort_by_names_and_self_pairs_are_ignored() {
        let directed = [
            d("z", "y", 5.0),
            d("c", "d", 5.0),
            d("c", "a", 5.0),
            d("x", "x", 99.0),
        ];
        let s = contention_scores(&directed);
        let names: Vec<(&str, &str)> = s
            .iter()
            .map(|c| (c.vm.as_str(), c.neighbor.as_str()))
            .collect();
        assert_eq!(names, [("a", "c"), ("c", "d"), ("y", "z")]);
    }

    #[test]
    fn directed_scores_pairs_outputs_with_names() {
        let pairs = vec![
            ("a".to_string(), "b".to_string()),
            ("b".to_string(), "a".to_string()),
        ];
        let ds = directed_scores(&pairs, &[1.0, 2.0]).expect("same length");
        assert_eq!(ds[1], d("b", "a", 2.0));
        assert!(directed_scores(&pairs, &[1.0]).is_err());
        assert!(contention_scores(&[]).is_empty());
    }
}
