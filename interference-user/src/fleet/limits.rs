//! The fleet's cap on actions per tenant per day (`[fleet] max_actions_per_tenant_per_day`
//! on the controller), applied by the agent between polls. The controller counts every
//! host's applied actions by the customer of the changed VM and names the tenants over
//! the cap in the desired state; this host also counts its own since the UTC day began,
//! so that it stops at the cap without waiting for its uploads to come back as a
//! block. A blocked tenant's VMs get no new action until the day ends; rollbacks go on.

use std::collections::{BTreeMap, BTreeSet};

use interference_fleet::wire::Limits;

use crate::policy::{Action, ActionResult, Change, Outcome};

const DAY_MS: u64 = 86_400_000;

#[derive(Debug, Default)]
pub struct TenantCap {
    cap: Option<u32>,
    /// Over the cap fleet-wide, as the controller last said.
    fleet: BTreeSet<String>,
    /// The UTC day `local` counts.
    day: u64,
    /// Actions applied on this host today, by customer.
    local: BTreeMap<String, u32>,
}

impl TenantCap {
    /// The limits of a new desired state.
    pub fn set(&mut self, limits: &Limits) {
        self.cap = limits.max_actions_per_tenant_per_day;
        self.fleet = limits.blocked_tenants.iter().cloned().collect();
    }

    /// Counts what was applied (rollbacks and dry runs do not count).
    pub fn count(&mut self, now_ms: u64, actions: &[(Action, Outcome)]) {
        self.roll(now_ms);
        for (a, o) in actions {
            if o.result != ActionResult::Applied || matches!(a.change, Change::Rollback { .. }) {
                continue;
            }
            if let Some(c) = a.customers.get(&a.vm) {
                *self.local.entry(c.clone()).or_default() += 1;
            }
        }
    }

    /// The customers whose VMs may not be changed now, sorted.
    pub fn blocked(&mut self, now_ms: u64) -> Vec<String> {
        self.roll(now_ms);
        let Some(cap) = self.cap else {
            return Vec::new();
        };
        let mut out = self.fleet.clone();
        out.extend(
            self.local
                .iter()
                .filter(|(_, n)| **n >= cap)
                .map(|(c, _)| c.clone()),
        );
        out.into_iter().collect()
    }

    /// A new UTC day: nothing counted, and the controller's list was for yesterday.
    fn roll(&mut self, now_ms: u64) {
        let day = now_ms / DAY_MS;
        if day != self.day {
            if self.day != 0 {
                self.fleet.clear();
            }
            self.day = day;
            self.local.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Rung, Trigger};

    fn applied(id: &str, vm: &str, customer: &str, change: Change) -> (Action, Outcome) {
        let action = Action {
            payer: Default::default(),
            not_donors: Vec::new(),
            id: id.into(),
            decided_ms: 0,
            rung: Rung::Weight,
            change,
            vm: vm.into(),
            protects: "web".into(),
            victim: "web".into(),
            aggressor: vm.into(),
            score: 60.0,
            unobservable: Vec::new(),
            vm_is_aggressor: true,
            simulated: false,
            reason: String::new(),
            customers: [(vm.to_owned(), customer.to_owned())].into(),
            vcpus: None,
            cause: None,
            trigger: Trigger::Now,
        };
        let outcome = Outcome {
            action_id: id.into(),
            result: ActionResult::Applied,
            at_ms: 0,
            effects: Vec::new(),
            error: None,
        };
        (action, outcome)
    }

    #[test]
    fn a_tenant_is_blocked_at_the_cap_here_or_fleet_wide_until_the_day_ends() {
        let day = 20_000 * DAY_MS;
        let mut cap = TenantCap::default();
        cap.set(&Limits {
            max_actions_per_tenant_per_day: Some(2),
            blocked_tenants: vec!["far".into()],
            max_concurrent_migrations: None,
        });
        let w = Change::CpuWeight { weight: 10 };
        cap.count(day + 1, &[applied("a", "batch", "acme", w.clone())]);
        assert_eq!(cap.blocked(day + 2), ["far"]);
        let rollback = Change::Rollback {
            action_id: "a".into(),
        };
        cap.count(day + 3, &[applied("b", "batch", "acme", rollback)]);
        assert_eq!(cap.blocked(day + 4), ["far"], "a rollback is not an action");
        cap.count(day + 5, &[applied("c", "batch", "acme", w)]);
        assert_eq!(cap.blocked(day + 6), ["acme", "far"]);
        assert!(cap.blocked(day + DAY_MS).is_empty(), "a new day");
        cap.set(&Limits::default());
        assert!(cap.blocked(day + DAY_MS + 1).is_empty(), "no cap");
    }
}
