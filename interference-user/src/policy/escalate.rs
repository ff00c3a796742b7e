//! The escalation pass of a tick: for each active pair whose rung is due, highest score
//! first, the next rung of the ladder that can apply, unless a cooldown, a conflict
//! with a higher-scoring pair or the cap holds it back (the engine's step 4).

use std::collections::BTreeMap;

use super::action::{Action, Cause, Change, Rung, Trigger};
use super::config::rung_name;
use super::decision::Decision;
use super::forecast;
use super::input::VmInput;
use super::ladder::{self, Half, Plan};
use super::rules::Rules;
use super::state::{Migrated, Part, Pending, PolicyState, RungState};
use super::tick::{TickCtx, Work};
use super::who::{self, Basis, Roles};

/// The next rung for one active pair whose rung is due ([`Due::Now`]), unless
/// something holds it back.
pub(super) fn climb(
    rules: &Rules,
    state: &mut PolicyState,
    w: &Work<'_>,
    t: &mut TickCtx<'_>,
    d: &mut Decision,
) {
    let ps = &state.pairs[&w.key];
    let Some(first) = rules.ladder.iter().position(|r| !ps.done(*r)) else {
        return;
    };
    let last_complete = ps.rungs.iter().rev().find(|r| r.complete).map(|r| r.rung);
    let retry = ps
        .rungs
        .iter()
        .any(|r| r.rung == rules.ladder[first] && !r.complete);
    if rules.cap_left(d) == 0 {
        d.skipped.push((
            w.key.clone(),
            format!(
                "cap: {} actions this tick already",
                rules.config.max_actions_per_tick
            ),
        ));
        return;
    }
    let trigger = match (last_complete, retry) {
        (_, true) => format!(
            "score {:.0}, retrying {} after a failed attempt",
            w.score.score,
            rung_name(rules.ladder[first])
        ),
        (Some(prev), false) => format!(
            "score {:.0} >= {:.0} for {} ticks after {}",
            w.score.score,
            w.th.on,
            ps.ticks_above,
            rung_name(prev)
        ),
        (None, false) if w.score.score >= w.th.on => match &w.score.forecast {
            Some(f) if f.now < w.th.on => format!(
                "forecast {:.0} >= {:.0} within {} (measured {:.0})",
                f.forecast,
                w.th.on,
                humantime::format_duration(std::time::Duration::from_millis(f.horizon_ms)),
                f.now
            ),
            _ => format!("score {:.0} >= {:.0}", w.score.score, w.th.on),
        },
        (None, false) => format!(
            "score {:.0} >= off threshold {:.0}, pair active since tick {}",
            w.score.score, w.th.off, ps.since_tick
        ),
    };
    let roles = who::roles(&rules.config, w.victim, w.aggressor);
    // The side a mitigation would be charged to, by the billing rule.
    let payer = match payer_rule(t, &roles) {
        interference_core::billing::Payer::Protected => roles.protected,
        interference_core::billing::Payer::Reduced => roles.reduced,
    };
    if let Some(c) = payer
        .customer
        .as_ref()
        .filter(|c| t.input.capped_customers.binary_search(c).is_ok())
    {
        d.skipped.push((
            w.key.clone(),
            format!(
                "charge cap: {c}, the customer of {}, reached its monthly cap on interference charges; no mitigation is charged to it until the month ends",
                payer.name
            ),
        ));
        return;
    }
    let not_a_donor = who::not_a_donor(&roles);
    for i in first..rules.ladder.len() {
        let rung = rules.ladder[i];
        if state.pairs[&w.key].done(rung) {
            continue;
        }
        if let Some(why) = forecast::rung_waits(rung, w.score, w.th, &state.pairs[&w.key]) {
            d.skipped.push((w.key.clone(), why));
            return;
        }
        let ctx = ladder::Ctx {
            config: &rules.config,
            host_cpus: t.host_cpus,
            state,
            placement: t.input.placement,
        };
        let halves = match ladder::plan(&ctx, rung, &roles) {
            Plan::NotApplicable(why) => {
                pass_over(state, &w.key, rung, why, d);
                continue;
            }
            Plan::Halves(h) => match &not_a_donor {
                // The opted-out VM's halves change nothing; the others stand.
                Some(why) => h
                    .into_iter()
                    .map(|h| match h {
                        Half::Act(a) if a.vm == roles.reduced.name => Half::Noop(why.clone()),
                        h => h,
                    })
                    .collect(),
                None => h,
            },
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
            pass_over(
                state,
                &w.key,
                rung,
                format!("{}: {}", rung_name(rung), why.join("; ")),
                d,
            );
            continue;
        }
        if let Some(why) = held_back(rules, state, &acts, t) {
            d.skipped
                .push((w.key.clone(), format!("{}: {why}", rung_name(rung))));
            return;
        }
        let left = rules.cap_left(d);
        if acts.len() > left {
            d.skipped.push((
                w.key.clone(),
                format!(
                    "cap: {} needs {} actions, {left} left of {} this tick",
                    rung_name(rung),
                    acts.len(),
                    rules.config.max_actions_per_tick
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
        if let Some(ps) = state.pairs.get_mut(&w.key) {
            if ps.granted_until_ms.is_none() {
                ps.granted_until_ms = who::granted_until(&rules.config, &roles);
                ps.granted_to = ps.granted_until_ms.map(|_| roles.protected.name.clone());
            }
        }
        apply_rung(rules, state, w, &roles, rung, &trigger, &halves, acts, t, d);
        return;
    }
}

/// Who pays for a mitigation of this pair: the billing rule of the protected VM's SLA
/// tier, else the host's.
fn payer_rule(t: &TickCtx<'_>, roles: &Roles<'_>) -> interference_core::billing::Payer {
    roles
        .protected
        .sla_tier
        .as_ref()
        .and_then(|tier| t.input.payer_tiers.get(tier).copied())
        .unwrap_or(t.input.payer)
}

/// Records `rung` as passed over for the pair (it cannot apply), with why.
pub(super) fn pass_over(
    state: &mut PolicyState,
    key: &str,
    rung: Rung,
    why: String,
    d: &mut Decision,
) {
    if let Some(ps) = state.pairs.get_mut(key) {
        ps.passed.push(rung);
    }
    d.skipped
        .push((key.to_owned(), format!("{why}; passed over")));
}

/// Why an action on one of these VMs may not happen this tick, if one may not.
pub(super) fn held_back(
    rules: &Rules,
    state: &PolicyState,
    acts: &[&ladder::Act],
    t: &TickCtx<'_>,
) -> Option<String> {
    let cooldown = rules.config.cooldown.as_millis() as u64;
    for a in acts {
        let customer = t
            .input
            .vms
            .iter()
            .find(|v| v.name == a.vm)
            .and_then(|v| v.customer.as_ref());
        if let Some(c) = customer.filter(|c| t.input.blocked_customers.binary_search(c).is_ok()) {
            return Some(format!(
                "tenant cap: {c}, the customer of {}, reached the fleet's actions per tenant for today",
                a.vm
            ));
        }
        if t.claimed.contains(a.vm.as_str()) {
            return Some(format!(
                "conflict: {} was already changed this tick for a higher-scoring pair",
                a.vm
            ));
        }
        if let Some(last) = state.last_change_ms(&a.vm) {
            let since = t.input.now_ms.saturating_sub(last);
            if since < cooldown {
                return Some(format!(
                    "cooldown: {} changed {} ago (cooldown {})",
                    a.vm,
                    humantime::format_duration(std::time::Duration::from_millis(since)),
                    humantime::format_duration(rules.config.cooldown)
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
pub(super) fn apply_rung(
    rules: &Rules,
    state: &mut PolicyState,
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
    let cause = (state.pairs[&w.key].parts().next().is_none()
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
            if let Some(id) = state.share(vm, rung, &w.key) {
                parts.push(Part {
                    vm: vm.clone(),
                    action_id: id,
                });
            }
        }
    }
    let complete_now = acts.is_empty();
    let ps = state
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
    let trigger_kind = forecast::trigger(w.score, w.th);
    if trigger_kind == Trigger::Forecast {
        forecast::watch(ps, w.score, t.input.now_ms);
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
    let mut who = who::describe(&rules.config, roles, reverse);
    if let Some(why) = who::not_a_donor(roles) {
        who.push_str(&format!("; {why}"));
    }
    for a in acts {
        let action = Action {
            payer: payer_rule(t, roles),
            not_donors: [w.victim, w.aggressor]
                .iter()
                .filter(|v| v.no_donor)
                .map(|v| v.name.clone())
                .collect(),
            id: format!("{}-{tick}-{}", rules.id_prefix, t.seq),
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
            simulated: rules.config.dry_run,
            reason: format!("{trigger}{note}: {who}; {}", a.what),
            change: a.change,
            trigger: trigger_kind,
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
                state.migrated.push(Migrated {
                    uri: uri.clone(),
                    action_id: action.id.clone(),
                    vm: a.vm.clone(),
                    vcpus,
                    memory_mib,
                    simulated: action.simulated,
                });
            }
        }
        state.pending.push(Pending {
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

/// VM name -> customer for the VMs of a pair that have one.
fn pair_customers(a: &VmInput, b: &VmInput) -> BTreeMap<String, String> {
    [a, b]
        .into_iter()
        .filter_map(|v| Some((v.name.clone(), v.customer.clone()?)))
        .collect()
}
