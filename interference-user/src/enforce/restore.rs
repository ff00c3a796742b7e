//! Putting journalled values back: the engine behind a policy rollback, the restore
//! on clean exit, SIGTERM and the next start, and `interference restore` ([`restore`]).
//!
//! For each entry still in effect, newest action first:
//! - a later action changed the same target since: the entry hands its original over
//!   to that later entry (journal `rebase`) instead of writing, so the later change
//!   stays and its own restore puts the true original back;
//! - a migration cannot be undone: the entry is closed, saying so;
//! - a cgroup file is checked by the guard against the VM root the journal recorded
//!   (the same rules as when it was written), and read: gone (VM stopped) closes the
//!   entry; already at its original closes it; a value this agent cannot have left
//!   there (someone changed it since) is left alone and the entry closed with a
//!   warning; otherwise it is written back, cpusets in tree order;
//! - a balloon target is set back over QMP; a VM whose socket is gone closes it.
//!
//! An entry that could not be restored (write refused, QMP timeout) stays in effect
//! for the next attempt. Restore outcomes carry the action id `restore:<id>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

use super::apply::{error_chain, EnforceError, Enforcer, EnforcerOptions};
use super::cgroup::{
    plan_restore, plausibly_ours, read_value, restore_value, same_value, RestoreItem,
};
use super::guard::{check_write_under, ManagedRoots};
use super::journal::{Entry, Journal, Target};
use crate::clock::now_ms;
use crate::inventory::Mounts;
use crate::policy::{ActionResult, Effect, Outcome};
use crate::qmp::QmpClient;

/// What `interference restore` did.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreReport {
    pub journal: PathBuf,
    /// One per journalled action that had changes in effect, newest first.
    pub outcomes: Vec<Outcome>,
    /// Changes still in effect afterwards (could not be restored; retried next time).
    pub left_in_effect: usize,
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

/// Restore every change the journal at `journal` has in effect, using the host's
/// cgroup mount table. Refuses to run while an agent holds the journal.
pub fn restore(journal: &Path) -> Result<RestoreReport, EnforceError> {
    let mounts = Mounts::read(Path::new("/proc"))?;
    let options = EnforcerOptions {
        journal: journal.to_path_buf(),
        ..EnforcerOptions::default()
    };
    restore_with(options, mounts)
}

/// [`restore`] with explicit options (dry run: report what would be restored) and
/// mount table.
pub fn restore_with(
    options: EnforcerOptions,
    mounts: Mounts,
) -> Result<RestoreReport, EnforceError> {
    let journal = options.journal.clone();
    let mut enforcer = Enforcer::open(options, mounts)?;
    let outcomes = enforcer.restore_all();
    Ok(RestoreReport {
        journal,
        left_in_effect: enforcer.in_effect().len(),
        outcomes,
    })
}

/// What restoring a batch of entries did.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    pub effects: Vec<Effect>,
    pub errors: Vec<String>,
}

impl Restored {
    pub fn into_outcome(self, action_id: String) -> Outcome {
        let failed = !self.errors.is_empty();
        Outcome {
            action_id,
            result: if failed {
                ActionResult::Failed
            } else {
                ActionResult::Applied
            },
            at_ms: now_ms(),
            effects: self.effects,
            error: failed.then(|| self.errors.join("; ")),
        }
    }
}

/// Restore `entries` (in effect, typically one action's), closing each in the journal
/// with `by`. See the module doc.
pub(crate) fn restore_entries(
    journal: &mut Journal,
    guard: &ManagedRoots,
    entries: &[Entry],
    by: &str,
    qmp_timeout: Duration,
) -> Restored {
    let mut out = Restored::default();
    let mut cgroup_items: Vec<(u64, RestoreItem)> = Vec::new();
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by_key(|e| std::cmp::Reverse(e.intent.id));
    for entry in sorted {
        let id = entry.intent.id;
        let target = entry.intent.target.effect_target();
        let later = journal
            .in_effect()
            .into_iter()
            .filter(|l| l.intent.id > id && l.intent.action_id != entry.intent.action_id)
            .find(|l| l.intent.target.effect_target() == target)
            .map(|l| l.intent.id);
        if let Some(later) = later {
            note(&mut out, journal.hand_over(id, later, by, now_ms()));
            continue;
        }
        match &entry.intent.target {
            Target::Migration { .. } => {
                let why = "a live migration cannot be undone".to_owned();
                note(&mut out, journal.rollback(id, by, Some(why), now_ms()));
            }
            Target::Cgroup { file, root } => {
                if let Some(item) =
                    check_cgroup_entry(journal, guard, entry, file, root, by, &mut out)
                {
                    cgroup_items.push((id, item));
                }
            }
            Target::Balloon { socket, .. } => {
                restore_balloon(journal, entry, socket, by, qmp_timeout, &mut out);
            }
        }
    }
    write_cgroups(journal, cgroup_items, by, &mut out);
    out
}

/// Decide what to do with one cgroup entry; Some when its file must be written back.
fn check_cgroup_entry(
    journal: &mut Journal,
    guard: &ManagedRoots,
    entry: &Entry,
    file: &Path,
    root: &Path,
    by: &str,
    out: &mut Restored,
) -> Option<RestoreItem> {
    let id = entry.intent.id;
    let vm = &entry.intent.vm;
    let (dir, name) = match (file.parent(), file.file_name().and_then(|n| n.to_str())) {
        (Some(d), Some(n)) => (d, n),
        _ => {
            out.errors.push(format!(
                "journal entry {id}: {} is not a file path",
                file.display()
            ));
            return None;
        }
    };
    let checked = guard
        .check_root(vm, root)
        .and_then(|r| check_write_under(guard, vm, std::slice::from_ref(&r), dir, name));
    let path = match checked {
        Ok(p) => p,
        Err(e) if e.vanished() => {
            close_gone(journal, id, file, by, out);
            return None;
        }
        Err(e) => {
            warn!(journal_entry = id, error = %e, "refusing to restore a journalled cgroup file");
            out.errors
                .push(format!("journal entry {id}: {}", error_chain(&e)));
            return None;
        }
    };
    let current = match read_value(&path) {
        Ok(v) => v,
        Err(e) if e.vanished() => {
            close_gone(journal, id, file, by, out);
            return None;
        }
        Err(e) => {
            out.errors.push(error_chain(&e));
            return None;
        }
    };
    let (before, after) = (&entry.intent.before, &entry.intent.after);
    if same_value(&path, &current, before) {
        note(
            out,
            journal.rollback(
                id,
                by,
                Some("already at its original value".into()),
                now_ms(),
            ),
        );
        return None;
    }
    if !plausibly_ours(&path, &current, before, after) {
        let why = format!(
            "changed by someone else since (holds {current:?}, the agent wrote {after:?}); left as it is"
        );
        warn!(file = %path.display(), original = %before, "{why}");
        note(out, journal.rollback(id, by, Some(why), now_ms()));
        return None;
    }
    Some(RestoreItem {
        file: path,
        current,
        before: before.clone(),
    })
}

/// Write the cgroup items back in a valid order; close the entries that made it.
fn write_cgroups(
    journal: &mut Journal,
    items: Vec<(u64, RestoreItem)>,
    by: &str,
    out: &mut Restored,
) {
    if items.is_empty() {
        return;
    }
    let plain: Vec<RestoreItem> = items.iter().map(|(_, i)| i.clone()).collect();
    let writes = match plan_restore(&plain) {
        Ok(w) => w,
        Err(e) => {
            out.errors.push(error_chain(&e));
            return;
        }
    };
    // What each file finally got, and why when it is not the journalled value.
    let mut written: BTreeMap<PathBuf, (String, Option<String>)> = BTreeMap::new();
    for (file, value) in &writes {
        match restore_value(file, value) {
            Ok(w) => {
                written.insert(file.clone(), w);
            }
            Err(e) if e.vanished() => {
                // The VM went away mid-restore: its entries have nothing left to restore.
                for (id, item) in items.iter().filter(|(_, i)| &i.file == file) {
                    close_gone(journal, *id, &item.file, by, out);
                }
            }
            Err(e) => {
                warn!(file = %file.display(), error = %e, "restore failed; the change stays journalled");
                out.errors.push(error_chain(&e));
                return;
            }
        }
    }
    for (id, item) in items {
        if journal.entry(id).is_some_and(Entry::in_effect) {
            let (after, why) = written
                .remove(&item.file)
                .unwrap_or_else(|| (item.before.clone(), None));
            note(out, journal.rollback(id, by, why, now_ms()));
            info!(file = %item.file.display(), value = %after, "restored");
            out.effects.push(Effect {
                target: item.file,
                before: item.current,
                after,
            });
        }
    }
}

fn restore_balloon(
    journal: &mut Journal,
    entry: &Entry,
    socket: &Path,
    by: &str,
    timeout: Duration,
    out: &mut Restored,
) {
    let id = entry.intent.id;
    let Ok(bytes) = entry.intent.before.parse::<u64>() else {
        out.errors.push(format!(
            "journal entry {id}: balloon size {:?} is not a number",
            entry.intent.before
        ));
        return;
    };
    let result = QmpClient::connect(socket, timeout).and_then(|mut q| {
        let now = q.query_balloon()?;
        q.balloon(bytes)?;
        Ok(now)
    });
    match result {
        Ok(now) => {
            note(out, journal.rollback(id, by, None, now_ms()));
            out.effects.push(Effect {
                target: entry.intent.target.effect_target(),
                before: now.to_string(),
                after: bytes.to_string(),
            });
        }
        Err(e) if e.vanished() => {
            let why = format!("VM gone ({}); nothing to restore", error_chain(&e));
            note(out, journal.rollback(id, by, Some(why.clone()), now_ms()));
            out.errors.push(why);
        }
        Err(e) => out.errors.push(error_chain(&e)),
    }
}

/// The cgroup is gone with its VM: nothing to restore, but the outcome says why.
fn close_gone(journal: &mut Journal, id: u64, file: &Path, by: &str, out: &mut Restored) {
    let why = format!(
        "{} vanished (VM stopped?); nothing to restore",
        file.display()
    );
    note(out, journal.rollback(id, by, Some(why.clone()), now_ms()));
    out.errors.push(why);
}

/// A journal append failed after the fact: the entry stays in effect, which only means
/// a later restore looks at it again; say so and go on.
fn note(out: &mut Restored, r: Result<(), super::journal::JournalError>) {
    if let Err(e) = r {
        warn!(error = %e, "journal append failed; the entry will be checked again");
        out.errors.push(error_chain(&e));
    }
}

/// In-effect entries grouped by action, newest action first.
pub(crate) fn by_action_newest_first(entries: Vec<Entry>) -> Vec<(String, Vec<Entry>)> {
    let mut groups: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for e in entries {
        groups
            .entry(e.intent.action_id.clone())
            .or_default()
            .push(e);
    }
    let mut out: Vec<(String, Vec<Entry>)> = groups.into_iter().collect();
    out.sort_by_key(|(_, es)| std::cmp::Reverse(es.iter().map(|e| e.intent.id).max().unwrap_or(0)));
    out
}
