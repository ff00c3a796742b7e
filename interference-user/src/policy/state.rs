//! What the policy remembers between ticks: per pair, its hysteresis counters and the
//! rungs it climbed; per VM, when it last changed and which changes are in force.
//!
//! A change in force is a [`Holding`]: one VM, one knob (one per rung: cpu.weight,
//! cpuset, balloon, migration), the action that set it, and the pairs that rely on it.
//! Two hot pairs that both protect web-1 share web-1's boost instead of writing it
//! twice, and a pair that calms down releases its holdings rather than undoing them
//! outright: only a holding nobody relies on any more is rolled back. That keeps every
//! knob with at most one policy change in force, so rollbacks restore what the
//! enforcement stage journalled in the order it was written.
//!
//! Only changes whose outcome came back applied (or simulated) become holdings; a
//! failed action leaves the ladder where it was. The state lives as long as the agent's
//! run: every change is put back at exit and at the next start, so a new run starts
//! from nothing in force.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::action::{Action, ActionResult, Cause, Change, Outcome, Rung};

/// The key of an unordered pair: `"a/b"` with `a < b`. VM names never contain '/'
/// (`inventory::names`).
pub fn pair_key(a: &str, b: &str) -> String {
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    let mut key = String::with_capacity(a.len() + b.len() + 1);
    key.push_str(a);
    key.push('/');
    key.push_str(b);
    key
}

/// The same into a reused buffer (the per-tick loop over every pair).
pub(crate) fn pair_key_into(buf: &mut String, a: &str, b: &str) {
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    buf.clear();
    buf.push_str(a);
    buf.push('/');
    buf.push_str(b);
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyState {
    /// Active pairs (mitigating, or about to), by [`pair_key`]. (A hash map: the engine
    /// looks every scored pair up each tick; serialised in key order.)
    #[serde(default, serialize_with = "sorted")]
    pub pairs: HashMap<String, PairState>,
    /// VMs the policy changed, by name.
    #[serde(default)]
    pub vms: BTreeMap<String, VmState>,
    /// The last tick decided (action ids embed it, so it only moves forward).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tick: Option<u64>,
    /// Actions decided last tick whose outcomes the next tick brings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Pending>,
    /// The VMs this agent has migrated (or is migrating: decided, outcome not in yet)
    /// to each target: what they take of the target's declared free capacity. A
    /// failed migration gives it back. Absent in states written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrated: Vec<Migrated>,
    /// Pairs whose forecast did not come true, by [`pair_key`], and until when (ms
    /// since the epoch) only their measured score counts: a forecast that keeps
    /// promising contention that never comes would otherwise apply and roll back the
    /// same weight again and again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub forecast_muted: BTreeMap<String, u64>,
}

/// One VM migrated to a target by this agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migrated {
    /// The target's migration URI (`[[policy.migration.targets]] uri`).
    pub uri: String,
    /// The migrate action.
    pub action_id: String,
    pub vm: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// Decided in dry-run mode: forgotten with the other simulated changes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub simulated: bool,
}

impl Migrated {
    /// What a migrate action took, from the action alone: the size its change
    /// carries, else the action's `vcpus` and no memory (actions of earlier versions).
    pub fn from_action(action: &Action, uri: &str) -> Self {
        let (vcpus, memory_mib) = match &action.change {
            Change::Migrate {
                vcpus, memory_mib, ..
            } => (vcpus.or(action.vcpus).unwrap_or(0), memory_mib.unwrap_or(0)),
            _ => (action.vcpus.unwrap_or(0), 0),
        };
        Self {
            uri: uri.to_owned(),
            action_id: action.id.clone(),
            vm: action.vm.clone(),
            vcpus,
            memory_mib,
            simulated: action.simulated,
        }
    }
}

/// "2 vCPUs, 4096 MiB", as migrate actions say it.
pub(crate) fn size_text(vcpus: u64, memory_mib: u64) -> String {
    format!(
        "{vcpus} vCPU{}, {memory_mib} MiB",
        if vcpus == 1 { "" } else { "s" }
    )
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairState {
    /// Tick the pair became active.
    pub since_tick: u64,
    /// Consecutive ticks at or above the on threshold since the last rung took effect.
    pub ticks_above: u32,
    /// Consecutive ticks below the off threshold (or without a score).
    pub ticks_quiet: u32,
    /// Rungs climbed, in order; a rung is `complete` once every one of its actions came
    /// back applied.
    pub rungs: Vec<RungState>,
    /// Rungs passed over because they could not apply to this pair (single CPU, no QMP
    /// socket, memory at its floor, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passed: Vec<Rung>,
    /// Tick of the decision whose rung completed last.
    pub last_escalation_tick: Option<u64>,
    pub last_score: Option<f32>,
    /// The aggressor and its CPU demand when the pair's first rung was decided: the
    /// rollback waits while the aggressor still demands more than `quiet_demand_ratio`
    /// of it. None when unknown (the score alone decides, as before). Absent in states
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// Below the off threshold, but the rollback is held by the aggressor's demand
    /// (reported once each time the hold starts).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// Consecutive ticks whose *measured* score (without the forecast part) was at or
    /// above the on threshold: pin, balloon and migration wait for 2 when forecasting
    /// is on.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub now_ticks_above: u32,
    /// The pair's mitigation started on a forecast: until when it must come true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast_watch: Option<ForecastWatch>,
    /// The protected VM is a priority VM only by its customer's request, which ends
    /// then: the pair's mitigation ends with it (a hot pair starts again with the
    /// ordinary roles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_until_ms: Option<u64>,
    /// The VM that request made a priority VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_to: Option<String>,
    /// The tick whose scores last updated the counters (not persisted).
    #[serde(skip)]
    pub(crate) seen_tick: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A mitigation started on a forecast, waiting for the contention it forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastWatch {
    /// The forecast's horizon from the decision: if neither the measured score nor the
    /// realised one reached the on threshold by then, the forecast missed.
    pub deadline_ms: u64,
    /// The forecast score that raised the alarm, and its horizon (for the reasons).
    pub forecast: f32,
    pub horizon_ms: u64,
}

impl PairState {
    /// Why the pair's mitigation ends now, when a priority request it was owed to has
    /// ended by `now_ms`.
    pub fn request_ended(&self, now_ms: u64) -> Option<String> {
        let until = self.granted_until_ms.filter(|u| now_ms >= *u)?;
        Some(format!(
            "the priority request that protected {} ended at {}",
            self.granted_to.as_deref().unwrap_or("its priority VM"),
            interference_core::billing::period::rfc3339(until)
        ))
    }

    /// Whether `rung` is done for this pair: complete, or passed over.
    pub fn done(&self, rung: Rung) -> bool {
        self.passed.contains(&rung) || self.rungs.iter().any(|r| r.rung == rung && r.complete)
    }

    /// The rungs that hold something, as (vm, rung, action id) in the order they were
    /// taken.
    pub fn parts(&self) -> impl Iterator<Item = (&str, Rung, &str)> {
        self.rungs.iter().flat_map(|r| {
            r.parts
                .iter()
                .map(move |p| (p.vm.as_str(), r.rung, p.action_id.as_str()))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RungState {
    pub rung: Rung,
    /// Tick of the (last) decision for this rung.
    pub tick: u64,
    pub complete: bool,
    /// The holdings this rung relies on (its own actions and shared ones).
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    pub vm: String,
    /// The action that set the holding (this pair's or another pair's).
    pub action_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmState {
    /// When the policy last changed this VM or tried to (decision time, ms since the
    /// epoch): the cooldown runs from here.
    pub last_change_ms: Option<u64>,
    /// The policy's changes in force on this VM, one per knob (keyed by the rung that
    /// owns the knob).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub holdings: BTreeMap<Rung, Holding>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holding {
    /// The action that made the change (its id is what a rollback names).
    pub action: Action,
    pub tick: u64,
    pub seq: u32,
    /// The pairs relying on it; none left means it is due for rollback.
    pub holders: BTreeSet<String>,
    /// The id of the rollback in flight, if one was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
}

impl Holding {
    pub fn is_orphan(&self) -> bool {
        self.holders.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub action: Action,
    pub tick: u64,
    pub seq: u32,
    /// The pair the action was decided for.
    pub pair: String,
}

fn sorted<S: serde::Serializer, V: Serialize>(
    map: &HashMap<String, V>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let sorted: BTreeMap<&String, &V> = map.iter().collect();
    sorted.serialize(s)
}

impl PolicyState {
    pub fn holding(&self, vm: &str, rung: Rung) -> Option<&Holding> {
        self.vms.get(vm).and_then(|v| v.holdings.get(&rung))
    }

    pub fn last_change_ms(&self, vm: &str) -> Option<u64> {
        self.vms.get(vm).and_then(|v| v.last_change_ms)
    }

    /// What this agent has migrated (or is migrating) to the target `uri`, as (vCPUs,
    /// MiB).
    pub fn migrated_to(&self, uri: &str) -> (u64, u64) {
        self.migrated
            .iter()
            .filter(|m| m.uri == uri)
            .fold((0, 0), |(v, mib), m| {
                (v + u64::from(m.vcpus), mib.saturating_add(m.memory_mib))
            })
    }

    /// Takes the outcomes of the pending actions: applied or simulated changes become
    /// holdings, applied rollbacks remove them, a rung whose actions all succeeded is
    /// complete. A pending action without an outcome counts as failed. Returns notes
    /// (pair, text) for failures.
    pub fn apply_outcomes(&mut self, outcomes: &[Outcome]) -> Vec<(String, String)> {
        let mut notes = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return notes;
        }
        let by_id: HashMap<&str, &Outcome> =
            outcomes.iter().map(|o| (o.action_id.as_str(), o)).collect();
        // (pair, rung, tick) -> every action of that rung decision succeeded.
        let mut groups: BTreeMap<(String, Rung, u64), bool> = BTreeMap::new();
        for p in pending {
            let outcome = by_id.get(p.action.id.as_str());
            let ok = match outcome {
                Some(o) => matches!(o.result, ActionResult::Applied | ActionResult::Simulated),
                None => false,
            };
            if !ok {
                let why = match outcome {
                    Some(o) => {
                        format!("failed: {}", o.error.as_deref().unwrap_or("no error given"))
                    }
                    None => "got no outcome; counted as failed".to_owned(),
                };
                notes.push((
                    p.pair.clone(),
                    format!("action {} ({}) {why}", p.action.id, reason_tail(&p.action)),
                ));
            }
            if let Change::Migrate { uri, .. } = &p.action.change {
                // The capacity was taken when the migration was decided; a failure
                // gives it back. (A state from before the capacity was tracked has no
                // record of it yet.)
                let recorded = self.migrated.iter().any(|m| m.action_id == p.action.id);
                if !ok {
                    self.migrated.retain(|m| m.action_id != p.action.id);
                } else if !recorded {
                    self.migrated.push(Migrated::from_action(&p.action, uri));
                }
            }
            let vm = self.vms.entry(p.action.vm.clone()).or_default();
            match &p.action.change {
                Change::Rollback { action_id } => {
                    if ok {
                        if vm
                            .holdings
                            .get(&p.action.rung)
                            .is_some_and(|h| &h.action.id == action_id)
                        {
                            vm.holdings.remove(&p.action.rung);
                        }
                        vm.last_change_ms = Some(p.action.decided_ms);
                    } else if let Some(h) = vm.holdings.get_mut(&p.action.rung) {
                        // Retried next tick.
                        h.rollback = None;
                    }
                }
                _ => {
                    // A failed attempt restarts the cooldown too: the retry waits for it.
                    vm.last_change_ms = Some(p.action.decided_ms);
                    *groups
                        .entry((p.pair.clone(), p.action.rung, p.tick))
                        .or_insert(true) &= ok;
                    if !ok {
                        continue;
                    }
                    let mut holders = BTreeSet::new();
                    if let Some(pair) = self.pairs.get_mut(&p.pair) {
                        holders.insert(p.pair.clone());
                        let part = Part {
                            vm: p.action.vm.clone(),
                            action_id: p.action.id.clone(),
                        };
                        match pair.rungs.iter_mut().find(|r| r.rung == p.action.rung) {
                            Some(r) => r.parts.push(part),
                            None => pair.rungs.push(RungState {
                                rung: p.action.rung,
                                tick: p.tick,
                                complete: false,
                                parts: vec![part],
                            }),
                        }
                    }
                    vm.holdings.insert(
                        p.action.rung,
                        Holding {
                            action: p.action,
                            tick: p.tick,
                            seq: p.seq,
                            holders,
                            rollback: None,
                        },
                    );
                }
            }
        }
        for ((key, rung, tick), ok) in groups {
            if !ok {
                continue;
            }
            if let Some(pair) = self.pairs.get_mut(&key) {
                if let Some(r) = pair.rungs.iter_mut().find(|r| r.rung == rung) {
                    r.complete = true;
                    pair.ticks_above = 0;
                    pair.last_escalation_tick = Some(tick);
                }
            }
        }
        notes
    }

    /// Ends the pair: drops its state and releases its holdings (most recent first);
    /// those nobody else relies on become orphans, due for rollback.
    pub fn release_pair(&mut self, key: &str) {
        let Some(pair) = self.pairs.remove(key) else {
            return;
        };
        let parts: Vec<(&str, Rung, &str)> = pair.parts().collect();
        for (vm, rung, id) in parts.into_iter().rev() {
            if let Some(h) = self
                .vms
                .get_mut(vm)
                .and_then(|v| v.holdings.get_mut(&rung))
                .filter(|h| h.action.id == id)
            {
                h.holders.remove(key);
            }
        }
    }

    /// Makes `key` a holder of the holding of `vm`'s `rung` (sharing, or adopting an
    /// orphan) and returns its action id.
    pub(crate) fn share(&mut self, vm: &str, rung: Rung, key: &str) -> Option<String> {
        let h = self.vms.get_mut(vm)?.holdings.get_mut(&rung)?;
        h.holders.insert(key.to_owned());
        Some(h.action.id.clone())
    }

    /// Forgets VMs that are no longer on the host: their holdings go without rollback
    /// (there is nothing left to restore). Returns the holdings dropped, as
    /// (pair, note).
    pub fn forget_vms(&mut self, present: impl Fn(&str) -> bool) -> Vec<(String, String)> {
        let mut notes = Vec::new();
        self.vms.retain(|name, v| {
            if present(name) {
                return true;
            }
            for h in v.holdings.values() {
                notes.push((
                    pair_key(&h.action.victim, &h.action.aggressor),
                    format!(
                        "{name} is gone: its {} change {} is forgotten, not rolled back",
                        super::config::rung_name(h.action.rung),
                        h.action.id
                    ),
                ));
            }
            false
        });
        notes
    }

    /// Holdings nobody relies on and no rollback is in flight for, most recent first.
    pub fn orphans(&self) -> Vec<(&str, Rung, &Holding)> {
        let mut out: Vec<(&str, Rung, &Holding)> = self
            .vms
            .iter()
            .flat_map(|(vm, v)| v.holdings.iter().map(move |(r, h)| (vm.as_str(), *r, h)))
            .filter(|(_, _, h)| h.is_orphan() && h.rollback.is_none())
            .collect();
        out.sort_by_key(|(_, _, h)| std::cmp::Reverse((h.tick, h.seq)));
        out
    }
}

/// The last clause of an action's reason (what was changed), for short notes.
pub(crate) fn reason_tail(action: &Action) -> &str {
    action.reason.rsplit("; ").next().unwrap_or(&action.reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use interference_core::cpu_list::CpuList;

    fn action(id: &str, vm: &str, rung: Rung, change: Change) -> Action {
        Action {
            payer: Default::default(),
            not_donors: Vec::new(),
            id: id.into(),
            decided_ms: 1000,
            rung,
            change,
            vm: vm.into(),
            protects: "web".into(),
            victim: "web".into(),
            aggressor: "batch".into(),
            score: 60.0,
            vm_is_aggressor: vm == "batch",
            unobservable: Vec::new(),
            cause: None,
            customers: Default::default(),
            vcpus: None,
            simulated: false,
            reason: format!("score 60 >= 40: x; change {vm}"),
            trigger: Default::default(),
        }
    }

    fn outcome(id: &str, result: ActionResult) -> Outcome {
        Outcome {
            action_id: id.into(),
            result,
            at_ms: 1001,
            effects: vec![],
            error: (result == ActionResult::Failed).then(|| "EBUSY".to_owned()),
        }
    }

    #[test]
    fn a_migration_reads_its_size_back_from_the_action() {
        let mut a = action(
            "h-3-0",
            "batch",
            Rung::Migrate,
            Change::Migrate {
                uri: "tcp:a:1".into(),
                vcpus: Some(1),
                memory_mib: Some(4097),
            },
        );
        let m = Migrated::from_action(&a, "tcp:a:1");
        assert_eq!(
            (m.uri.as_str(), m.vcpus, m.memory_mib),
            ("tcp:a:1", 1, 4097)
        );
        assert_eq!(size_text(1, 4097), "1 vCPU, 4097 MiB");
        // An action of an earlier version: its vCPUs, no memory.
        a.change = Change::Migrate {
            uri: "tcp:a:1".into(),
            vcpus: None,
            memory_mib: None,
        };
        a.vcpus = Some(4);
        let m = Migrated::from_action(&a, "tcp:a:1");
        assert_eq!((m.vcpus, m.memory_mib), (4, 0));
    }

    #[test]
    fn migration_outcomes_keep_or_return_the_room() {
        let mut s = PolicyState::default();
        s.pairs.insert("batch/web".into(), PairState::default());
        let a = action(
            "h-3-0",
            "batch",
            Rung::Migrate,
            Change::Migrate {
                uri: "tcp:a:1".into(),
                vcpus: Some(2),
                memory_mib: Some(4096),
            },
        );
        let pending = |a: &Action| Pending {
            action: a.clone(),
            tick: 3,
            seq: 0,
            pair: "batch/web".into(),
        };
        // Decided (the engine records the room taken), then failed: returned.
        s.migrated.push(Migrated::from_action(&a, "tcp:a:1"));
        s.pending.push(pending(&a));
        s.apply_outcomes(&[outcome("h-3-0", ActionResult::Failed)]);
        assert_eq!(s.migrated_to("tcp:a:1"), (0, 0));
        // Applied without a record (a state from before the room was tracked): counted.
        s.pending.push(pending(&a));
        s.apply_outcomes(&[outcome("h-3-0", ActionResult::Applied)]);
        assert_eq!(s.migrated_to("tcp:a:1"), (2, 4096));
        assert_eq!(s.migrated_to("tcp:b:1"), (0, 0));
    }

    #[test]
    fn pair_keys() {
        assert_eq!(pair_key("b", "a"), "a/b");
        assert_eq!(pair_key("a", "b"), "a/b");
        let mut buf = String::from("junk");
        pair_key_into(&mut buf, "z", "y");
        assert_eq!(buf, "y/z");
    }

    #[test]
    fn outcomes_commit_only_what_applied() {
        let mut s = PolicyState::default();
        s.pairs.insert("batch/web".into(), PairState::default());
        let boost = action(
            "h-1-0",
            "web",
            Rung::Weight,
            Change::CpuWeight { weight: 1000 },
        );
        let cut = action(
            "h-1-1",
            "batch",
            Rung::Weight,
            Change::CpuWeight { weight: 10 },
        );
        for (seq, a) in [boost, cut].into_iter().enumerate() {
            s.pending.push(Pending {
                action: a,
                tick: 1,
                seq: seq as u32,
                pair: "batch/web".into(),
            });
        }
        let notes = s.apply_outcomes(&[
            outcome("h-1-0", ActionResult::Applied),
            outcome("h-1-1", ActionResult::Failed),
        ]);
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].1.contains("h-1-1") && notes[0].1.contains("EBUSY"),
            "{notes:?}"
        );
        assert!(s.holding("web", Rung::Weight).is_some());
        assert!(s.holding("batch", Rung::Weight).is_none());
        let pair = &s.pairs["batch/web"];
        assert!(
            !pair.done(Rung::Weight),
            "a failed half leaves the rung incomplete"
        );
        assert_eq!(pair.rungs[0].parts.len(), 1);
        // Both VMs start their cooldown (the failure as a retry backoff).
        assert_eq!(s.last_change_ms("batch"), Some(1000));
        assert!(s.pending.is_empty());
    }

    #[test]
    fn missing_outcome_counts_as_failed() {
        let mut s = PolicyState::default();
        s.pairs.insert("batch/web".into(), PairState::default());
        s.pending.push(Pending {
            action: action(
                "h-1-0",
                "web",
                Rung::Weight,
                Change::CpuWeight { weight: 1000 },
            ),
            tick: 1,
            seq: 0,
            pair: "batch/web".into(),
        });
        let notes = s.apply_outcomes(&[]);
        assert!(notes[0].1.contains("no outcome"), "{notes:?}");
        assert!(s.holding("web", Rung::Weight).is_none());
    }

    #[test]
    fn release_leaves_shared_holdings_in_force() {
        let mut s = PolicyState::default();
        let boost = action(
            "h-1-0",
            "web",
            Rung::Weight,
            Change::CpuWeight { weight: 1000 },
        );
        s.vms.entry("web".into()).or_default().holdings.insert(
            Rung::Weight,
            Holding {
                action: boost,
                tick: 1,
                seq: 0,
                holders: BTreeSet::from(["batch/web".to_owned(), "db/web".to_owned()]),
                rollback: None,
            },
        );
        for key in ["batch/web", "db/web"] {
            s.pairs.insert(
                key.into(),
                PairState {
                    rungs: vec![RungState {
                        rung: Rung::Weight,
                        tick: 1,
                        complete: true,
                        parts: vec![Part {
                            vm: "web".into(),
                            action_id: "h-1-0".into(),
                        }],
                    }],
                    ..Default::default()
                },
            );
        }
        s.release_pair("batch/web");
        assert!(s.orphans().is_empty());
        s.release_pair("db/web");
        assert_eq!(s.orphans().len(), 1);
        assert!(s.pairs.is_empty());
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut s = PolicyState::default();
        s.pairs.insert(
            "batch/web".into(),
            PairState {
                since_tick: 3,
                ticks_above: 1,
                last_score: Some(55.5),
                ..Default::default()
            },
        );
        s.vms.entry("web".into()).or_default().holdings.insert(
            Rung::Pin,
            Holding {
                action: action(
                    "h-1-0",
                    "web",
                    Rung::Pin,
                    Change::Cpuset {
                        cpus: CpuList::new([2, 3]),
                    },
                ),
                tick: 1,
                seq: 0,
                holders: BTreeSet::from(["batch/web".to_owned()]),
                rollback: None,
            },
        );
        let text = serde_json::to_string(&s).expect("serialise");
        assert!(text.contains("\"pin\""), "{text}");
        let back: PolicyState = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, s);
    }
}
