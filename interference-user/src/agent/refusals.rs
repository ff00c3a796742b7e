//! VMs the cgroup guard refuses, said once. Discovery runs every tick and so does
//! the guard: a VM it refuses (a QEMU in a hierarchy's root, a configured path that
//! leads out of cgroupfs, two VMs sharing a cgroup) is refused again every tick, and
//! a warning each time would bury the log (720 lines an hour for one VM). A refusal
//! is logged when it starts or its reason changes, and its end when the VM is
//! admitted again or gone.

use std::collections::{BTreeMap, BTreeSet};

/// The refusals in force: VM name -> what the guard said.
#[derive(Debug, Default)]
pub struct Refusals {
    current: BTreeMap<String, String>,
}

/// What changed this tick, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RefusalChanges {
    /// Refusals that started or whose reason changed: (VM, reason).
    pub started: Vec<(String, String)>,
    /// VMs refused last tick and not now (admitted, or gone).
    pub ended: Vec<String>,
}

impl Refusals {
    /// This tick's refusals, as (VM, reason).
    pub fn update(&mut self, now: impl IntoIterator<Item = (String, String)>) -> RefusalChanges {
        let now: BTreeMap<String, String> = now.into_iter().collect();
        let started = now
            .iter()
            .filter(|(vm, why)| self.current.get(*vm) != Some(*why))
            .map(|(vm, why)| (vm.clone(), why.clone()))
            .collect();
        let names: BTreeSet<&String> = now.keys().collect();
        let ended = self
            .current
            .keys()
            .filter(|vm| !names.contains(vm))
            .cloned()
            .collect();
        self.current = now;
        RefusalChanges { started, ended }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_refusal_is_said_when_it_starts_changes_and_ends() {
        let mut r = Refusals::default();
        let first = r.update(refused(&[("evil", "outside cgroupfs")]));
        assert_eq!(first.started, refused(&[("evil", "outside cgroupfs")]));
        for _ in 0..100 {
            assert_eq!(
                r.update(refused(&[("evil", "outside cgroupfs")])),
                RefusalChanges::default()
            );
        }
        let changed = r.update(refused(&[("evil", "a hierarchy's root")]));
        assert_eq!(changed.started, refused(&[("evil", "a hierarchy's root")]));
        let ended = r.update(Vec::new());
        assert_eq!(ended.ended, vec!["evil".to_string()]);
        assert!(ended.started.is_empty());
    }
}
