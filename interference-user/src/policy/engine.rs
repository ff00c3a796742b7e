//! The decision engine: one call per tick, Contention Scores and the VMs as they are in,
//! [`Action`](super::Action)s out. Pure logic over plain data: no clock, no I/O, no
//! randomness, so the same inputs and state always give the same decision (and the same action ids).
//!
//! A tick, in order:
//! 1. The previous tick's outcomes: applied or simulated changes are now in force,
//!    failed ones are not (the ladder does not move; the retry waits for the cooldown).
//! 2. VMs no longer on the host are forgotten with their changes.
//! 3. Every scored pair updates its hysteresis: a pair becomes active at its on threshold
//!    and stays active until it has been quiet for `rollback_after_quiet_ticks`
//!    consecutive ticks; then it is released and the changes nobody else relies on are
//!    rolled back. A tick is quiet when the pair's score is below its off threshold (a
//!    pair that was not scored counts as below) *and* the cause is gone: the aggressor's
//!    CPU demand is at most `quiet_demand_ratio` of what it was when the pair's first
//!    rung was decided, or the aggressor (or its partner) has left. A mitigation that
//!    works lowers the score while the aggressor stays as busy as before; rolling it
//!    back then would only bring the contention back (pin, roll back, pin, ...). Such a
//!    pair is held, and reported once each time the hold starts. With no demand
//!    recorded (or none measured this tick) the score alone decides.
//! 4. Active pairs not below their off threshold, highest score first, take their next
//!    rung: the first one at once, the next ones after `escalate_after_ticks`
//!    consecutive ticks at or above the on threshold since the last rung took effect. A
//!    rung that cannot apply to the pair is passed over to the next one in the same
//!    tick. A rung waits (and is reported in `skipped`) when one of its VMs is in
//!    cooldown, was already changed this tick by a higher-scoring pair, or the cap has
//!    too few actions left.
//! 5. Rollbacks, most recent change first, within what is left of the cap; they skip
//!    the cooldown but restart it.
//!
//! Actions are recorded in the state as pending: only the next tick's outcomes make
//! them count. With the defaults (5 s ticks, 30 s cooldown) the pace of escalation is
//! set by the cooldown: the pin rung follows the weight rung six ticks later, not two.

use std::collections::{HashMap, HashSet};

use thiserror::Error;

use super::config::{PolicyConfig, Thresholds};
use super::decision::Decision;
use super::escalate;
use super::forecast;
use super::gate::{due, gate, observe, track_peak_demand, Due, Gate};
use super::input::{PolicyInput, VmInput};
use super::rollback;
use super::rules::Rules;
use super::state::{pair_key, pair_key_into, PairState, PolicyState};
use super::tick::{TickCtx, Work};
use super::who;
use crate::predict::ContentionScore;

#[derive(Debug, Error)]
#[error("invalid [policy] configuration: {}", .problems.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; "))]
pub struct PolicyError {
    pub problems: Vec<(String, String)>,
}

/// The engine: the configuration, prepared for lookups, and the state.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Rules,
    state: PolicyState,
}

impl Policy {
    /// A policy with a fresh state. `id_prefix` starts every action id (the agent
    /// passes `<host>-<run>`).
    ///
    /// The state is not persisted: the agent puts back every change at exit and at the
    /// next start (`enforce`'s journal), so a new run has nothing in force for
    /// hysteresis, holdings or cooldowns to remember, and its action ids carry a new
    /// run number.
    pub fn new(config: PolicyConfig, id_prefix: impl Into<String>) -> Result<Self, PolicyError> {
        Ok(Self {
            rules: Self::rules(config, id_prefix.into())?,
            state: PolicyState::default(),
        })
    }

    /// A new configuration (a fleet policy from the controller) for the ticks to come:
    /// what is in force, the pairs' counters and the ids go on; thresholds, ladder and
    /// limits are the new ones from the next decision. An invalid configuration
    /// changes nothing.
    pub fn reconfigure(&mut self, config: PolicyConfig) -> Result<(), PolicyError> {
        let prefix = self.rules.id_prefix.clone();
        self.rules = Self::rules(config, prefix)?;
        Ok(())
    }

    fn rules(config: PolicyConfig, id_prefix: String) -> Result<Rules, PolicyError> {
        let problems = config.check();
        if !problems.is_empty() {
            return Err(PolicyError { problems });
        }
        let pair_thresholds: HashMap<String, (Option<f32>, Option<f32>)> = config
            .pairs
            .iter()
            .filter(|p| p.vms.len() == 2)
            .map(|p| {
                (
                    pair_key(&p.vms[0], &p.vms[1]),
                    (p.on_threshold, p.off_threshold),
                )
            })
            .collect();
        let min_on = std::iter::once(config.on_threshold)
            .chain(config.tiers.values().filter_map(|t| t.on_threshold))
            .chain(config.pairs.iter().filter_map(|p| p.on_threshold))
            .fold(f32::INFINITY, f32::min);
        Ok(Rules {
            ladder: config.ladder(),
            config,
            id_prefix,
            pair_thresholds,
            min_on,
        })
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.rules.config
    }

    pub fn state(&self) -> &PolicyState {
        &self.state
    }

    /// Decides one tick. See the module documentation for the order of things.
    pub fn decide(&mut self, input: &PolicyInput<'_>) -> Decision {
        let mut d = Decision::default();
        // Action ids embed the tick: it must move forward within a run (a state carried
        // over remembers the last one). If it does not, carry on from the last one
        // rather than reuse ids the journal and the ledger already hold.
        let tick = match self.state.last_tick {
            Some(last) if input.tick <= last => {
                d.skipped.push((
                    String::new(),
                    format!(
                        "tick {} is not after the last decided tick {last}; deciding as tick {}",
                        input.tick,
                        last + 1
                    ),
                ));
                last + 1
            }
            _ => input.tick,
        };
        self.state.last_tick = Some(tick);
        d.skipped.extend(self.state.apply_outcomes(input.outcomes));

        let vms: HashMap<&str, &VmInput> = input.vms.iter().map(|v| (v.name.as_str(), v)).collect();
        d.skipped
            .extend(self.state.forget_vms(|n| vms.contains_key(n)));
        // Pairs whose forecast missed: only their measured score counts for a while.
        self.state
            .forecast_muted
            .retain(|_, until| *until > input.now_ms);
        let unmuted: Vec<ContentionScore>;
        let scores: &[ContentionScore] = if self.state.forecast_muted.is_empty() {
            input.scores
        } else {
            unmuted = input
                .scores
                .iter()
                .map(|s| {
                    let muted = s.forecast.as_ref().is_some_and(|f| f.forecast > 0.0)
                        && self
                            .state
                            .forecast_muted
                            .contains_key(&pair_key(&s.vm, &s.neighbor));
                    if muted {
                        s.measured_only()
                    } else {
                        s.clone()
                    }
                })
                .collect();
            &unmuted
        };
        let mut host_cpus = input.host_cpus.to_vec();
        host_cpus.sort_unstable();
        host_cpus.dedup();

        // 3. Hysteresis. Only tracked pairs and pairs at an on threshold cost more than
        // a comparison.
        let mut work: Vec<Work<'_>> = Vec::new();
        // Pairs quiet for K ticks: (key, (why, score)).
        let mut ended: Vec<(String, (String, f32))> = Vec::new();
        let k = self.rules.config.rollback_after_quiet_ticks;
        let ratio = self.rules.config.quiet_demand_ratio;
        let mut buf = String::new();
        let tracking = !self.state.pairs.is_empty();
        for s in scores {
            if (!tracking && s.score < self.rules.min_on)
                || !s.score.is_finite()
                || s.vm == s.neighbor
            {
                continue;
            }
            pair_key_into(&mut buf, &s.vm, &s.neighbor);
            let tracked = tracking && self.state.pairs.contains_key(buf.as_str());
            if !tracked && s.score < self.rules.min_on {
                continue;
            }
            let in_pair = |n: &str| n == s.vm || n == s.neighbor;
            let (Some(victim), Some(aggressor)) =
                (vms.get(s.victim.as_str()), vms.get(s.aggressor.as_str()))
            else {
                d.skipped.push((
                    buf.clone(),
                    format!(
                        "score {:.0}: {} or {} is not in this tick's inventory",
                        s.score, s.victim, s.aggressor
                    ),
                ));
                continue;
            };
            if s.victim == s.aggressor || !in_pair(&s.victim) || !in_pair(&s.aggressor) {
                d.skipped.push((
                    buf.clone(),
                    format!("score names {} <- {}, not this pair", s.victim, s.aggressor),
                ));
                continue;
            }
            let roles = who::roles(&self.rules.config, victim, aggressor);
            let th = self
                .rules
                .thresholds(&buf, roles.protected.sla_tier.as_deref());
            let (quiet, due, held, gate, missed, request_ended) =
                if let Some(ps) = self.state.pairs.get_mut(buf.as_str()) {
                    if ps.seen_tick == Some(tick) {
                        // The same pair twice in one tick's scores: the first one counts.
                        continue;
                    }
                    let missed = forecast::settle(
                        ps,
                        Some(s),
                        th,
                        input.now_ms,
                        &buf,
                        &mut d.forecast_outcomes,
                    );
                    track_peak_demand(ps, &vms);
                    let gate = gate(ratio, &buf, ps, &vms);
                    if let Some(why) = observe(ps, Some(s.score), th, tick, &gate) {
                        d.skipped.push((
                            buf.clone(),
                            format!(
                                "rollback of {buf} waits: score {:.0} < {:.0}, but {why}",
                                s.score, th.off
                            ),
                        ));
                    }
                    (
                        ps.ticks_quiet,
                        due(
                            &self.rules.ladder,
                            self.rules.config.escalate_after_ticks,
                            ps,
                        ),
                        ps.held,
                        gate,
                        missed,
                        ps.request_ended(input.now_ms),
                    )
                } else if s.score >= th.on {
                    self.state.pairs.insert(
                        buf.clone(),
                        PairState {
                            since_tick: tick,
                            ticks_above: 1,
                            now_ticks_above: u32::from(s.now() >= th.on),
                            last_score: Some(s.score),
                            seen_tick: Some(tick),
                            ..PairState::default()
                        },
                    );
                    (0, Due::Now, false, Gate::Unknown, None, None)
                } else {
                    continue;
                };
            if let Some(why) = request_ended {
                ended.push((buf.clone(), (why, s.score)));
            } else if let Some(m) = missed {
                self.state
                    .forecast_muted
                    .insert(buf.clone(), input.now_ms.saturating_add(m.mute_ms));
                ended.push((buf.clone(), (m.why, s.score)));
            } else if quiet >= k {
                ended.push((
                    buf.clone(),
                    (
                        format!(
                            "score {:.0} < {:.0} for {k} ticks{}",
                            s.score,
                            th.off,
                            gate.calm()
                        ),
                        s.score,
                    ),
                ));
            } else if quiet > 0 || held {
                // Below off, not for long enough yet, or while the aggressor still
                // demands the CPU: hold.
            } else if due == Due::Exhausted {
                d.skipped.push((
                    buf.clone(),
                    format!(
                        "score {:.0} >= {:.0} for {} ticks but every rung is in use",
                        s.score, th.on, self.rules.config.escalate_after_ticks
                    ),
                ));
            } else if due == Due::Now {
                work.push(Work {
                    key: buf.clone(),
                    score: s,
                    victim,
                    aggressor,
                    th,
                });
            }
        }
        if tracking {
            let unscored = Thresholds {
                on: f32::INFINITY,
                off: f32::INFINITY,
            };
            // Collected, then sorted: the map's order is not stable.
            let mut waits = Vec::new();
            for (key, ps) in self.state.pairs.iter_mut() {
                if ps.seen_tick != Some(tick) {
                    if let Some(why) = ps.request_ended(input.now_ms) {
                        ended.push((key.clone(), (why, 0.0)));
                        continue;
                    }
                    if let Some(m) = forecast::settle(
                        ps,
                        None,
                        unscored,
                        input.now_ms,
                        key,
                        &mut d.forecast_outcomes,
                    ) {
                        self.state
                            .forecast_muted
                            .insert(key.clone(), input.now_ms.saturating_add(m.mute_ms));
                        ended.push((key.clone(), (m.why, 0.0)));
                        continue;
                    }
                    track_peak_demand(ps, &vms);
                    let gate = gate(ratio, key, ps, &vms);
                    if let Some(why) = observe(ps, None, unscored, tick, &gate) {
                        waits.push((
                            key.clone(),
                            format!("rollback of {key} waits: no score, but {why}"),
                        ));
                    }
                    if ps.ticks_quiet >= k {
                        ended.push((
                            key.clone(),
                            (format!("no score for {k} ticks{}", gate.calm()), 0.0),
                        ));
                    }
                }
            }
            waits.sort();
            d.skipped.extend(waits);
        }
        // The release order does not matter (rollbacks go by the age of the changes);
        // sorted for a stable decision.
        ended.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, _) in &ended {
            if self
                .state
                .pairs
                .get(key)
                .is_some_and(|p| p.forecast_watch.is_some())
            {
                d.forecast_outcomes
                    .push((key.clone(), super::decision::ForecastResult::Withdrawn));
            }
            self.state.release_pair(key);
        }
        let ended_why: HashMap<String, (String, f32)> = ended.into_iter().collect();

        // 4. Mitigation, highest score first.
        work.sort_by(|a, b| {
            b.score
                .score
                .total_cmp(&a.score.score)
                .then_with(|| a.key.cmp(&b.key))
        });
        let mut tick_ctx = TickCtx {
            input,
            tick,
            host_cpus: &host_cpus,
            claimed: HashSet::new(),
            knobs: HashSet::new(),
            seq: 0,
        };
        for w in &work {
            if let Some(why) = input.hold_new {
                d.skipped
                    .push((w.key.clone(), format!("no new mitigation: {why}")));
                continue;
            }
            escalate::climb(&self.rules, &mut self.state, w, &mut tick_ctx, &mut d);
        }

        // 5. Rollbacks, most recent first.
        rollback::roll_back(
            &self.rules,
            &mut self.state,
            &mut tick_ctx,
            &ended_why,
            &work,
            &mut d,
        );
        d
    }
}
