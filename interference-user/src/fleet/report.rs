//! What the ticks tell the controller besides the ledger (docs/controller.md, "What
//! reaches the controller"): the phases of each action, a pair's score when it is at
//! or above the off threshold (its highest in each minute), the host's capacity once
//! a minute, and a summary of each VM per rollup window. Raw samples and the scores of
//! quiet pairs stay on the host.
//!
//! Rollup windows are aligned on the epoch; a window the agent started or stopped
//! within begins at its first tick and says how long it covers (`window_ms`), so two
//! runs never share a rollup id and VM-hours add up. An action's `outcome` phase is
//! the protected VM's mean run-queue wait over the minute after the action took
//! effect (the rollout compares it between models); an agent that stops within that
//! minute sends none for it.

use std::collections::BTreeMap;

use interference_fleet::wire::{
    ActionPhase, Capacity, CapacitySample, Item, Phase, Rollup, ScoreEvent,
};

use crate::policy::{Action, ActionResult, Change, Outcome};
use crate::predict::ContentionScore;
use crate::telemetry::VmSample;

/// How long after an action the protected VM's run-queue wait is measured.
pub const OUTCOME_AFTER_MS: u64 = 60_000;

/// Hot pairs are reported at most once per this long (their highest score in it).
const SCORE_EVENT_MS: u64 = 60_000;

/// Capacity samples: one per this long.
const CAPACITY_EVERY_MS: u64 = 60_000;

/// One tick, as the report needs it.
pub struct ReportInput<'a> {
    pub now_ms: u64,
    pub samples: &'a [VmSample],
    /// This tick's scoring round's pairs (empty between rounds).
    pub pairs: &'a [ContentionScore],
    /// Pairs scored at or above it become score events (None: no policy, no events).
    pub off_threshold: Option<f32>,
    /// What the policy did this tick.
    pub actions: &'a [(Action, Outcome)],
    pub capacity: Capacity,
    /// The model bundle acting (None: the host's own scorer), named in every item.
    pub model_sha: Option<&'a str>,
    /// The shadow bundle and its pair scores of this round.
    pub shadow: Option<(&'a str, &'a [ContentionScore])>,
    /// With forecasting on: the forecaster's round number and its last one-step-ahead
    /// error per VM (percent points of the VM's cores).
    pub forecast_errors: Option<(u64, &'a BTreeMap<String, f64>)>,
}

pub struct Reporter {
    window_ms: u64,
    windows: BTreeMap<String, Window>,
    /// (victim, aggressor, shadow) -> the highest event of its current minute.
    hot: BTreeMap<(String, String, bool), ScoreEvent>,
    last_capacity: Option<u64>,
    watches: Vec<Watch>,
    /// The forecaster round whose errors were counted last.
    forecast_round: u64,
}

/// One VM's open rollup window.
#[derive(Debug, Default)]
struct Window {
    index: u64,
    start_ms: u64,
    uuid: Option<String>,
    customer: Option<String>,
    seconds: f64,
    cpu_seconds: f64,
    wait_seconds: f64,
    preempted_seconds: f64,
    io_ops: u64,
    io_bytes: u64,
    memory_bytes: u64,
    max_score: f32,
    actions: u32,
    /// The model acting at the window's last tick.
    model_sha: Option<String>,
    /// One-step-ahead forecast errors of the window: their sum and count.
    forecast_error: f64,
    forecasts: u32,
}

/// An applied action whose protected VM is watched for [`OUTCOME_AFTER_MS`].
struct Watch {
    phase: ActionPhase,
    protects: String,
    since_ms: u64,
    seconds: f64,
    wait_seconds: f64,
}

impl Reporter {
    /// `window_ms`: the rollup window (`[fleet] rollup_window`).
    pub fn new(window_ms: u64) -> Self {
        Self {
            window_ms: window_ms.max(1),
            windows: BTreeMap::new(),
            hot: BTreeMap::new(),
            last_capacity: None,
            watches: Vec::new(),
            forecast_round: 0,
        }
    }

    /// The items this tick completes.
    pub fn tick(&mut self, t: &ReportInput<'_>) -> Vec<Item> {
        let mut out = Vec::new();
        for s in t.samples {
            self.add_sample(s, &mut out);
            if let Some(w) = self.windows.get_mut(&s.vm) {
                w.model_sha = t.model_sha.map(str::to_owned);
            }
        }
        // A VM that left: its window closes once a whole window passed without it.
        let now = t.now_ms.saturating_sub(1) / self.window_ms;
        self.close_windows(now.saturating_sub(1), &mut out);
        if let Some((round, errors)) = t.forecast_errors {
            if round != self.forecast_round {
                self.forecast_round = round;
                for (vm, e) in errors {
                    if let Some(w) = self.windows.get_mut(vm) {
                        w.forecast_error += e;
                        w.forecasts += 1;
                    }
                }
            }
        }
        self.watch(t, &mut out);
        self.phases(t, &mut out);
        self.scores(t, &mut out);
        if self
            .last_capacity
            .is_none_or(|last| t.now_ms / CAPACITY_EVERY_MS != last / CAPACITY_EVERY_MS)
        {
            self.last_capacity = Some(t.now_ms);
            out.push(Item::Capacity(CapacitySample {
                at_ms: t.now_ms,
                capacity: t.capacity,
            }));
        }
        out
    }

    /// At exit: the open windows and the minute's hot pairs, as they are.
    pub fn flush(&mut self) -> Vec<Item> {
        let mut out = Vec::new();
        self.close_windows(u64::MAX, &mut out);
        out.extend(std::mem::take(&mut self.hot).into_values().map(Item::Score));
        out
    }

    fn phases(&mut self, t: &ReportInput<'_>, out: &mut Vec<Item>) {
        for (action, outcome) in t.actions {
            let Some(mut phase) = phase_of(action, outcome) else {
                continue;
            };
            phase.model_sha = t.model_sha.map(str::to_owned);
            if phase.phase == Phase::Done {
                for vm in [&action.vm, &action.protects] {
                    if let Some(w) = self.windows.get_mut(vm) {
                        w.actions += 1;
                    }
                }
                self.watches.push(Watch {
                    phase: ActionPhase {
                        id: format!("{}/outcome", phase.action_id),
                        phase: Phase::Outcome,
                        detail: serde_json::Value::Null,
                        ..phase.clone()
                    },
                    protects: action.protects.clone(),
                    since_ms: outcome.at_ms,
                    seconds: 0.0,
                    wait_seconds: 0.0,
                });
            }
            out.push(Item::ActionPhase(phase));
        }
    }

    fn close_windows(&mut self, before: u64, out: &mut Vec<Item>) {
        let closed: Vec<String> = self
            .windows
            .iter()
            .filter(|(_, w)| w.index < before)
            .map(|(vm, _)| vm.clone())
            .collect();
        for vm in closed {
            if let Some(w) = self.windows.remove(&vm) {
                if w.seconds > 0.0 {
                    out.push(Item::Rollup(w.rollup(vm)));
                }
            }
        }
    }

    /// Adds a sample to its VM's window; a sample of a later window closes the open one.
    fn add_sample(&mut self, s: &VmSample, out: &mut Vec<Item>) {
        let index = s.timestamp_ms.saturating_sub(1) / self.window_ms;
        let interval_ms = (s.interval_seconds * 1000.0).round() as u64;
        if self.windows.get(&s.vm).is_some_and(|w| w.index < index) {
            if let Some(w) = self.windows.remove(&s.vm) {
                if w.seconds > 0.0 {
                    out.push(Item::Rollup(w.rollup(s.vm.clone())));
                }
            }
        }
        let w = self.windows.entry(s.vm.clone()).or_insert_with(|| Window {
            index,
            start_ms: (index * self.window_ms).max(s.timestamp_ms.saturating_sub(interval_ms)),
            ..Window::default()
        });
        w.uuid.clone_from(&s.uuid);
        w.customer.clone_from(&s.customer);
        w.seconds += s.interval_seconds;
        w.cpu_seconds += s.cpu.as_ref().map_or(0.0, |c| c.usage_seconds);
        w.wait_seconds += s.runqueue.wait_seconds;
        w.preempted_seconds += s
            .preempted_by
            .iter()
            .filter(|p| p.by != s.vm)
            .map(|p| p.seconds)
            .sum::<f64>();
        if let Some(io) = &s.block_io {
            w.io_ops += io.read_ops + io.write_ops + io.other_ops;
            w.io_bytes += io.read_bytes + io.write_bytes + io.other_bytes;
        }
        if let Some(m) = &s.memory {
            w.memory_bytes = w.memory_bytes.max(m.usage_bytes);
        }
    }

    fn watch(&mut self, t: &ReportInput<'_>, out: &mut Vec<Item>) {
        for w in &mut self.watches {
            for s in t.samples {
                if s.vm == w.protects && s.timestamp_ms > w.since_ms {
                    w.seconds += s.interval_seconds;
                    w.wait_seconds += s.runqueue.wait_seconds;
                }
            }
        }
        let (done, open): (Vec<Watch>, Vec<Watch>) = std::mem::take(&mut self.watches)
            .into_iter()
            .partition(|w| t.now_ms >= w.since_ms + OUTCOME_AFTER_MS);
        self.watches = open;
        for w in done {
            if w.seconds <= 0.0 {
                continue; // the protected VM left: nothing measured
            }
            out.push(Item::ActionPhase(ActionPhase {
                at_ms: t.now_ms,
                victim_wait_after_ms: Some(w.wait_seconds * 1000.0 / w.seconds),
                ..w.phase
            }));
        }
    }

    fn scores(&mut self, t: &ReportInput<'_>, out: &mut Vec<Item>) {
        let minute = t.now_ms / SCORE_EVENT_MS;
        let ended: Vec<(String, String, bool)> = self
            .hot
            .iter()
            .filter(|(_, e)| e.at_ms / SCORE_EVENT_MS != minute)
            .map(|(k, _)| k.clone())
            .collect();
        for k in ended {
            if let Some(e) = self.hot.remove(&k) {
                out.push(Item::Score(e));
            }
        }
        let Some(off) = t.off_threshold else {
            return;
        };
        for p in t.pairs.iter().filter(|p| p.score >= off) {
            for vm in [&p.vm, &p.neighbor] {
                if let Some(w) = self.windows.get_mut(vm) {
                    w.max_score = w.max_score.max(p.score);
                }
            }
            self.hot_pair(p, t.now_ms, t.model_sha, false);
        }
        if let Some((sha, pairs)) = t.shadow {
            for p in pairs.iter().filter(|p| p.score >= off) {
                self.hot_pair(p, t.now_ms, Some(sha), true);
            }
        }
    }

    /// Keeps `p` as its pair's event of the minute if it is the highest so far.
    fn hot_pair(&mut self, p: &ContentionScore, now_ms: u64, model: Option<&str>, shadow: bool) {
        let key = (p.victim.clone(), p.aggressor.clone(), shadow);
        if self.hot.get(&key).is_some_and(|e| e.score >= p.score) {
            return;
        }
        self.hot.insert(
            key,
            ScoreEvent {
                victim: p.victim.clone(),
                aggressor: p.aggressor.clone(),
                at_ms: now_ms,
                score: p.score,
                model_sha: model.map(str::to_owned),
                shadow,
            },
        );
    }
}

/// The phases a journal holds, and the rollbacks a restore made of them (outcomes with
/// the id `restore:<action id>`). At start this resends what a crashed run did (its
/// phases may not have reached the outbox; ids make a resend harmless) and reports the
/// crashed run's changes put back; at exit, what the clean stop put back.
pub fn journal_phases(history: &[(Action, Outcome)], restored: &[Outcome]) -> Vec<Item> {
    let mut out: Vec<Item> = history
        .iter()
        .filter_map(|(a, o)| phase_of(a, o))
        .map(Item::ActionPhase)
        .collect();
    for o in restored {
        let Some(id) = o.action_id.strip_prefix("restore:") else {
            continue;
        };
        let Some((original, _)) = history.iter().find(|(a, _)| a.id == id) else {
            continue;
        };
        let undo = Action {
            change: Change::Rollback {
                action_id: id.to_owned(),
            },
            reason: "put back when the agent stopped or restarted".into(),
            ..original.clone()
        };
        out.extend(phase_of(&undo, o).map(Item::ActionPhase));
    }
    out
}

/// An applied or failed action's phase (`done`, `failed`, or `rollback` under the
/// id of the action rolled back); None for dry runs and failed rollbacks.
fn phase_of(action: &Action, outcome: &Outcome) -> Option<ActionPhase> {
    let (action_id, phase) = match (&action.change, outcome.result) {
        (_, ActionResult::Simulated) | (Change::Rollback { .. }, ActionResult::Failed) => {
            return None
        }
        (Change::Rollback { action_id }, ActionResult::Applied) => {
            (action_id.clone(), Phase::Rollback)
        }
        (_, ActionResult::Applied) => (action.id.clone(), Phase::Done),
        (_, ActionResult::Failed) => (action.id.clone(), Phase::Failed),
    };
    let rollback = phase == Phase::Rollback;
    Some(ActionPhase {
        id: format!("{action_id}/{}", phase.as_str()),
        action_id,
        phase,
        at_ms: outcome.at_ms,
        rung: (!rollback).then(|| action.change.name().to_owned()),
        vm: Some(action.vm.clone()),
        vm_uuid: None,
        customer: action.customers.get(&action.vm).cloned(),
        model_sha: None,
        victim_wait_after_ms: None,
        detail: serde_json::json!({
            "protects": action.protects,
            "victim": action.victim,
            "aggressor": action.aggressor,
            "score": action.score,
            "trigger": action.trigger.as_str(),
            "reason": action.reason,
            "error": outcome.error,
        }),
    })
}

impl Window {
    fn rollup(self, vm: String) -> Rollup {
        let per_second = |x: f64| x / self.seconds;
        Rollup {
            vm,
            vm_uuid: self.uuid,
            customer: self.customer,
            window_start_ms: self.start_ms,
            window_ms: (self.seconds * 1000.0).round() as u64,
            cpu_usage_cores: per_second(self.cpu_seconds),
            run_queue_wait_ms: per_second(self.wait_seconds) * 1000.0,
            preempted_ms: per_second(self.preempted_seconds) * 1000.0,
            io_ops: self.io_ops,
            io_bytes: self.io_bytes,
            memory_mib: self.memory_bytes >> 20,
            max_score: self.max_score,
            actions: self.actions,
            forecast_abs_error: (self.forecasts > 0)
                .then(|| self.forecast_error / f64::from(self.forecasts)),
            model_sha: self.model_sha,
        }
    }
}

#[cfg(test)]
mod tests;
