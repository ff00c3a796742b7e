//! Who is protected and who is reduced in a hot pair: the seed's pseudocode, made safe.
//!
//! The seed: if one VM of the pair is a priority VM, reduce the other and boost the
//! priority VM; otherwise reduce the heavier user. A priority VM is one with
//! `priority = "high"` or an SLA tier listed in `policy.priority_tiers`.
//!
//! - Exactly one priority VM: it is protected and the other is reduced, whichever way
//!   the contention runs. When the priority VM is itself the aggressor, the reduced VM
//!   is the victim (`vm_is_aggressor = false`, so billing gives it the good-neighbour
//!   credit rather than the aggressor's).
//! - Both or neither: the pair's victim (the direction with the larger predicted
//!   slowdown) is protected and the aggressor is reduced. That is the seed's "heavier
//!   user" whenever the aggressor uses at least as much CPU as the victim. When the
//!   victim is the heavier user, reducing it would deepen the very slowdown we are
//!   mitigating, so the aggressor is reduced anyway and the reason says so.

use super::config::PolicyConfig;
use super::input::VmInput;

/// Why the protected VM is the protected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The only priority VM of the pair, and the victim.
    PriorityVictim,
    /// The only priority VM of the pair, though it is the aggressor.
    PriorityAggressor,
    /// Both or neither are priority VMs: the victim, and the aggressor is the heavier
    /// CPU user (or as heavy).
    VictimAggressorHeavier,
    /// Both or neither are priority VMs: the victim, though it uses more CPU than the
    /// aggressor.
    VictimHeavier,
}

/// The roles in one pair for this tick.
#[derive(Debug, Clone, Copy)]
pub struct Roles<'a> {
    pub protected: &'a VmInput,
    pub reduced: &'a VmInput,
    pub victim: &'a VmInput,
    pub aggressor: &'a VmInput,
    pub basis: Basis,
    /// Both VMs are priority VMs (the victim rule applied).
    pub both_priority: bool,
}

impl Roles<'_> {
    /// True when the reduced VM is the pair's aggressor.
    pub fn reduced_is_aggressor(&self) -> bool {
        self.reduced.name == self.aggressor.name
    }
}

/// Decides the roles for the direction `victim` <- `aggressor`.
pub fn roles<'a>(config: &PolicyConfig, victim: &'a VmInput, aggressor: &'a VmInput) -> Roles<'a> {
    let pv = is_priority(config, victim);
    let pa = is_priority(config, aggressor);
    let (protected, reduced, basis) = match (pv, pa) {
        (true, false) => (victim, aggressor, Basis::PriorityVictim),
        (false, true) => (aggressor, victim, Basis::PriorityAggressor),
        _ if victim.cpu_cores > aggressor.cpu_cores => (victim, aggressor, Basis::VictimHeavier),
        _ => (victim, aggressor, Basis::VictimAggressorHeavier),
    };
    Roles {
        protected,
        reduced,
        victim,
        aggressor,
        basis,
        both_priority: pv && pa,
    }
}

/// A priority VM: `priority = "high"`, a priority SLA tier, or its customer's
/// priority request in force.
pub fn is_priority(config: &PolicyConfig, vm: &VmInput) -> bool {
    config.is_priority(vm.priority, vm.sla_tier.as_deref()) || vm.priority_until_ms.is_some()
}

/// When the protected VM is the protected one only because of its customer's priority
/// request (it is the pair's aggressor, a priority VM by request alone): the request's
/// end. A victim is protected with or without one.
pub fn granted_until(config: &PolicyConfig, r: &Roles<'_>) -> Option<u64> {
    let by_request = r.basis == Basis::PriorityAggressor
        && !config.is_priority(r.protected.priority, r.protected.sla_tier.as_deref());
    by_request
        .then_some(r.protected.priority_until_ms)
        .flatten()
}

/// Why the reduced VM may not be reduced, when its customer opted it out of being a
/// donor and it is not the pair's aggressor.
pub fn not_a_donor(r: &Roles<'_>) -> Option<String> {
    (r.reduced.no_donor && !r.reduced_is_aggressor()).then(|| {
        format!(
            "{} opted out of being a donor and is not the one causing the slowdown: not reduced",
            r.reduced.name
        )
    })
}

/// "priority high", "SLA tier gold" or "priority request until ...": why `vm` is a
/// priority VM.
pub fn priority_label(config: &PolicyConfig, vm: &VmInput) -> String {
    if vm.priority == crate::inventory::Priority::High {
        "priority high".to_owned()
    } else if let Some(until) = vm.priority_until_ms {
        format!(
            "priority request until {}",
            interference_core::billing::period::rfc3339(until)
        )
    } else {
        match vm.sla_tier.as_deref() {
            Some(t) if config.priority_tiers.iter().any(|p| p == t) => format!("SLA tier {t}"),
            _ => "not a priority VM".to_owned(),
        }
    }
}

/// The part of an action's reason that says who hurts whom and why this VM is the one
/// changed, e.g. "web-1 (victim) slowed by batch-2". `reverse` is the predicted
/// slowdown of the aggressor by the victim, when known.
pub fn describe(config: &PolicyConfig, r: &Roles<'_>, reverse: Option<f32>) -> String {
    let (v, a) = (&r.victim.name, &r.aggressor.name);
    match r.basis {
        Basis::PriorityVictim => format!(
            "{v} (victim, a priority VM: {}) slowed by {a}",
            priority_label(config, r.victim)
        ),
        Basis::PriorityAggressor => {
            let own = reverse
                .map(|s| format!("; its own predicted slowdown from {v} is {s:.0}"))
                .unwrap_or_default();
            format!(
                "{v} (victim) slowed by {a}, a priority VM ({}) that is protected all the same, so {v} is reduced{own}",
                priority_label(config, r.aggressor)
            )
        }
        Basis::VictimAggressorHeavier => {
            let both = if r.both_priority {
                " (both are priority VMs: the victim is protected)"
            } else {
                ""
            };
            format!("{v} (victim) slowed by {a}{both}")
        }
        Basis::VictimHeavier => format!(
            "{v} (victim) slowed by {a}; {v} uses more CPU ({:.2} vs {:.2} cores) but is the one slowed, so the aggressor {a} is reduced",
            r.victim.cpu_cores, r.aggressor.cpu_cores
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Priority;

    pub(crate) fn vm(name: &str, cores: f64) -> VmInput {
        VmInput {
            name: name.into(),
            cpu_cores: cores,
            ..VmInput::default()
        }
    }

    #[test]
    fn priority_victim_is_protected() {
        let c = PolicyConfig::default();
        let mut web = vm("web", 0.5);
        web.priority = Priority::High;
        let batch = vm("batch", 1.5);
        let r = roles(&c, &web, &batch);
        assert_eq!(
            (r.protected.name.as_str(), r.reduced.name.as_str()),
            ("web", "batch")
        );
        assert_eq!(r.basis, Basis::PriorityVictim);
        assert!(r.reduced_is_aggressor());
    }

    #[test]
    fn priority_vm_is_protected_even_as_the_aggressor() {
        let c = PolicyConfig::default();
        let mut web = vm("web", 1.5);
        web.sla_tier = Some("gold".into());
        let batch = vm("batch", 0.5);
        // batch is the victim, web (gold) the aggressor.
        let r = roles(&c, &batch, &web);
        assert_eq!(
            (r.protected.name.as_str(), r.reduced.name.as_str()),
            ("web", "batch")
        );
        assert_eq!(r.basis, Basis::PriorityAggressor);
        assert!(!r.reduced_is_aggressor());
        let text = describe(&c, &r, Some(12.4));
        assert!(text.contains("SLA tier gold"), "{text}");
        assert!(text.contains("is 12"), "{text}");
    }

    #[test]
    fn neither_priority_reduces_the_aggressor_and_explains_a_heavier_victim() {
        let c = PolicyConfig::default();
        let (v, a) = (vm("v", 0.5), vm("a", 1.5));
        let r = roles(&c, &v, &a);
        assert_eq!(r.basis, Basis::VictimAggressorHeavier);
        assert_eq!(r.reduced.name, "a");
        let (v, a) = (vm("v", 1.8), vm("a", 0.4));
        let r = roles(&c, &v, &a);
        assert_eq!(r.basis, Basis::VictimHeavier);
        assert_eq!(r.reduced.name, "a");
        assert!(r.reduced_is_aggressor());
        let text = describe(&c, &r, None);
        assert!(text.contains("1.80 vs 0.40 cores"), "{text}");
        assert!(text.contains("the aggressor a is reduced"), "{text}");
    }

    #[test]
    fn both_priority_falls_back_to_the_victim() {
        let c = PolicyConfig::default();
        let mut v = vm("v", 0.5);
        let mut a = vm("a", 1.0);
        v.priority = Priority::High;
        a.sla_tier = Some("gold".into());
        let r = roles(&c, &v, &a);
        assert!(r.both_priority);
        assert_eq!(r.protected.name, "v");
        assert!(describe(&c, &r, None).contains("both are priority VMs"));
    }

    #[test]
    fn low_priority_is_not_special() {
        let c = PolicyConfig::default();
        let mut v = vm("v", 0.5);
        v.priority = Priority::Low;
        let a = vm("a", 1.0);
        assert_eq!(roles(&c, &v, &a).protected.name, "v");
    }
}
