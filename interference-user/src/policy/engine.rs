//! The decision engine: one call per tick, Contention Scores and the VMs as they are in,
//! [`Action`]s out. Pure logic over plain data: no clock, no I/O, no randomness, so the
//! same inputs and state always give the same decision (and the same action ids).
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

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::action::{Action, ActionResult, Cause, Change, Outcome, Rung};
use super::config::{rung_name, PolicyConfig, Thresholds};
use super::ladder::{self, Half, Plan};
use super::state::{
    pair_key, pair_key_into, Migrated, PairState, Part, Pending, PolicyState, RungState,
};
use super::who::{self, Basis, Roles};
use crate::inventory::Priority;
use crate::predict::{ContentionScore, DirectedScore};

/// One VM as the policy sees it this tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmInput {
    pub name: String,
    pub customer: Option<String>,
    pub priority: Priority,
    pub sla_tier: Option<String>,
    /// CPU used over the last tick, in cores.
    pub cpu_cores: f64,
    /// CPU demand over the last tick, in cores: usage plus the time its threads spent
    /// runnable but waiting for a CPU (seconds per second, summed over its threads). A
    /// weight cut or a pin lowers the usage of a VM that still wants the CPU, not its
    /// demand. 0 when unknown.
    pub cpu_demand_cores: f64,
    /// Current cpu.weight (v2 scale), when known: the reason shows old -> new, and a
    /// weight already past the target is left alone.
    pub cpu_weight: Option<u64>,
    /// Current cpuset (CPUs the VM may run on), when known.
    pub cpuset: Option<Vec<u32>>,
    /// Current guest memory (balloon actual), bytes, when known.
    pub memory_bytes: Option<u64>,
    /// Guest memory as configured (QEMU `-m`, `[[vm]] memory_mib`), bytes, when known:
    /// what a migration destination must have room for.
    pub memory_allocated_bytes: Option<u64>,
    /// The VM's own memory floor, bytes; the higher of it and `balloon_floor_mib` wins.
    pub memory_floor_bytes: Option<u64>,
    /// Balloon and migration go through QMP.
    pub has_qmp: bool,
    /// vCPUs (allocation), when known: carried on actions for billing.
    pub vcpus: Option<u32>,
}

/// Everything one decision looks at besides the policy's own state.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    /// Moves forward by one each tick of this run: action ids embed it (after the run
    /// number the id prefix carries, so ids do not repeat across restarts).
    pub tick: u64,
    /// Milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// The host's online CPUs.
    pub host_cpus: &'a [u32],
    pub vms: &'a [VmInput],
    /// One per unordered pair (`predict::contention_scores`).
    pub scores: &'a [ContentionScore],
    /// Both directions, when available (used to explain a protected aggressor).
    pub directed: &'a [DirectedScore],
    /// What became of the previous decision's actions.
    pub outcomes: &'a [Outcome],
    /// Why no new mitigation may start this tick (the ledger cannot take what it
    /// would owe); rollbacks go on. None: nothing holds them.
    pub hold_new: Option<&'a str>,
}

/// One tick's decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Decision {
    /// In the order to apply them.
    pub actions: Vec<Action>,
    /// (pair, why): what was due and did not happen, rungs passed over, failures
    /// reported by the outcomes.
    pub skipped: Vec<(String, String)>,
}

impl Decision {
    /// Outcomes as if every action ended with `result` at `at_ms`, for dry runs that
    /// skip the enforcement stage, and for tests.
    pub fn outcomes_as(&self, result: ActionResult, at_ms: u64) -> Vec<Outcome> {
        self.actions
            .iter()
            .map(|a| Outcome {
                action_id: a.id.clone(),
                result,
                at_ms,
                effects: Vec::new(),
                error: (result == ActionResult::Failed).then(|| "failed".to_owned()),
            })
            .collect()
    }
}

#[derive(Debug, Error)]
#[error("invalid [policy] configuration: {}", .problems.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; "))]
pub struct PolicyError {
    pub problems: Vec<(String, String)>,
}

/// The engine: the configuration, prepared for lookups, and the state.
#[derive(Debug, Clone)]
pub struct Policy {
    config: PolicyConfig,
    /// Every action id starts with it: `<host>-<run>` in the agent (see
    /// `enforce::journal`), so that ids are unique across hosts and restarts.
    id_prefix: String,
    ladder: Vec<Rung>,
    /// `[[policy.pairs]]` by pair key: (on, off).
    pair_thresholds: HashMap<String, (Option<f32>, Option<f32>)>,
    /// The lowest on threshold anywhere: an untracked pair below it is skipped at once.
    min_on: f32,
    state: PolicyState,
}

/// A pair to consider this tick.
struct Work<'a> {
    key: String,
    score: &'a ContentionScore,
    victim: &'a VmInput,
    aggressor: &'a VmInput,
    th: Thresholds,
}

impl Policy {
    /// A policy with a fresh state. `id_prefix` starts every action id (the agent
    /// passes `<host>-<run>`).
    pub fn new(config: PolicyConfig, id_prefix: impl Into<String>) -> Result<Self, PolicyError> {
        Self::with_state(config, id_prefix, PolicyState::default())
    }

    /// A policy that carries on from a persisted (or replayed) state. Out of dry-run
    /// mode, the simulated changes of an earlier dry run are dropped from it.
    pub fn with_state(
        config: PolicyConfig,
        id_prefix: impl Into<String>,
        mut state: PolicyState,
    ) -> Result<Self, PolicyError> {
        if !config.dry_run {
            state.drop_simulated();
        }
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
        Ok(Self {
            ladder: config.ladder(),
            config,
            id_prefix: id_prefix.into(),
            pair_thresholds,
            min_on,
            state,
        })
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    pub fn state(&self) -> &PolicyState {
        &self.state
    }

    pub fn into_state(self) -> PolicyState {
        self.state
    }

    /// The thresholds for the pair `key` protecting a VM of `tier` (see
    /// [`PolicyConfig::thresholds`]).
    fn thresholds(&self, key: &str, tier: Option<&str>) -> Thresholds {
        let pair = self
            .pair_thresholds
            .get(key)
            .copied()
            .unwrap_or((None, None));
        let t = tier.and_then(|t| self.config.tiers.get(t));
        Thresholds {
            on: pair
                .0
                .or(t.and_then(|t| t.on_threshold))
                .unwrap_or(self.config.on_threshold),
            off: pair
                .1
                .or(t.and_then(|t| t.off_threshold))
                .unwrap_or(self.config.off_threshold),
        }
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
        let mut host_cpus = input.host_cpus.to_vec();
        host_cpus.sort_unstable();
        host_cpus.dedup();

        // 3. Hysteresis. Only tracked pairs and pairs at an on threshold cost more than
        // a comparison.
        let mut work: Vec<Work<'_>> = Vec::new();
        // Pairs quiet for K ticks: (key, (why, score)).
        let mut ended: Vec<(String, (String, f32))> = Vec::new();
        let k = self.config.rollback_after_quiet_ticks;
        let ratio = self.config.quiet_demand_ratio;
        let mut buf = String::new();
        let tracking = !self.state.pairs.is_empty();
        for s in input.scores {
            if (!tracking && s.score < self.min_on) || !s.score.is_finite() || s.vm == s.neighbor {
                continue;
            }
            pair_key_into(&mut buf, &s.vm, &s.neighbor);
            let tracked = tracking && self.state.pairs.contains_key(buf.as_str());
            if !tracked && s.score < self.min_on {
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
            let roles = who::roles(&self.config, victim, aggressor);
            let th = self.thresholds(&buf, roles.protected.sla_tier.as_deref());
            let (quiet, due, held, gate) = if let Some(ps) = self.state.pairs.get_mut(buf.as_str())
            {
                if ps.seen_tick == Some(tick) {
                    // The same pair twice in one tick's scores: the first one counts.
                    continue;
                }
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
                    due(&self.ladder, self.config.escalate_after_ticks, ps),
                    ps.held,
                    gate,
                )
            } else if s.score >= th.on {
                self.state.pairs.insert(
                    buf.clone(),
                    PairState {
                        since_tick: tick,
                        ticks_above: 1,
                        last_score: Some(s.score),
                        seen_tick: Some(tick),
                        ..PairState::default()
                    },
                );
                (0, Due::Now, false, Gate::Unknown)
            } else {
                continue;
            };
            if quiet >= k {
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
                        s.score, th.on, self.config.escalate_after_ticks
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
            self.climb(w, &mut tick_ctx, &mut d);
        }

        // 5. Rollbacks, most recent first.
        self.roll_back(&mut tick_ctx, &ended_why, &work, &mut d);
        d
    }

    fn cap_left(&self, d: &Decision) -> usize {
        self.config
            .max_actions_per_tick
            .saturating_sub(d.actions.len())
    }

    /// The next rung for one active pair whose rung is due ([`Due::Now`]), unless
    /// something holds it back.
    fn climb(&mut self, w: &Work<'_>, t: &mut TickCtx<'_>, d: &mut Decision) {
        let ps = &self.state.pairs[&w.key];
        let Some(first) = self.ladder.iter().position(|r| !ps.done(*r)) else {
            return;
        };
        let last_complete = ps.rungs.iter().rev().find(|r| r.complete).map(|r| r.rung);
        let retry = ps
            .rungs
            .iter()
            .any(|r| r.rung == self.ladder[first] && !r.complete);
        if self.cap_left(d) == 0 {
            d.skipped.push((
                w.key.clone(),
                format!(
                    "cap: {} actions this tick already",
                    self.config.max_actions_per_tick
                ),
            ));
            return;
        }
        let trigger = match (last_complete, retry) {
            (_, true) => format!(
                "score {:.0}, retrying {} after a failed attempt",
                w.score.score,
                rung_name(self.ladder[first])
            ),
            (Some(prev), false) => format!(
                "score {:.0} >= {:.0} for {} ticks after {}",
                w.score.score,
                w.th.on,
                ps.ticks_above,
                rung_name(prev)
            ),
            (None, false) if w.score.score >= w.th.on => {
                format!("score {:.0} >= {:.0}", w.score.score, w.th.on)
            }
            (None, false) => format!(
                "score {:.0} >= off threshold {:.0}, pair active since tick {}",
                w.score.score, w.th.off, ps.since_tick
            ),
        };
        let roles = who::roles(&self.config, w.victim, w.aggressor);
        for i in first..self.ladder.len() {
            let rung = self.ladder[i];
            if self.state.pairs[&w.key].done(rung) {
                continue;
            }
            let ctx = ladder::Ctx {
                config: &self.config,
                host_cpus: t.host_cpus,
                state: &self.state,
            };
            let halves = match ladder::plan(&ctx, rung, &roles) {
                Plan::NotApplicable(why) => {
                    self.pass_over(&w.key, rung, why, d);
                    continue;
                }
                Plan::Halves(h) => h,
            };
            if let Some(Half::Wait(why)) = halves.iter().find(|h| matches!(h, Half::Wait(_))) {
                d.skipped
                    .push((w.key.clone(), format!("{}: {why}", rung_name(rung))));
                return;
            }
            let acts: Vec<&ladder::Act> = halves
                .iter()
                .filter_map(|h| match h {
                    Half::Act(a) => Some(a),
                    _ => None,
                })
                .collect();
            let shares = halves.iter().any(|h| matches!(h, Half::Share { .. }));
            if acts.is_empty() && !shares {
                let why: Vec<&str> = halves
                    .iter()
                    .filter_map(|h| match h {
                        Half::Noop(m) | Half::Conflict(m) => Some(m.as_str()),
                        _ => None,
                    })
                    .collect();
                self.pass_over(
                    &w.key,
                    rung,
                    format!("{}: {}", rung_name(rung), why.join("; ")),
                    d,
                );
                continue;
            }
            if let Some(why) = self.held_back(&acts, t) {
                d.skipped
                    .push((w.key.clone(), format!("{}: {why}", rung_name(rung))));
                return;
            }
            let left = self.cap_left(d);
            if acts.len() > left {
                d.skipped.push((
                    w.key.clone(),
                    format!(
                        "cap: {} needs {} actions, {left} left of {} this tick",
                        rung_name(rung),
                        acts.len(),
                        self.config.max_actions_per_tick
                    ),
                ));
                return;
            }
            for h in &halves {
                if let Half::Conflict(why) = h {
                    d.skipped
                        .push((w.key.clone(), format!("{}: {why}", rung_name(rung))));
                }
            }
            let acts: Vec<ladder::Act> = acts.into_iter().cloned().collect();
            self.apply_rung(w, &roles, rung, &trigger, &halves, acts, t, d);
            return;
        }
    }

    /// Records `rung` as passed over for the pair (it cannot apply), with why.
    fn pass_over(&mut self, key: &str, rung: Rung, why: String, d: &mut Decision) {
        if let Some(ps) = self.state.pairs.get_mut(key) {
            ps.passed.push(rung);
        }
        d.skipped
            .push((key.to_owned(), format!("{why}; passed over")));
    }

    /// Why an action on one of these VMs may not happen this tick, if one may not.
    fn held_back(&self, acts: &[&ladder::Act], t: &TickCtx<'_>) -> Option<String> {
        let cooldown = self.config.cooldown.as_millis() as u64;
        for a in acts {
            if t.claimed.contains(a.vm.as_str()) {
                return Some(format!(
                    "conflict: {} was already changed this tick for a higher-scoring pair",
                    a.vm
                ));
            }
            if let Some(last) = self.state.last_change_ms(&a.vm) {
                let since = t.input.now_ms.saturating_sub(last);
                if since < cooldown {
                    return Some(format!(
                        "cooldown: {} changed {} ago (cooldown {})",
                        a.vm,
                        humantime::format_duration(std::time::Duration::from_millis(since)),
                        humantime::format_duration(self.config.cooldown)
                    ));
                }
            }
        }
        None
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; the pieces are the climb's locals"
    )]
    fn apply_rung(
        &mut self,
        w: &Work<'_>,
        roles: &Roles<'_>,
        rung: Rung,
        trigger: &str,
        halves: &[Half],
        acts: Vec<ladder::Act>,
        t: &mut TickCtx<'_>,
        d: &mut Decision,
    ) {
        let tick = t.tick;
        // The first rung (nothing of the pair in force yet, so the other VM's demand is
        // its own): record the demand the rollback will be measured against. The other
        // VM is the one the protected VM is shielded from: the aggressor, or the VM
        // reduced for a priority VM that is itself the aggressor.
        let other = if roles.protected.name == w.victim.name {
            w.aggressor
        } else {
            w.victim
        };
        let demand = other.cpu_demand_cores;
        let cause = (self.state.pairs[&w.key].parts().next().is_none()
            && demand.is_finite()
            && demand > 0.0)
            .then(|| Cause {
                vm: other.name.clone(),
                demand_cores: demand,
            });
        let note = cause
            .as_ref()
            .map(|c| format!(", {} demands {:.2} cores", c.vm, c.demand_cores))
            .unwrap_or_default();
        let mut parts = Vec::new();
        for h in halves {
            if let Half::Share { vm } = h {
                if let Some(id) = self.state.share(vm, rung, &w.key) {
                    parts.push(Part {
                        vm: vm.clone(),
                        action_id: id,
                    });
                }
            }
        }
        let complete_now = acts.is_empty();
        let ps = self
            .state
            .pairs
            .get_mut(&w.key)
            .expect("work items are active pairs");
        if cause.is_some() {
            ps.cause = cause.clone();
        }
        match ps.rungs.iter_mut().find(|r| r.rung == rung) {
            Some(r) => {
                r.tick = tick;
                for p in parts {
                    if !r.parts.contains(&p) {
                        r.parts.push(p);
                    }
                }
                r.complete |= complete_now;
            }
            None => ps.rungs.push(RungState {
                rung,
                tick,
                complete: complete_now,
                parts,
            }),
        }
        if complete_now {
            ps.ticks_above = 0;
            ps.last_escalation_tick = Some(tick);
            return;
        }
        let reverse = (roles.basis == Basis::PriorityAggressor)
            .then(|| {
                t.input
                    .directed
                    .iter()
                    .find(|x| x.victim == w.aggressor.name && x.aggressor == w.victim.name)
                    .map(|x| x.slowdown)
            })
            .flatten();
        let who = who::describe(&self.config, roles, reverse);
        for a in acts {
            let action = Action {
                id: format!("{}-{tick}-{}", self.id_prefix, t.seq),
                decided_ms: t.input.now_ms,
                rung,
                vm: a.vm.clone(),
                protects: roles.protected.name.clone(),
                victim: w.victim.name.clone(),
                aggressor: w.aggressor.name.clone(),
                score: w.score.score,
                vm_is_aggressor: a.vm == w.aggressor.name,
                unobservable: w
                    .score
                    .unobservable
                    .iter()
                    .map(|d| (*d).to_owned())
                    .collect(),
                cause: cause.clone(),
                customers: pair_customers(w.victim, w.aggressor),
                vcpus: if a.vm == w.victim.name {
                    w.victim.vcpus
                } else {
                    w.aggressor.vcpus
                },
                simulated: self.config.dry_run,
                reason: format!("{trigger}{note}: {who}; {}", a.what),
                change: a.change,
            };
            if let Change::Migrate { uri, .. } = &action.change {
                // Taken from the target's room now, so that the next pair this tick
                // sees it; a failed outcome gives it back.
                let moved = if a.vm == w.victim.name {
                    w.victim
                } else {
                    w.aggressor
                };
                if let Ok((vcpus, memory_mib)) = ladder::migration_size(moved) {
                    self.state.migrated.push(Migrated {
                        uri: uri.clone(),
                        action_id: action.id.clone(),
                        vm: a.vm.clone(),
                        vcpus,
                        memory_mib,
                        simulated: action.simulated,
                    });
                }
            }
            self.state.pending.push(Pending {
                action: action.clone(),
                tick,
                seq: t.seq,
                pair: w.key.clone(),
            });
            t.knobs.insert((a.vm.clone(), rung));
            t.claimed.insert(a.vm);
            t.seq += 1;
            d.actions.push(action);
        }
    }

    /// Rolls back the changes nobody relies on any more, most recent first.
    fn roll_back(
        &mut self,
        t: &mut TickCtx<'_>,
        ended_why: &HashMap<String, (String, f32)>,
        work: &[Work<'_>],
        d: &mut Decision,
    ) {
        let tick = t.tick;
        let due: Vec<(String, Rung, Action)> = self
            .state
            .orphans()
            .into_iter()
            .map(|(vm, rung, h)| (vm.to_owned(), rung, h.action.clone()))
            .collect();
        for (vm, rung, original) in due {
            let key = pair_key(&original.victim, &original.aggressor);
            if rung == Rung::Migrate {
                // A migration is not undone; the VM leaves the inventory when it is done.
                if let Some(v) = self.state.vms.get_mut(&vm) {
                    v.holdings.remove(&rung);
                }
                continue;
            }
            // Another knob of the same VM changed this tick does not conflict with
            // undoing this one; the same knob would (it cannot happen today: a new
            // change to a knob due for rollback waits for it, or adopts it).
            if t.knobs.contains(&(vm.clone(), rung)) {
                d.skipped.push((
                    key,
                    format!(
                        "rollback of {}: {vm}'s {} was already changed this tick",
                        original.id,
                        rung_name(rung)
                    ),
                ));
                continue;
            }
            if self.cap_left(d) == 0 {
                d.skipped.push((
                    key,
                    format!(
                        "cap: rollback of {} waits, {} actions this tick already",
                        original.id, self.config.max_actions_per_tick
                    ),
                ));
                continue;
            }
            // The pair's score this tick, when it was scored (a rollback held back by the
            // cap may find its pair scored again).
            let (why, score) = match ended_why.get(&key) {
                Some((why, score)) => (why.clone(), *score),
                None => (
                    format!("mitigation of {key} has ended"),
                    work.iter()
                        .find(|w| w.key == key)
                        .map_or(0.0, |w| w.score.score),
                ),
            };
            let id = format!("{}-{tick}-{}", self.id_prefix, t.seq);
            let action = Action {
                id: id.clone(),
                decided_ms: t.input.now_ms,
                rung,
                change: Change::Rollback {
                    action_id: original.id.clone(),
                },
                vm: vm.clone(),
                protects: original.protects.clone(),
                victim: original.victim.clone(),
                aggressor: original.aggressor.clone(),
                score,
                vm_is_aggressor: original.vm_is_aggressor,
                unobservable: original.unobservable.clone(),
                cause: None,
                customers: original.customers.clone(),
                vcpus: original.vcpus,
                simulated: self.config.dry_run || original.simulated,
                reason: format!(
                    "{why}: roll back {} ({})",
                    original.id,
                    super::state::reason_tail(&original)
                ),
            };
            if let Some(h) = self
                .state
                .vms
                .get_mut(&vm)
                .and_then(|v| v.holdings.get_mut(&rung))
            {
                h.rollback = Some(id);
            }
            self.state.pending.push(Pending {
                action: action.clone(),
                tick,
                seq: t.seq,
                pair: key,
            });
            t.knobs.insert((vm, rung));
            t.seq += 1;
            d.actions.push(action);
        }
    }
}

/// VM name -> customer for the VMs of a pair that have one.
fn pair_customers(a: &VmInput, b: &VmInput) -> BTreeMap<String, String> {
    [a, b]
        .into_iter()
        .filter_map(|v| Some((v.name.clone(), v.customer.clone()?)))
        .collect()
}

/// Per-tick bookkeeping shared by the mitigation and rollback passes.
struct TickCtx<'a> {
    input: &'a PolicyInput<'a>,
    /// The tick the ids carry (normally `input.tick`).
    tick: u64,
    host_cpus: &'a [u32],
    /// VMs changed by a mitigation action of this tick: no other pair changes them.
    claimed: HashSet<String>,
    /// (VM, knob) changed by any action of this tick.
    knobs: HashSet<(String, Rung)>,
    seq: u32,
}

/// Whether an active pair (not below its off threshold) has a rung to take now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Its first rung, a retry of a rung that failed, or the next rung after
    /// `escalate_after_ticks` ticks above on.
    Now,
    /// Waiting for the last rung to show its effect.
    Later,
    /// Every rung is in use or passed over; reported when escalation would be due.
    Exhausted,
    /// As `Exhausted`, already reported.
    Nothing,
}

fn due(ladder: &[Rung], e: u32, ps: &PairState) -> Due {
    let Some(next) = ladder.iter().find(|r| !ps.done(**r)) else {
        return if ps.ticks_above == e {
            Due::Exhausted
        } else {
            Due::Nothing
        };
    };
    let any_complete = ps.rungs.iter().any(|r| r.complete);
    let retry = ps.rungs.iter().any(|r| r.rung == *next && !r.complete);
    if !any_complete || retry || ps.ticks_above >= e {
        Due::Now
    } else {
        Due::Later
    }
}

/// Whether the cause of a pair's mitigation is gone, as far as the aggressor's CPU
/// demand tells.
#[derive(Debug, Clone, PartialEq)]
enum Gate {
    /// No demand recorded, none measured this tick, or nothing in force: the score
    /// alone decides.
    Unknown,
    /// This VM of the pair has left the inventory.
    Gone(String),
    /// The aggressor's demand has fallen to the ratio (now, then).
    Calm(String, f64, f64),
    /// The aggressor still demands more (now, then, the most that counts as calm).
    Busy(String, f64, f64, f64),
}

impl Gate {
    /// The clause a rollback's reason gets from it.
    fn calm(&self) -> String {
        match self {
            Gate::Unknown | Gate::Busy(..) => String::new(),
            Gate::Gone(vm) => format!(" and {vm} is gone"),
            Gate::Calm(vm, now, then) => {
                format!(" and {vm} demands {now:.2} cores (peak {then:.2} while mitigated)")
            }
        }
    }
}

/// While a pair's mitigation is in force, its cause's demand is the highest seen: the
/// first rung may be decided on the first busy tick, before the VM is at full demand,
/// and a rollback must wait for the demand to fall from its peak, not from that.
fn track_peak_demand(ps: &mut PairState, vms: &HashMap<&str, &VmInput>) {
    if ps.parts().next().is_none() {
        return;
    }
    if let Some(cause) = ps.cause.as_mut() {
        if let Some(now) = vms
            .get(cause.vm.as_str())
            .map(|v| v.cpu_demand_cores)
            .filter(|d| d.is_finite())
        {
            cause.demand_cores = cause.demand_cores.max(now);
        }
    }
}

/// The gate of the pair `key` this tick.
fn gate(ratio: f64, key: &str, ps: &PairState, vms: &HashMap<&str, &VmInput>) -> Gate {
    // Nothing of the pair in force (its first rung failed): nothing a rollback would
    // bring the contention back by.
    let Some(cause) = ps
        .cause
        .as_ref()
        .filter(|c| c.demand_cores > 0.0 && ps.parts().next().is_some())
    else {
        return Gate::Unknown;
    };
    // Either VM gone: nothing left to protect, or nobody left to protect from.
    for vm in key.split('/') {
        if !vms.contains_key(vm) {
            return Gate::Gone(vm.to_owned());
        }
    }
    let Some(other) = vms.get(cause.vm.as_str()) else {
        return Gate::Gone(cause.vm.clone());
    };
    let (now, then) = (other.cpu_demand_cores, cause.demand_cores);
    let limit = ratio * then;
    if !(now.is_finite() && now > 0.0) {
        Gate::Unknown
    } else if now <= limit {
        Gate::Calm(cause.vm.clone(), now, then)
    } else {
        Gate::Busy(cause.vm.clone(), now, then, limit)
    }
}

/// Updates a pair's hysteresis counters with this tick's score (None: not scored). A
/// tick below off counts as quiet unless the gate is busy; then the pair is held, and
/// when the hold starts this returns why, to report once.
fn observe(
    ps: &mut PairState,
    score: Option<f32>,
    th: Thresholds,
    tick: u64,
    gate: &Gate,
) -> Option<String> {
    ps.seen_tick = Some(tick);
    ps.last_score = score;
    let was_held = std::mem::take(&mut ps.held);
    match score {
        Some(s) if s >= th.on => {
            ps.ticks_above += 1;
            ps.ticks_quiet = 0;
        }
        Some(s) if s >= th.off => {
            ps.ticks_above = 0;
            ps.ticks_quiet = 0;
        }
        _ => {
            ps.ticks_above = 0;
            if let Gate::Busy(vm, now, then, limit) = gate {
                ps.ticks_quiet = 0;
                ps.held = true;
                return (!was_held).then(|| {
                    format!(
                        "{vm} still demands {now:.2} cores (peak {then:.2} while mitigated; \
                         quiet ticks count from {limit:.2} down)"
                    )
                });
            }
            ps.ticks_quiet += 1;
        }
    }
    None
}
