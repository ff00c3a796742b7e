//! The [`Enforcer`]: applies the policy's [`Action`]s to VMs and undoes them.
//!
//! Every change follows the same steps: admit the VM through the guard, plan the
//! change (read every value it will touch), journal the intents and sync, write, mark
//! each entry done. A write that fails stops the action: what it already changed is
//! restored at once and the outcome is Failed (never billed), with the reason. A cgroup
//! that vanished fails the action the same way and its entry is closed, there being
//! nothing to restore. In dry-run mode (or for an action marked simulated) the plan is
//! returned as a Simulated outcome and nothing is written, not even the journal.
//!
//! Balloon targets go through [`crate::qmp`] after reading the guest's own
//! memory statistics: a target below the configured floor, or one that would take
//! more than the guest reports available, is refused. Migrations are started through
//! the same client and journalled as not restorable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tracing::{info, warn};

use super::cgroup::{plan_cpuset, plan_weight, read_value, write_value, CgroupError, Plan};
use super::error_chain::error_chain;
use super::guard::{GuardError, ManagedRoots};
use super::journal::{Entry, Journal, JournalError, Owed, Target, DEFAULT_JOURNAL};
use super::restore::{by_action_newest_first, restore_entries, Restored};
use crate::clock::now_ms;
use crate::inventory::{Mounts, MountsError, Vm};
use crate::policy::{Action, ActionResult, Change, Effect, Outcome, Setting};
use crate::qmp::{QmpClient, QmpError};

/// Errors that stop the enforcement stage from starting (per-action failures are
/// [`Outcome`]s, not errors).
#[derive(Debug, Error)]
pub enum EnforceError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Mounts(#[from] MountsError),
}

/// How the enforcement stage runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnforcerOptions {
    /// The write-ahead journal (default [`DEFAULT_JOURNAL`]).
    pub journal: PathBuf,
    /// Plan and report, write nothing (not even the journal).
    pub dry_run: bool,
    /// Never set a balloon target below this many bytes (`[policy]` floor).
    pub balloon_floor_bytes: Option<u64>,
    /// Bound on every QMP call.
    pub qmp_timeout: Duration,
    /// Never compact the journal: it keeps every record (an audit trail; the crash
    /// tests check the ledger against it).
    pub keep_history: bool,
    /// Billing is on: an applied action stays in the journal until the ledger holds its
    /// last segment ([`Enforcer::mark_billed`]).
    pub owes_ledger: bool,
}

impl Default for EnforcerOptions {
    fn default() -> Self {
        Self {
            journal: PathBuf::from(DEFAULT_JOURNAL),
            dry_run: false,
            balloon_floor_bytes: None,
            qmp_timeout: Duration::from_secs(5),
            keep_history: false,
            owes_ledger: true,
        }
    }
}

/// Applies actions, journals them, restores them. One per agent (the journal is
/// locked while it is open for writing).
#[derive(Debug)]
pub struct Enforcer {
    options: EnforcerOptions,
    journal: Journal,
    guard: ManagedRoots,
}

impl Enforcer {
    /// Open the journal (read-only in dry-run mode) over the host's cgroup `mounts`.
    /// Changes a crashed run left in effect are in [`Enforcer::in_effect`]: restore
    /// them ([`Enforcer::restore_all`]) or hand them to the policy
    /// ([`Enforcer::history`]) to adopt.
    pub fn open(options: EnforcerOptions, mounts: Mounts) -> Result<Self, EnforceError> {
        Self::with_guard(options, ManagedRoots::new(mounts))
    }

    pub(crate) fn with_guard(
        options: EnforcerOptions,
        guard: ManagedRoots,
    ) -> Result<Self, EnforceError> {
        let journal = if options.dry_run {
            Journal::read(&options.journal)?
        } else {
            Journal::open_with(&options.journal, !options.keep_history, options.owes_ledger)?
        };
        Ok(Self {
            options,
            journal,
            guard,
        })
    }

    pub fn options(&self) -> &EnforcerOptions {
        &self.options
    }

    /// The managed set is this tick's inventory; VMs the guard refuses are returned
    /// (and any action on them fails).
    pub fn set_vms(&mut self, vms: &[Vm]) -> Vec<GuardError> {
        self.guard
            .set_vms(vms.iter().map(|v| (v.name.as_str(), v.cgroups.as_slice())))
    }

    /// Changes that may be in effect, oldest first.
    pub fn in_effect(&self) -> Vec<Entry> {
        self.journal.in_effect().into_iter().cloned().collect()
    }

    /// The journal's (action, outcome) pairs, for `PolicyState::replay`.
    pub fn history(&self) -> Vec<(Action, Outcome)> {
        self.journal.history()
    }

    /// Applied actions the ledger may not hold to their end yet (see
    /// [`Journal::owed`]): what the agent bills at start.
    pub fn owed(&self) -> Vec<Owed> {
        self.journal.owed()
    }

    /// The ledger holds these actions' last segments: journal it, so they are owed
    /// nothing more. A failure is logged; they stay owed (billing them again is
    /// harmless, the ledger's ids are idempotent).
    pub fn mark_billed<'a>(&mut self, action_ids: impl IntoIterator<Item = &'a str>) {
        if self.options.dry_run || !self.options.owes_ledger {
            return;
        }
        note(self.journal.mark_billed(action_ids, now_ms()));
        self.compact_if_idle();
    }

    /// Start this agent's run (see [`Journal::start_run`]): the number its action ids
    /// carry after `<host>-`. In a dry run nothing is written and the number is only
    /// as unique as the clock.
    pub fn start_run(&mut self, host: &str, at_least: u64) -> Result<u64, JournalError> {
        if self.options.dry_run {
            return Ok((now_ms() / 1000)
                .max(self.journal.last_run().map_or(0, |r| r + 1))
                .max(at_least));
        }
        self.journal.start_run(host, now_ms(), at_least)
    }

    pub fn journal_path(&self) -> &Path {
        self.journal.path()
    }

    /// Apply (or simulate) `action` to `vm`. Never panics, never returns an error: a
    /// failure is an outcome with the reason, and is logged.
    pub fn apply(&mut self, action: &Action, vm: &Vm) -> Outcome {
        let outcome = if action.vm != vm.name {
            failed(
                &action.id,
                format!(
                    "action {} is for VM {:?}, not {:?}",
                    action.id, action.vm, vm.name
                ),
            )
        } else {
            let simulate = self.options.dry_run || action.simulated;
            match &action.change {
                Change::CpuWeight { weight } => {
                    self.apply_cgroup(action, vm, simulate, |g, name| {
                        plan_weight(g, name, *weight)
                    })
                }
                Change::Cpuset { cpus } => {
                    let set = cpus.clone();
                    self.apply_cgroup(action, vm, simulate, |g, name| plan_cpuset(g, name, &set))
                }
                Change::Balloon { target_bytes } => {
                    self.apply_balloon(action, vm, *target_bytes, simulate)
                }
                Change::Migrate { uri, .. } => self.apply_migrate(action, vm, uri, simulate),
                Change::Rollback { action_id } => self.rollback(action, action_id, simulate),
            }
        };
        match outcome.result {
            ActionResult::Failed => warn!(
                action = %action.id, vm = %action.vm, change = ?action.change,
                error = outcome.error.as_deref().unwrap_or(""), "action failed"
            ),
            r => info!(action = %action.id, vm = %action.vm, result = r.as_str(),
                effects = outcome.effects.len(), "action {}", r.as_str()),
        }
        outcome
    }

    fn apply_cgroup(
        &mut self,
        action: &Action,
        vm: &Vm,
        simulate: bool,
        plan: impl FnOnce(&ManagedRoots, &str) -> Result<Plan, CgroupError>,
    ) -> Outcome {
        if let Err(e) = self.guard.admit(&vm.name, &vm.cgroups) {
            return failed(&action.id, error_chain(&e));
        }
        let plan = match plan(&self.guard, &vm.name) {
            Ok(p) => p,
            Err(e) => return failed(&action.id, error_chain(&e)),
        };
        let effects: Vec<Effect> = plan
            .changes
            .iter()
            .map(|c| Effect::from_texts(c.file.clone(), &c.before, &c.after))
            .collect();
        if simulate {
            return outcome(&action.id, ActionResult::Simulated, effects, None);
        }
        if plan.changes.is_empty() {
            return outcome(&action.id, ActionResult::Applied, effects, None);
        }
        let intents = plan
            .changes
            .iter()
            .map(|c| {
                let target = Target::Cgroup {
                    file: c.file.clone(),
                    root: c.root.clone(),
                };
                (vm.name.clone(), target, c.before.clone(), c.after.clone())
            })
            .collect();
        let ids = match self.journal.write_intents(action, intents, now_ms()) {
            Ok(ids) => ids,
            Err(e) => return failed(&action.id, format!("not applied: {}", error_chain(&e))),
        };
        let id_of = |file: &Path| {
            plan.changes
                .iter()
                .position(|c| c.file == file)
                .map(|i| ids[i])
        };
        let mut written: Vec<&Path> = Vec::new();
        for (file, value) in &plan.writes {
            if let Err(e) = write_value(file, value) {
                let reason = error_chain(&e);
                if let Some(id) = id_of(file) {
                    let in_effect = written.contains(&file.as_path()) && !e.vanished();
                    note(self.journal.failed(id, &reason, in_effect));
                }
                let undo = self.undo(action);
                let mut msg = reason;
                if !undo.errors.is_empty() {
                    msg = format!(
                        "{msg}; undoing the rest failed too: {}",
                        undo.errors.join("; ")
                    );
                }
                let out = failed(&action.id, msg);
                note(self.journal.outcome(&out));
                return out;
            }
            written.push(file);
        }
        for id in &ids {
            note(self.journal.done(*id));
        }
        // Report what the kernel now says (a cpuset may read back canonicalised).
        let effects = effects
            .into_iter()
            .map(|mut e| {
                if let Ok(now) = read_value(&e.target) {
                    e.after = Setting::from_text(&e.target, &now);
                }
                e
            })
            .collect();
        let out = outcome(&action.id, ActionResult::Applied, effects, None);
        note(self.journal.outcome(&out));
        out
    }

    /// Restore what a failing action already changed.
    fn undo(&mut self, action: &Action) -> Restored {
        let entries: Vec<Entry> = self
            .journal
            .entries_of(&action.id)
            .into_iter()
            .filter(|e| e.in_effect())
            .cloned()
            .collect();
        let by = format!("{}:undo", action.id);
        restore_entries(
            &mut self.journal,
            &self.guard,
            &entries,
            &by,
            self.options.qmp_timeout,
        )
    }

    fn apply_balloon(&mut self, action: &Action, vm: &Vm, target: u64, simulate: bool) -> Outcome {
        let Some(socket) = vm.qmp_socket.clone() else {
            return failed(&action.id, format!("VM {:?} has no QMP socket", vm.name));
        };
        if let Some(floor) = self.options.balloon_floor_bytes.filter(|f| target < *f) {
            return failed(
                &action.id,
                format!(
                    "balloon target {} MiB is below the floor of {} MiB",
                    target >> 20,
                    floor >> 20
                ),
            );
        }
        let checked = QmpClient::connect(&socket, self.options.qmp_timeout).and_then(|mut q| {
            let device = q.find_balloon()?;
            let actual = q.query_balloon()?;
            let stats = match &device {
                Some(d) => q.balloon_stats(d).ok(),
                None => None,
            };
            Ok((q, device, actual, stats))
        });
        let (mut qmp, device, actual, stats) = match checked {
            Ok(c) => c,
            Err(e) => return failed(&action.id, error_chain(&e)),
        };
        // QEMU cannot give a guest more than it was started with (`-m`): a balloon
        // that says so is bounded to that, so the value journalled (and put back at
        // the end) and the memory billed as taken are real.
        let actual = match vm.allocation.memory_bytes {
            Some(started_with) if actual > started_with => {
                warn!(
                    vm = %vm.name,
                    "the balloon says {} MiB, more than the {} MiB the VM was started with: \
                     counting {} MiB",
                    actual >> 20,
                    started_with >> 20,
                    started_with >> 20
                );
                started_with
            }
            _ => actual,
        };
        let Some(device) = device else {
            return failed(
                &action.id,
                format!("VM {:?} has no virtio-balloon device", vm.name),
            );
        };
        let available = stats.as_ref().and_then(|s| s.available_memory);
        if let Some(available) = available.filter(|a| actual.saturating_sub(target) > *a) {
            return failed(
                &action.id,
                format!(
                    "balloon {} MiB -> {} MiB would take more than the {} MiB the guest reports available",
                    actual >> 20,
                    target >> 20,
                    available >> 20
                ),
            );
        }
        if available.is_none() {
            info!(vm = %vm.name, "no guest memory statistics (stats polling off?); ballooning without that check");
        }
        let t = Target::Balloon {
            socket: socket.clone(),
            device,
        };
        let effect = Effect {
            target: t.effect_target(),
            before: Setting::Bytes { bytes: actual },
            after: Setting::Bytes { bytes: target },
        };
        if simulate {
            return outcome(&action.id, ActionResult::Simulated, vec![effect], None);
        }
        self.qmp_change(action, vm, t, effect, |q| q.balloon(target), &mut qmp)
    }

    fn apply_migrate(&mut self, action: &Action, vm: &Vm, uri: &str, simulate: bool) -> Outcome {
        let Some(socket) = vm.qmp_socket.clone() else {
            return failed(&action.id, format!("VM {:?} has no QMP socket", vm.name));
        };
        let t = Target::Migration {
            socket: socket.clone(),
        };
        let effect = Effect {
            target: t.effect_target(),
            before: Setting::Text {
                text: "running on this host".into(),
            },
            after: Setting::Uri {
                uri: uri.to_owned(),
            },
        };
        if simulate {
            return outcome(&action.id, ActionResult::Simulated, vec![effect], None);
        }
        let mut qmp = match QmpClient::connect(&socket, self.options.qmp_timeout) {
            Ok(q) => q,
            Err(e) => return failed(&action.id, error_chain(&e)),
        };
        self.qmp_change(action, vm, t, effect, |q| q.migrate(uri), &mut qmp)
    }

    /// Journal, run one QMP command, record how it went.
    fn qmp_change(
        &mut self,
        action: &Action,
        vm: &Vm,
        target: Target,
        effect: Effect,
        command: impl FnOnce(&mut QmpClient) -> Result<(), QmpError>,
        qmp: &mut QmpClient,
    ) -> Outcome {
        // The journal keeps each value as its file or property holds it (the text a
        // restore writes back).
        let intent = (
            vm.name.clone(),
            target,
            effect.before.to_string(),
            effect.after.to_string(),
        );
        let id = match self.journal.write_intents(action, vec![intent], now_ms()) {
            Ok(ids) => ids[0],
            Err(e) => return failed(&action.id, format!("not applied: {}", error_chain(&e))),
        };
        let out = match command(qmp) {
            Ok(()) => {
                note(self.journal.done(id));
                outcome(&action.id, ActionResult::Applied, vec![effect], None)
            }
            Err(e) => {
                // Only QEMU's own refusal proves nothing changed; a timeout might not.
                let in_effect = e.class().is_none() && !e.vanished();
                let reason = error_chain(&e);
                note(self.journal.failed(id, &reason, in_effect));
                failed(&action.id, reason)
            }
        };
        note(self.journal.outcome(&out));
        out
    }

    fn rollback(&mut self, action: &Action, undo_id: &str, simulate: bool) -> Outcome {
        let entries: Vec<Entry> = self
            .journal
            .entries_of(undo_id)
            .into_iter()
            .filter(|e| e.in_effect())
            .cloned()
            .collect();
        if simulate {
            let effects = entries
                .iter()
                .map(|e| {
                    Effect::from_texts(
                        e.intent.target.effect_target(),
                        &e.intent.after,
                        &e.intent.before,
                    )
                })
                .collect();
            return outcome(&action.id, ActionResult::Simulated, effects, None);
        }
        if entries.is_empty() {
            // Nothing of it is in effect (never applied, already restored, compacted).
            return outcome(&action.id, ActionResult::Applied, vec![], None);
        }
        if let Err(e) = self.journal.write_intents(action, vec![], now_ms()) {
            return failed(&action.id, format!("not rolled back: {}", error_chain(&e)));
        }
        let restored = restore_entries(
            &mut self.journal,
            &self.guard,
            &entries,
            &action.id,
            self.options.qmp_timeout,
        );
        let out = restored.into_outcome(action.id.clone());
        note(self.journal.outcome(&out));
        self.compact_if_idle();
        out
    }

    /// Restore every change that may be in effect, newest action first: on clean exit,
    /// on SIGTERM, at the next start, and for `interference restore`. One outcome per
    /// action, with the id `restore:<action id>`. In dry-run mode, what would be
    /// restored, as Simulated outcomes.
    pub fn restore_all(&mut self) -> Vec<Outcome> {
        let groups = by_action_newest_first(self.in_effect());
        let mut outcomes = Vec::with_capacity(groups.len());
        for (action_id, entries) in groups {
            let id = format!("restore:{action_id}");
            if self.options.dry_run {
                let effects = entries
                    .iter()
                    .map(|e| {
                        Effect::from_texts(
                            e.intent.target.effect_target(),
                            &e.intent.after,
                            &e.intent.before,
                        )
                    })
                    .collect();
                outcomes.push(outcome(&id, ActionResult::Simulated, effects, None));
                continue;
            }
            let restored = restore_entries(
                &mut self.journal,
                &self.guard,
                &entries,
                "restore",
                self.options.qmp_timeout,
            );
            let out = restored.into_outcome(id);
            if out.result == ActionResult::Failed {
                warn!(action = %action_id, error = out.error.as_deref().unwrap_or(""), "restore incomplete");
            }
            outcomes.push(out);
        }
        if !self.options.dry_run {
            self.compact_if_idle();
        }
        outcomes
    }

    fn compact_if_idle(&mut self) {
        if !self.options.keep_history && self.journal.is_idle() {
            let r = self.journal.compact();
            note(r);
        }
    }
}

/// A journal append after the change (done, outcome): losing it is safe (the entry
/// stays in effect and a restore re-checks it), so it is logged, not fatal.
fn note(r: Result<(), JournalError>) {
    if let Err(e) = r {
        warn!(error = %error_chain(&e), "journal append failed after the change");
    }
}

fn outcome(
    action_id: &str,
    result: ActionResult,
    effects: Vec<Effect>,
    error: Option<String>,
) -> Outcome {
    Outcome {
        action_id: action_id.to_owned(),
        result,
        at_ms: now_ms(),
        effects,
        error,
    }
}

fn failed(action_id: &str, error: String) -> Outcome {
    outcome(action_id, ActionResult::Failed, vec![], Some(error))
}

#[cfg(test)]
mod tests;
