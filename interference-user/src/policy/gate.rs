//! The hysteresis of one pair (the engine's step 3): whether this tick counts as quiet,
//! whether the cause of a mitigation is gone (the aggressor's demand), and whether the
//! pair's next rung is due.

use std::collections::HashMap;

use super::action::Rung;
use super::config::Thresholds;
use super::input::VmInput;
use super::state::PairState;

/// Whether an active pair (not below its off threshold) has a rung to take now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
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

pub(super) fn due(ladder: &[Rung], e: u32, ps: &PairState) -> Due {
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
pub(super) enum Gate {
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
    pub(super) fn calm(&self) -> String {
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
pub(super) fn track_peak_demand(ps: &mut PairState, vms: &HashMap<&str, &VmInput>) {
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
pub(super) fn gate(ratio: f64, key: &str, ps: &PairState, vms: &HashMap<&str, &VmInput>) -> Gate {
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
pub(super) fn observe(
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
