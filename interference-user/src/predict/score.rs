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
    /// With forecasting on: the measured and the forecast parts of `score`, which is
    /// the larger of the two.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastPart>,
}

impl ContentionScore {
    /// The measured part of the score (the whole score without forecasting).
    pub fn now(&self) -> f32 {
        self.forecast.as_ref().map_or(self.score, |f| f.now)
    }
}

/// A pair's score split into what was measured and what is forecast.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ForecastPart {
    /// The larger direction of the measured score (0 when nothing was measured).
    pub now: f32,
    /// The larger direction of the forecast score at `horizon_ms`.
    pub forecast: f32,
    pub horizon_ms: u64,
    /// The larger direction of the pair mapping applied to the *current* demands: when
    /// it reaches the alarm, the forecast came true (see
    /// `interference_forecast::pairs::realised_pairs`).
    pub realised: f32,
    /// The measured direction (victim, aggressor) when the forecast's direction took
    /// the pair's place: a policy that sets the forecast aside needs it back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub now_direction: Option<(String, String)>,
}

impl ContentionScore {
    /// The pair as measured alone: the forecast part set aside (muted forecasts).
    pub fn measured_only(&self) -> ContentionScore {
        let mut s = self.clone();
        if let Some(f) = s.forecast.as_mut() {
            s.score = f.now;
            if let Some((v, a)) = f.now_direction.take() {
                s.victim = v;
                s.aggressor = a;
            }
            f.forecast = 0.0;
        }
        s
    }
}

/// One direction's forecast, from the forecast stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DirectedForecast {
    pub victim: String,
    pub aggressor: String,
    /// Forecast slowdown (0-100) at the horizon.
    pub forecast: f32,
    /// The same mapping from current demands.
    pub realised: f32,
}

/// Folds the forecasts into the pairs' scores: each pair's score becomes the larger of
/// its measured and forecast scores, and names the direction that is larger; pairs
/// only forecast are added. Every pair gets its [`ForecastPart`], so the policy knows
/// which part raised an alarm. Highest score first, as [`contention_scores`].
pub fn with_forecasts(
    mut scores: Vec<ContentionScore>,
    forecasts: &[DirectedForecast],
    horizon_ms: u64,
) -> Vec<ContentionScore> {
    // Owned keys: the scores' names are looked up in it while the scores change.
    let mut best: HashMap<(String, String), (&DirectedForecast, f32)> = HashMap::new();
    for f in forecasts.iter().filter(|f| f.victim != f.aggressor) {
        let (a, b) = unordered(&f.victim, &f.aggressor);
        best.entry((a.to_owned(), b.to_owned()))
            .and_modify(|(b, realised)| {
                *realised = realised.max(f.realised);
                if f.forecast > b.forecast {
                    *b = f;
                }
            })
            .or_insert((f, f.realised));
    }
    for s in &mut scores {
        let now = s.score;
        let part = match best.remove(&(s.vm.clone(), s.neighbor.clone())) {
            Some((f, realised)) => {
                let mut now_direction = None;
                if f.forecast > now {
                    s.score = f.forecast;
                    if s.victim != f.victim {
                        now_direction = Some((
                            std::mem::replace(&mut s.victim, f.victim.clone()),
                            std::mem::replace(&mut s.aggressor, f.aggressor.clone()),
                        ));
                    }
                }
                ForecastPart {
                    now,
                    forecast: f.forecast,
                    horizon_ms,
                    realised,
                    now_direction,
                }
            }
            None => ForecastPart {
                now,
                horizon_ms,
                ..ForecastPart::default()
            },
        };
        s.forecast = Some(part);
    }
    // Pairs only forecast: those forecast to contend (a pair sharing CPUs at 0 is no
    // news, and would only lengthen every round's list).
    for ((vm, neighbor), (f, realised)) in best.into_iter().filter(|(_, (f, _))| f.forecast > 0.0) {
        scores.push(ContentionScore {
            vm,
            neighbor,
            score: f.forecast,
            victim: f.victim.clone(),
            aggressor: f.aggressor.clone(),
            unobservable: Vec::new(),
            forecast: Some(ForecastPart {
                now: 0.0,
                forecast: f.forecast,
                horizon_ms,
                realised,
                now_direction: None,
            }),
        });
    }
    sort_scores(&mut scores);
    scores
}

/// A pair's two names in the order its [`ContentionScore`] lists them (`vm < neighbor`).
fn unordered<'a>(x: &'a str, y: &'a str) -> (&'a str, &'a str) {
    if x < y {
        (x, y)
    } else {
        (y, x)
    }
}

fn sort_scores(scores: &mut [ContentionScore]) {
    scores.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.vm.cmp(&b.vm))
            .then_with(|| a.neighbor.cmp(&b.neighbor))
    });
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
        best.entry(unordered(&d.victim, &d.aggressor))
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
            forecast: None,
        })
        .collect();
    sort_scores(&mut scores);
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

    fn f(victim: &str, aggressor: &str, forecast: f32, realised: f32) -> DirectedForecast {
        DirectedForecast {
            victim: victim.into(),
            aggressor: aggressor.into(),
            forecast,
            realised,
        }
    }

    #[test]
    fn forecasts_raise_scores_add_pairs_and_keep_the_measured_part() {
        let now = contention_scores(&[d("a", "b", 30.0), d("b", "a", 10.0), d("c", "d", 50.0)]);
        let merged = with_forecasts(
            now,
            &[
                f("b", "a", 60.0, 20.0),
                f("a", "b", 5.0, 25.0),
                f("e", "c", 45.0, 0.0),
            ],
            300_000,
        );
        let names: Vec<(&str, &str, f32)> = merged
            .iter()
            .map(|s| (s.vm.as_str(), s.neighbor.as_str(), s.score))
            .collect();
        assert_eq!(
            names,
            vec![("a", "b", 60.0), ("c", "d", 50.0), ("c", "e", 45.0)]
        );
        // The forecast direction wins the pair; the measured part is kept.
        assert_eq!(
            (merged[0].victim.as_str(), merged[0].aggressor.as_str()),
            ("b", "a")
        );
        let part = merged[0].forecast.as_ref().expect("forecast part");
        assert_eq!((part.now, part.forecast, part.realised), (30.0, 60.0, 25.0));
        assert_eq!(merged[0].now(), 30.0);
        let measured = merged[0].measured_only();
        assert_eq!(
            (
                measured.score,
                measured.victim.as_str(),
                measured.aggressor.as_str()
            ),
            (30.0, "a", "b")
        );
        // Measured, no forecast: the score stands, the forecast part says 0.
        assert_eq!(merged[1].forecast.as_ref().map(|p| p.forecast), Some(0.0));
        assert_eq!(merged[1].now(), 50.0);
        // Forecast only: nothing measured.
        assert_eq!(merged[2].now(), 0.0);
        assert_eq!(
            (merged[2].victim.as_str(), merged[2].aggressor.as_str()),
            ("e", "c")
        );
    }
}
