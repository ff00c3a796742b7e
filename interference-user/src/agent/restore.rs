//! Putting back what an agent left in effect: `interference restore`, and every test
//! that checks a crashed agent's host. Like the agent at start, it first bills what
//! the journal still owes the ledger (changes in effect up to now, changes already put
//! back up to when they were), so a crash never loses their lines; then it restores.
//! The host comes first: a ledger that cannot be written does not stop the restore,
//! the journal keeps owing those lines and the report says so.

use super::assemble::AgentError;
use super::mitigation::bill_owed;
use super::settings::Settings;
use crate::billing::Billing;
use crate::clock::now_ms;
use crate::enforce::{Enforcer, EnforcerOptions};
use crate::policy::{ActionResult, Outcome};

/// What a restore did.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreReport {
    /// One per journalled action that had changes in effect, newest first.
    pub outcomes: Vec<Outcome>,
    /// Changes still in effect afterwards (could not be restored; retried next time).
    pub left_in_effect: usize,
    /// Ledger lines the ledger could not take (the journal still owes them).
    pub unbilled_lines: usize,
}

impl RestoreReport {
    /// Values written back.
    pub fn restored(&self) -> usize {
        self.outcomes.iter().map(|o| o.effects.len()).sum()
    }

    /// Outcomes with a problem (restore refused, cgroup gone, QMP failure).
    pub fn failures(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes
            .iter()
            .filter(|o| o.result == ActionResult::Failed)
    }

    /// Nothing this agent changed is left in effect.
    pub fn is_clean(&self) -> bool {
        self.left_in_effect == 0
    }
}

/// Bill what the journal `s.journal` owes into `s.ledger` (unless billing is off), then
/// put back every change it has in effect. Refuses to run beside a live agent (the
/// journal is locked).
pub fn restore(s: &Settings) -> Result<RestoreReport, AgentError> {
    let mut enforcer = Enforcer::open(
        EnforcerOptions {
            journal: s.journal.clone(),
            owes_ledger: s.ledger.is_some(),
            ..EnforcerOptions::default()
        },
        s.mounts.clone(),
    )
    .map_err(|source| AgentError::Enforcer {
        path: s.journal.clone(),
        source,
    })?;
    let mut unbilled_lines = 0;
    if let Some(dir) = &s.ledger {
        let mut cfg = s.config.billing.clone();
        cfg.ledger_dir = dir.clone();
        let mut b = Billing::open(cfg, &s.host, false).map_err(|source| AgentError::Ledger {
            path: dir.clone(),
            source,
        })?;
        bill_owed(&enforcer, &mut b, now_ms());
        let settled = b.take_settled();
        enforcer.mark_billed(settled.iter().map(String::as_str));
        unbilled_lines = b.backlog_lines();
    }
    let outcomes = enforcer.restore_all();
    Ok(RestoreReport {
        left_in_effect: enforcer.in_effect().len(),
        outcomes,
        unbilled_lines,
    })
}
