//! The rollback pass of a tick (the engine's step 5): changes nobody relies on any
//! more are rolled back, most recent first, within what is left of the cap.

use std::collections::HashMap;

use super::action::{Action, Change, Rung};
use super::config::rung_name;
use super::decision::Decision;
use super::rules::Rules;
use super::state::{pair_key, Pending, PolicyState};
use super::tick::{TickCtx, Work};

/// Rolls back the changes nobody relies on any more, most recent first.
pub(super) fn roll_back(
    rules: &Rules,
    state: &mut PolicyState,
    t: &mut TickCtx<'_>,
    ended_why: &HashMap<String, (String, f32)>,
    work: &[Work<'_>],
    d: &mut Decision,
) {
    let tick = t.tick;
    let due: Vec<(String, Rung, Action)> = state
        .orphans()
        .into_iter()
        .map(|(vm, rung, h)| (vm.to_owned(), rung, h.action.clone()))
        .collect();
    for (vm, rung, original) in due {
        let key = pair_key(&original.victim, &original.aggressor);
        if rung == Rung::Migrate {
            // A migration is not undone; the VM leaves the inventory when it is done.
            if let Some(v) = state.vms.get_mut(&vm) {
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
        if rules.cap_left(d) == 0 {
            d.skipped.push((
                key,
                format!(
                    "cap: rollback of {} waits, {} actions this tick already",
                    original.id, rules.config.max_actions_per_tick
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
        let id = format!("{}-{tick}-{}", rules.id_prefix, t.seq);
        let action = Action {
            payer: Default::default(),
            not_donors: Vec::new(),
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
            simulated: rules.config.dry_run || original.simulated,
            reason: format!(
                "{why}: roll back {} ({})",
                original.id,
                super::state::reason_tail(&original)
            ),
            trigger: Default::default(),
        };
        if let Some(h) = state
            .vms
            .get_mut(&vm)
            .and_then(|v| v.holdings.get_mut(&rung))
        {
            h.rollback = Some(id);
        }
        state.pending.push(Pending {
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
