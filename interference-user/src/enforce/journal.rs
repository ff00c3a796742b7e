//! The write-ahead journal: every value the agent changes is recorded, with what it was
//! before, and synced to disk before the change is made. It is also the source of truth
//! for what is owed to the ledger: an applied action stays in it until its last charge
//! segment is durably in the ledger.
//!
//! An append-only JSONL file (default [`DEFAULT_JOURNAL`]), one self-describing record
//! per line, each appended with a single `write(2)` and synced with `fdatasync(2)`:
//!
//! | record     | written                          | says                                   |
//! |------------|----------------------------------|----------------------------------------|
//! | `run`      | when an agent starts             | the run number its action ids carry     |
//! | `action`   | with the action's first intent   | the policy's [`Action`], for replay     |
//! | `intent`   | before the write                 | target, value before, value after       |
//! | `done`     | after the write succeeded        |                                         |
//! | `failed`   | after the write failed           | whether the change may still be in effect |
//! | `rollback` | after the value was restored (or left alone, with the reason) | the entry is closed, and when |
//! | `rebase`   | when an earlier change under a later one is rolled back | the later entry's new "before" |
//! | `outcome`  | after the action                 | the [`Outcome`], for replay             |
//! | `billed`   | once the action's last ledger segment is synced | nothing more is owed for it |
//!
//! Crash safety rests on two rules. A value is never written before its intent is on
//! disk, so after a crash at any instant every changed value has an intent whose
//! `before` is the original. And an entry is "in effect" unless a later record says
//! otherwise, so a lost `done` or `rollback` only makes a restore re-check a value that
//! is already right. A crash can tear only the last line (one writer, whole-line
//! appends): on open a torn tail is cut off, while a complete line that does not parse
//! is an error naming it, since skipping it could forget a change.
//!
//! Billing rests on a third: an applied action is *owed* until its `billed` record is
//! written, which the agent does only after the ledger has synced the action's last
//! segment (charge and credit). Compaction never drops an owed action, so a ledger that
//! cannot be written (full or read-only disk), or a crash before it was written, only
//! delays the lines: the next start bills them from here, with the time each change
//! was put back (`rollback` records carry it). Ledger ids are idempotent, so billing an
//! action twice never doubles a line. With billing off ([`Journal::open_with`]'s
//! `owes`), nothing is owed.
//!
//! Action ids are `<host>-<run>-<tick>-<seq>`: the run number ([`Journal::start_run`])
//! is higher than every run the journal has seen (the `run` record survives
//! compaction) and than the start time in seconds, so ids never repeat across
//! restarts, even when the tick starts again from 1.
//!
//! One agent at a time: the file is locked (flock) while open for writing, so
//! `interference restore` refuses to run beside a live agent. The journal stays small:
//! once nothing is in effect or owed it is truncated (keeping the run record), and a
//! long journal is rewritten with only what is still in effect or owed (temp file,
//! fsync, rename).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::warn;

use crate::durable::{cut_torn_tail, is_locked, lock_exclusive};
use crate::policy::{Action, Outcome};

/// Where the agent keeps its journal unless configured otherwise.
pub const DEFAULT_JOURNAL: &str = "/var/lib/interference/journal.jsonl";

/// A journal longer than this many lines is rewritten on open with only what is in
/// effect.
const COMPACT_LINES: usize = 10_000;

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("cannot open the journal {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the journal {path} is in use by another process (a running agent?); stop it first")]
    Locked { path: PathBuf },
    #[error("{path}:{line}: unreadable journal record {text:?}: {source}; the journal needs a look by hand")]
    Corrupt {
        path: PathBuf,
        line: usize,
        text: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot append to the journal {path}: {source}")]
    Append {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot compact the journal {path}: {source}")]
    Compact {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the journal {path} was opened read-only (dry run)")]
    ReadOnly { path: PathBuf },
    #[error("the journal {path} already holds action {action_id} ({existing}); refusing to reuse its id for {new}")]
    IdReused {
        path: PathBuf,
        action_id: String,
        existing: String,
        new: String,
    },
}

/// What an entry changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// A cgroup file, found under the VM cgroup directory `root` (the guard checks a
    /// restore against it again).
    Cgroup { file: PathBuf, root: PathBuf },
    /// The balloon target of a VM's balloon device (`before`/`after` in bytes).
    Balloon { socket: PathBuf, device: String },
    /// A live migration started towards `after`; it cannot be undone.
    Migration { socket: PathBuf },
}

impl Target {
    /// Whether a restore can put `before` back.
    pub fn restorable(&self) -> bool {
        !matches!(self, Self::Migration { .. })
    }

    /// The name used in [`crate::policy::Effect::target`]: the file, or
    /// `qmp:<socket>#balloon` / `qmp:<socket>#migrate`.
    pub fn effect_target(&self) -> PathBuf {
        match self {
            Self::Cgroup { file, .. } => file.clone(),
            Self::Balloon { socket, .. } => format!("qmp:{}#balloon", socket.display()).into(),
            Self::Migration { socket } => format!("qmp:{}#migrate", socket.display()).into(),
        }
    }
}

/// One change, recorded before it is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Unique within the file, increasing.
    pub id: u64,
    pub action_id: String,
    pub vm: String,
    pub target: Target,
    /// The value before this action (the file's own text, or bytes for a balloon).
    pub before: String,
    pub after: String,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rec", rename_all = "snake_case")]
enum Record {
    Run {
        run: u64,
        started_ms: u64,
    },
    Action {
        action: Action,
    },
    Intent(Intent),
    Done {
        id: u64,
    },
    Failed {
        id: u64,
        error: String,
        in_effect: bool,
    },
    Rollback {
        id: u64,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        /// When the entry was closed (absent in journals written before it existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_ms: Option<u64>,
    },
    Rebase {
        id: u64,
        before: String,
    },
    Outcome {
        outcome: Outcome,
    },
    Billed {
        action_id: String,
        at_ms: u64,
    },
}

/// Where an entry stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryState {
    /// Intent written, nothing since: the write may or may not have happened.
    Pending,
    Done,
    Failed {
        error: String,
        in_effect: bool,
    },
    /// Restored, or closed without a write (value already right, changed by someone
    /// else, cgroup gone, not restorable); `by` is the rollback action or `restore`,
    /// `at_ms` when (None in journals written before it was recorded).
    Closed {
        by: String,
        note: Option<String>,
        at_ms: Option<u64>,
    },
}

/// An intent and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub intent: Intent,
    pub state: EntryState,
}

impl Entry {
    /// May the change be in effect now (so a restore must look at it)?
    pub fn in_effect(&self) -> bool {
        match &self.state {
            EntryState::Pending | EntryState::Done => true,
            EntryState::Failed { in_effect, .. } => *in_effect,
            EntryState::Closed { .. } => false,
        }
    }
}

/// An applied action whose last ledger segment is not known to be in the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct Owed {
    pub action: Action,
    /// Its applied outcome (`at_ms` is when it took effect).
    pub outcome: Outcome,
    /// When its last entry was put back; None while any of it may still be in effect.
    pub ended_ms: Option<u64>,
}

/// The journal: its file (locked) and its records, indexed.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    /// None when opened read-only.
    file: Option<File>,
    entries: BTreeMap<u64, Entry>,
    /// Actions in journal order, with their outcome once written.
    actions: Vec<(Action, Option<Outcome>)>,
    /// Actions whose last segment is in the ledger, and when that was recorded.
    billed: HashMap<String, u64>,
    /// The latest `run` record: (run, started_ms).
    run: Option<(u64, u64)>,
    /// Applied actions are owed to the ledger until billed (false: billing is off).
    owes: bool,
    next_id: u64,
    lines: usize,
}

impl Journal {
    /// Open (creating it and its directory) for writing, take the lock, repair a torn
    /// last line, and compact when nothing is in effect or the file is long.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        Self::open_with(path, true, true)
    }

    /// [`Journal::open`]; without `compact`, the file keeps every record (an audit
    /// trail, and what the crash tests check the ledger against); without `owes`
    /// (billing is off), applied actions owe the ledger nothing and are compacted away
    /// once restored.
    pub fn open_with(path: &Path, compact: bool, owes: bool) -> Result<Self, JournalError> {
        let open_err = |source| JournalError::Open {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(open_err)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(open_err)?;
        lock_exclusive(&file).map_err(|e| {
            if is_locked(&e) {
                JournalError::Locked {
                    path: path.to_path_buf(),
                }
            } else {
                open_err(e)
            }
        })?;
        let bytes = fs::read(path).map_err(open_err)?;
        let (good, cut) = cut_torn_tail(&file, &bytes).map_err(open_err)?;
        if cut > 0 {
            warn!(
                journal = %path.display(),
                "the last journal line was torn by a crash ({cut} bytes); cut it off"
            );
        }
        let mut journal = Self::parse(path, &bytes[..good])?;
        journal.file = Some(file);
        journal.owes = owes;
        if compact && (journal.is_idle() && journal.lines > 1 || journal.lines > COMPACT_LINES) {
            journal.compact()?;
        }
        Ok(journal)
    }

    /// Read without locking, repairing or writing (dry run, inspection). A torn last
    /// line is ignored.
    pub fn read(path: &Path) -> Result<Self, JournalError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(JournalError::Open {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let good = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        Self::parse(path, &bytes[..good])
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Self, JournalError> {
        let mut journal = Self {
            path: path.to_path_buf(),
            file: None,
            entries: BTreeMap::new(),
            actions: Vec::new(),
            billed: HashMap::new(),
            run: None,
            owes: true,
            next_id: 1,
            lines: 0,
        };
        for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let record: Record =
                serde_json::from_slice(line).map_err(|source| JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: index + 1,
                    text: String::from_utf8_lossy(line).into_owned(),
                    source,
                })?;
            journal.apply(record);
            journal.lines += 1;
        }
        Ok(journal)
    }

    /// Update the index with one record (read back or just appended).
    fn apply(&mut self, record: Record) {
        match record {
            Record::Run { run, started_ms } => {
                if self.run.is_none_or(|(r, _)| run >= r) {
                    self.run = Some((run, started_ms));
                }
            }
            Record::Billed { action_id, at_ms } => {
                self.billed.insert(action_id, at_ms);
            }
            Record::Action { action } => {
                if !self.actions.iter().any(|(a, _)| a.id == action.id) {
                    self.actions.push((action, None));
                }
            }
            Record::Intent(intent) => {
                self.next_id = self.next_id.max(intent.id + 1);
                self.entries.insert(
                    intent.id,
                    Entry {
                        intent,
                        state: EntryState::Pending,
                    },
                );
            }
            Record::Done { id } => self.set_state(id, EntryState::Done),
            Record::Failed {
                id,
                error,
                in_effect,
            } => self.set_state(id, EntryState::Failed { error, in_effect }),
            Record::Rollback {
                id,
                by,
                note,
                at_ms,
            } => self.set_state(id, EntryState::Closed { by, note, at_ms }),
            Record::Rebase { id, before } => {
                if let Some(e) = self.entries.get_mut(&id) {
                    e.intent.before = before;
                }
            }
            Record::Outcome { outcome } => {
                if let Some((_, o)) = self
                    .actions
                    .iter_mut()
                    .find(|(a, _)| a.id == outcome.action_id)
                {
                    *o = Some(outcome);
                }
            }
        }
    }

    fn set_state(&mut self, id: u64, state: EntryState) {
        if let Some(e) = self.entries.get_mut(&id) {
            // A closed entry stays closed (a late `done` after a rollback is stale).
            if !matches!(e.state, EntryState::Closed { .. }) {
                e.state = state;
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry still in the file, in id order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn entry(&self, id: u64) -> Option<&Entry> {
        self.entries.get(&id)
    }

    /// Every change that may be in effect, oldest first: what a restore puts back.
    pub fn in_effect(&self) -> Vec<&Entry> {
        self.entries.values().filter(|e| e.in_effect()).collect()
    }

    pub fn any_in_effect(&self) -> bool {
        self.entries.values().any(Entry::in_effect)
    }

    /// Nothing in effect and nothing owed to the ledger: the journal may be truncated.
    pub fn is_idle(&self) -> bool {
        !self.any_in_effect() && !self.actions.iter().any(|(a, o)| self.owes(a, o.as_ref()))
    }

    /// Whether `action` (with its outcome) is owed to the ledger: applied, a change
    /// that is billed (not a rollback), and not yet marked billed.
    fn owes(&self, action: &Action, outcome: Option<&Outcome>) -> bool {
        self.owes
            && !matches!(action.change, crate::policy::Change::Rollback { .. })
            && !action.simulated
            && outcome.is_some_and(|o| o.result == crate::policy::ActionResult::Applied)
            && !self.billed.contains_key(&action.id)
    }

    /// Applied actions whose last ledger segment is not known to be written, in journal
    /// order, with when they ended (None: some of it may still be in effect).
    pub fn owed(&self) -> Vec<Owed> {
        self.actions
            .iter()
            .filter(|(a, o)| self.owes(a, o.as_ref()))
            .filter_map(|(a, o)| {
                let entries = self.entries_of(&a.id);
                let ended_ms = if entries.iter().any(|e| e.in_effect()) {
                    None
                } else {
                    // The last entry put back; an action with nothing to put back (a
                    // migration, a journal from before `at_ms`) ended when it took
                    // effect at the latest known instant.
                    let closed = entries.iter().filter_map(|e| match &e.state {
                        EntryState::Closed { at_ms, .. } => *at_ms,
                        _ => None,
                    });
                    Some(closed.max().unwrap_or(o.as_ref()?.at_ms))
                };
                Some(Owed {
                    action: a.clone(),
                    outcome: o.clone()?,
                    ended_ms,
                })
            })
            .collect()
    }

    /// Record that the ledger holds the last segment of these actions: they are owed
    /// nothing more, and compaction may drop them once nothing of them is in effect.
    pub fn mark_billed<'a>(
        &mut self,
        action_ids: impl IntoIterator<Item = &'a str>,
        at_ms: u64,
    ) -> Result<(), JournalError> {
        let records: Vec<Record> = action_ids
            .into_iter()
            .filter(|id| !self.billed.contains_key(*id) && self.action(id).is_some())
            .map(|id| Record::Billed {
                action_id: id.to_owned(),
                at_ms,
            })
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        self.append(records)
    }

    /// The run number the latest agent wrote ([`Journal::start_run`]), if any.
    pub fn last_run(&self) -> Option<u64> {
        self.run.map(|(r, _)| r)
    }

    /// Start a new run: its number is above every run recorded here, above `at_least`
    /// (what the ledger has seen) and at least the start time in seconds, and no action
    /// id in the journal starts with `<prefix>-<run>-`. Synced before it returns, so no
    /// action of this run can be decided under an earlier number.
    pub fn start_run(
        &mut self,
        prefix: &str,
        now_ms: u64,
        at_least: u64,
    ) -> Result<u64, JournalError> {
        let mut run = (now_ms / 1000)
            .max(self.last_run().map_or(0, |r| r + 1))
            .max(at_least);
        while self.actions.iter().any(|(a, _)| {
            a.id.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('-'))
                .and_then(|rest| rest.split('-').next())
                .is_some_and(|r| r == run.to_string())
        }) {
            run += 1;
        }
        self.append(vec![Record::Run {
            run,
            started_ms: now_ms,
        }])?;
        Ok(run)
    }

    /// The entries of one action, in id order.
    pub fn entries_of(&self, action_id: &str) -> Vec<&Entry> {
        self.entries
            .values()
            .filter(|e| e.intent.action_id == action_id)
            .collect()
    }

    /// The journalled action with this id.
    pub fn action(&self, action_id: &str) -> Option<&Action> {
        self.actions
            .iter()
            .find(|(a, _)| a.id == action_id)
            .map(|(a, _)| a)
    }

    /// (action, outcome) pairs in journal order, for `PolicyState::replay`. Actions
    /// whose outcome was never written (a crash mid-action) are left out.
    pub fn history(&self) -> Vec<(Action, Outcome)> {
        self.actions
            .iter()
            .filter_map(|(a, o)| Some((a.clone(), o.clone()?)))
            .collect()
    }

    /// Write the action (once) and its intents, then sync: the caller may change the
    /// targets once this returns. The intents' ids are assigned here.
    pub fn write_intents(
        &mut self,
        action: &Action,
        intents: Vec<(String, Target, String, String)>,
        at_ms: u64,
    ) -> Result<Vec<u64>, JournalError> {
        let mut records = Vec::with_capacity(intents.len() + 1);
        match self.action(&action.id) {
            None => records.push(Record::Action {
                action: action.clone(),
            }),
            Some(existing) if existing != action => {
                return Err(JournalError::IdReused {
                    path: self.path.clone(),
                    action_id: action.id.clone(),
                    existing: existing.reason.clone(),
                    new: action.reason.clone(),
                })
            }
            Some(_) => {}
        }
        let mut ids = Vec::with_capacity(intents.len());
        for (offset, (vm, target, before, after)) in intents.into_iter().enumerate() {
            let id = self.next_id + offset as u64;
            ids.push(id);
            records.push(Record::Intent(Intent {
                id,
                action_id: action.id.clone(),
                vm,
                target,
                before,
                after,
                at_ms,
            }));
        }
        self.append(records)?;
        Ok(ids)
    }

    pub fn done(&mut self, id: u64) -> Result<(), JournalError> {
        self.append(vec![Record::Done { id }])
    }

    pub fn failed(&mut self, id: u64, error: &str, in_effect: bool) -> Result<(), JournalError> {
        self.append(vec![Record::Failed {
            id,
            error: error.to_owned(),
            in_effect,
        }])
    }

    /// Close an entry: restored, or left as it is for `note`, at `at_ms`.
    pub fn rollback(
        &mut self,
        id: u64,
        by: &str,
        note: Option<String>,
        at_ms: u64,
    ) -> Result<(), JournalError> {
        self.append(vec![Record::Rollback {
            id,
            by: by.to_owned(),
            note,
            at_ms: Some(at_ms),
        }])
    }

    /// Close `id` without writing its value because `later` changed the same target
    /// since: `later` inherits `id`'s original, in the same write.
    pub fn hand_over(
        &mut self,
        id: u64,
        later: u64,
        by: &str,
        at_ms: u64,
    ) -> Result<(), JournalError> {
        let Some(before) = self.entries.get(&id).map(|e| e.intent.before.clone()) else {
            return Ok(());
        };
        self.append(vec![
            Record::Rebase { id: later, before },
            Record::Rollback {
                id,
                by: by.to_owned(),
                note: Some(format!(
                    "superseded by journal entry {later}, which now restores the original"
                )),
                at_ms: Some(at_ms),
            },
        ])
    }

    pub fn outcome(&mut self, outcome: &Outcome) -> Result<(), JournalError> {
        self.append(vec![Record::Outcome {
            outcome: outcome.clone(),
        }])
    }

    /// Append whole lines with one write, sync, then index them.
    fn append(&mut self, records: Vec<Record>) -> Result<(), JournalError> {
        let path = self.path.clone();
        let file = self
            .file
            .as_mut()
            .ok_or(JournalError::ReadOnly { path: path.clone() })?;
        let mut buf = Vec::new();
        for r in &records {
            // Serialising our own plain types cannot fail (no maps with non-string keys).
            serde_json::to_writer(&mut buf, r).map_err(|e| JournalError::Append {
                path: path.clone(),
                source: io::Error::other(e),
            })?;
            buf.push(b'\n');
        }
        file.write_all(&buf)
            .and_then(|_| file.sync_data())
            .map_err(|source| JournalError::Append { path, source })?;
        self.lines += records.len();
        for r in records {
            self.apply(r);
        }
        Ok(())
    }

    /// Drop what is no longer needed: everything but the run record when nothing is in
    /// effect or owed, else rewrite the file with only the actions that still have
    /// entries in effect or are owed to the ledger (with all their entries, so an owed
    /// action keeps when it was put back).
    pub fn compact(&mut self) -> Result<(), JournalError> {
        let path = self.path.clone();
        let err = |source| JournalError::Compact {
            path: path.clone(),
            source,
        };
        if self.file.is_none() {
            return Err(JournalError::ReadOnly { path: path.clone() });
        }
        let mut records: Vec<Record> = self
            .run
            .map(|(run, started_ms)| Record::Run { run, started_ms })
            .into_iter()
            .collect();
        let keep: Vec<String> = self
            .actions
            .iter()
            .filter(|(a, o)| {
                self.owes(a, o.as_ref()) || self.entries_of(&a.id).iter().any(|e| e.in_effect())
            })
            .map(|(a, _)| a.id.clone())
            .collect();
        for (action, outcome) in self.actions.iter().filter(|(a, _)| keep.contains(&a.id)) {
            records.push(Record::Action {
                action: action.clone(),
            });
            for e in self.entries_of(&action.id) {
                // Closed entries matter only for when an owed action ended.
                if !e.in_effect() && !self.owes(action, outcome.as_ref()) {
                    continue;
                }
                records.push(Record::Intent(e.intent.clone()));
                match &e.state {
                    EntryState::Done => records.push(Record::Done { id: e.intent.id }),
                    EntryState::Failed { error, in_effect } => records.push(Record::Failed {
                        id: e.intent.id,
                        error: error.clone(),
                        in_effect: *in_effect,
                    }),
                    EntryState::Closed { by, note, at_ms } => records.push(Record::Rollback {
                        id: e.intent.id,
                        by: by.clone(),
                        note: note.clone(),
                        at_ms: *at_ms,
                    }),
                    EntryState::Pending => {}
                }
            }
            if let Some(o) = outcome {
                records.push(Record::Outcome { outcome: o.clone() });
            }
            if let Some(at_ms) = self.billed.get(&action.id) {
                records.push(Record::Billed {
                    action_id: action.id.clone(),
                    at_ms: *at_ms,
                });
            }
        }
        let tmp = path.with_extension("jsonl.compact");
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        // Appending, like the file it replaces (a later truncate must not leave the
        // write offset behind), and locked before anyone can open it by its name.
        let mut new = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        lock_exclusive(&new).map_err(err)?;
        let mut buf = Vec::new();
        for r in &records {
            serde_json::to_writer(&mut buf, r).map_err(|e| err(io::Error::other(e)))?;
            buf.push(b'\n');
        }
        new.write_all(&buf)
            .and_then(|_| new.sync_all())
            .map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
        self.file = Some(new);
        let fresh = Self::parse(&path, &buf)?;
        self.entries = fresh.entries;
        self.actions = fresh.actions;
        self.billed = fresh.billed;
        self.run = fresh.run;
        self.lines = fresh.lines;
        Ok(())
    }
}

/// flock(LOCK_EX | LOCK_NB).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{ActionResult, Change, Rung};

    fn action(id: &str) -> Action {
        Action {
            payer: Default::default(),
            not_donors: Vec::new(),
            id: id.into(),
            decided_ms: 1,
            rung: Rung::Weight,
            change: Change::CpuWeight { weight: 50 },
            vm: "web".into(),
            protects: "db".into(),
            victim: "db".into(),
            aggressor: "web".into(),
            score: 80.0,
            vm_is_aggressor: true,
            unobservable: Vec::new(),
            cause: None,
            customers: Default::default(),
            vcpus: None,
            simulated: false,
            reason: "test".into(),
            trigger: Default::default(),
        }
    }

    fn file(n: u32) -> Target {
        Target::Cgroup {
            file: format!("/sys/fs/cgroup/cpu/vm/f{n}").into(),
            root: "/sys/fs/cgroup/cpu/vm".into(),
        }
    }

    fn intent(n: u32) -> (String, Target, String, String) {
        ("web".into(), file(n), "1024".into(), "512".into())
    }

    #[test]
    fn intents_survive_reopen_and_close_on_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/journal.jsonl");
        let mut j = Journal::open(&path).unwrap();
        let ids = j
            .write_intents(&action("a1"), vec![intent(1), intent(2)], 5)
            .unwrap();
        assert_eq!(ids, vec![1, 2]);
        j.done(1).unwrap();
        j.failed(2, "EINVAL", false).unwrap();
        drop(j);
        let mut j = Journal::open(&path).unwrap();
        let open: Vec<u64> = j.in_effect().iter().map(|e| e.intent.id).collect();
        assert_eq!(
            open,
            vec![1],
            "a failed write that changed nothing is closed"
        );
        assert_eq!(j.entry(1).unwrap().intent.before, "1024");
        let ids = j.write_intents(&action("a2"), vec![intent(3)], 6).unwrap();
        assert_eq!(ids, vec![3], "ids keep increasing");
        j.rollback(1, "restore", None, 7).unwrap();
        j.rollback(3, "restore", None, 7).unwrap();
        j.done(3).unwrap();
        assert!(
            !j.any_in_effect(),
            "a late done does not reopen a closed entry"
        );
        j.compact().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&path).unwrap();
        j.write_intents(&action("a1"), vec![intent(1)], 5).unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"rec":"intent","id":2,"action_id":"a1","vm":"web","tar"#)
            .unwrap();
        drop(f);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.in_effect().len(), 1);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n') && !text.contains("\"tar\n"), "{text}");
        // Read-only inspection of the same file agrees.
        drop(j);
        assert_eq!(Journal::read(&path).unwrap().in_effect().len(), 1);
    }

    #[test]
    fn a_corrupt_complete_line_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&path).unwrap();
        j.write_intents(&action("a1"), vec![intent(1)], 5).unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"garbage\n").unwrap();
        drop(f);
        let e = Journal::open(&path).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("journal.jsonl:3") && msg.contains("garbage"),
            "{msg}"
        );
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let _j = Journal::open(&path).unwrap();
        let e = Journal::open(&path).unwrap_err();
        assert!(matches!(e, JournalError::Locked { .. }), "{e}");
        assert!(Journal::read(&path).is_ok(), "reading needs no lock");
    }

    #[test]
    fn hand_over_moves_the_original_to_the_later_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&path).unwrap();
        j.write_intents(
            &action("a1"),
            vec![("web".into(), file(1), "1024".into(), "512".into())],
            1,
        )
        .unwrap();
        j.write_intents(
            &action("a2"),
            vec![("web".into(), file(1), "512".into(), "256".into())],
            2,
        )
        .unwrap();
        j.hand_over(1, 2, "rb-a1", 7).unwrap();
        drop(j);
        let j = Journal::open(&path).unwrap();
        let open = j.in_effect();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].intent.id, 2);
        assert_eq!(open[0].intent.before, "1024");
    }

    #[test]
    fn compaction_keeps_only_what_is_in_effect_and_history_replays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&path).unwrap();
        for n in 0..5u32 {
            let a = action(&format!("a{n}"));
            let ids = j.write_intents(&a, vec![intent(n)], 1).unwrap();
            j.done(ids[0]).unwrap();
            j.outcome(&Outcome {
                action_id: a.id.clone(),
                result: ActionResult::Applied,
                at_ms: 2,
                effects: vec![],
                error: None,
            })
            .unwrap();
            if n != 3 {
                j.rollback(ids[0], "restore", None, 7).unwrap();
            }
        }
        j.mark_billed(["a0", "a1", "a2", "a4"], 8).unwrap();
        j.compact().unwrap();
        drop(j);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().count(),
            4,
            "action, intent, done, outcome:\n{text}"
        );
        let mut j = Journal::open(&path).unwrap();
        let history = j.history();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].0.id, "a3");
        // Still locked after the rename, and still appendable.
        assert!(matches!(
            Journal::open(&path),
            Err(JournalError::Locked { .. })
        ));
        j.write_intents(&action("a9"), vec![intent(9)], 3).unwrap();
        assert_eq!(j.in_effect().len(), 2);
    }

    fn applied(j: &mut Journal, id: &str, n: u32, at_ms: u64) -> u64 {
        let a = action(id);
        let ids = j.write_intents(&a, vec![intent(n)], at_ms).unwrap();
        j.done(ids[0]).unwrap();
        j.outcome(&Outcome {
            action_id: a.id.clone(),
            result: ActionResult::Applied,
            at_ms,
            effects: vec![],
            error: None,
        })
        .unwrap();
        ids[0]
    }

    #[test]
    fn an_applied_action_is_owed_until_billed_even_after_it_is_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&path).unwrap();
        let e1 = applied(&mut j, "h-1-1-0", 1, 100);
        let _e2 = applied(&mut j, "h-1-2-0", 2, 200);
        // A failed action owes nothing.
        let f = action("h-1-3-0");
        let ids = j.write_intents(&f, vec![intent(3)], 300).unwrap();
        j.failed(ids[0], "EINVAL", false).unwrap();
        j.outcome(&Outcome {
            action_id: f.id.clone(),
            result: ActionResult::Failed,
            at_ms: 300,
            effects: vec![],
            error: Some("EINVAL".into()),
        })
        .unwrap();
        let owed = j.owed();
        assert_eq!(owed.len(), 2);
        assert_eq!(
            (owed[0].action.id.as_str(), owed[0].ended_ms),
            ("h-1-1-0", None)
        );
        // Put back at 1500, its lines not written yet (the ledger's disk is full).
        j.rollback(e1, "restore", None, 1500).unwrap();
        drop(j);
        // Reopening compacts: the restored action stays, owed, with when it ended.
        let mut j = Journal::open(&path).unwrap();
        let owed = j.owed();
        assert_eq!(owed.len(), 2, "{owed:?}");
        assert_eq!(owed[0].ended_ms, Some(1500));
        assert_eq!(owed[0].outcome.at_ms, 100);
        assert_eq!(owed[1].ended_ms, None, "still in effect");
        assert!(!j.is_idle());
        j.mark_billed(["h-1-1-0", "not-journalled"], 1600).unwrap();
        // Compaction (on open when idle or long, or as here) drops what is billed.
        j.compact().unwrap();
        drop(j);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.owed().len(), 1);
        assert!(
            j.action("h-1-1-0").is_none(),
            "billed and put back: compacted away"
        );
        assert!(j.action("h-1-3-0").is_none(), "failed: compacted away");
    }

    #[test]
    fn with_billing_off_nothing_is_owed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::open_with(&path, true, false).unwrap();
        let e = applied(&mut j, "h-1-1-0", 1, 100);
        j.rollback(e, "restore", None, 200).unwrap();
        assert!(j.owed().is_empty());
        assert!(j.is_idle());
    }

    #[test]
    fn runs_only_go_up_and_survive_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let now = 1_764_000_000_123;
        let mut j = Journal::open(&path).unwrap();
        assert_eq!(j.last_run(), None);
        let r1 = j.start_run("h", now, 0).unwrap();
        assert_eq!(r1, 1_764_000_000, "the start time in seconds");
        // The clock went back, and the agent restarted within the same second.
        let r2 = j.start_run("h", now - 60_000, 0).unwrap();
        assert_eq!(r2, r1 + 1);
        // The ledger has seen a higher run.
        let r3 = j.start_run("h", now, r1 + 10).unwrap();
        assert_eq!(r3, r1 + 10);
        drop(j);
        // Nothing in effect: truncated on open, but the run is kept.
        let mut j = Journal::open(&path).unwrap();
        assert_eq!(j.last_run(), Some(r3));
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 1);
        // An id of the would-be run already in the journal (a journal written by a
        // version without run records) is skipped over.
        applied(&mut j, &format!("h-{}-1-0", r3 + 1), 1, 1);
        applied(&mut j, &format!("h-{}-1-0", r3 + 2), 2, 1);
        assert_eq!(j.start_run("h", now, 0).unwrap(), r3 + 3);
    }

    #[test]
    fn an_action_id_is_never_journalled_for_two_actions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&path).unwrap();
        applied(&mut j, "h-1-1-0", 1, 100);
        let mut other = action("h-1-1-0");
        other.reason = "a later, different action".into();
        let e = j.write_intents(&other, vec![intent(2)], 200).unwrap_err();
        assert!(matches!(e, JournalError::IdReused { .. }), "{e}");
        assert!(e.to_string().contains("a later, different action"), "{e}");
        // The same action again (its rollback, a second intent) is fine.
        j.write_intents(&action("h-1-1-0"), vec![intent(3)], 300)
            .unwrap();
    }
}
