//! The ledger: append-only JSONL files, one per billing period (`YYYY-MM.jsonl`), in
//! one directory per host.
//!
//! Lines are appended whole with one `write(2)` per batch and synced with
//! `fdatasync(2)` before [`Ledger::append`] returns. A record is written at most once:
//! its id is looked up in the ids already in its period's file (read when the file is
//! first touched) and skipped when present, so posting the same use twice (a restart
//! that re-bills what a crashed run may already have billed) is harmless. A crash can
//! tear only the last line: on open it is cut off with a warning, and whatever it held
//! is posted again by the restarted agent under the same id.
//!
//! One writer at a time: the directory's `.lock` is held (flock) while the ledger is
//! open for writing. Readers ([`read`]) need no lock: they see whole lines, skip a torn
//! tail, and report a corrupt line by file and line while still reading the rest.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::warn;

use super::alias::Aliases;
use super::period::Period;
use super::record::LedgerRecord;
use crate::durable::{complete_len, cut_torn_tail, is_locked, lock_exclusive};

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error("cannot open the ledger directory {dir}: {source}")]
    Open {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the ledger {dir} is in use by another process (a running agent?)")]
    Locked { dir: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot append to {path}: {source}")]
    Append {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no ledger at {dir}: the directory does not exist")]
    Missing { dir: PathBuf },
}

/// Period files kept open, with their ids in memory: the current period, the one
/// before (run numbers, segments posted late) and one more. The least recently used
/// is closed when another opens, and opened again (read back) if it is needed (a long
/// action's end): a ledger open for months holds neither a descriptor nor the ids
/// of every month it has seen (the soak found one more of each a month).
pub const OPEN_PERIODS: usize = 3;

/// A period's file, open for appending, the ids it holds and the actions whose last
/// segment it holds.
#[derive(Debug)]
struct PeriodFile {
    path: PathBuf,
    file: File,
    ids: HashSet<String>,
    ended: HashSet<String>,
    /// When it was last used ([`Ledger::uses`]).
    used: u64,
}

/// The ledger open for writing.
#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    _lock: File,
    aliases: Aliases,
    files: HashMap<Period, PeriodFile>,
    /// Uses of period files so far: the clock of [`PeriodFile::used`].
    uses: u64,
    /// Tests only (`testing` feature): every append fails as on a full disk (the
    /// privileged tests fill a real filesystem).
    #[cfg(any(test, feature = "testing"))]
    fail_appends: bool,
}

impl Ledger {
    /// Open (creating) the directory, take its lock, and load (or create) the alias
    /// secret.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        let open_err = |source| LedgerError::Open {
            dir: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(open_err)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(".lock"))
            .map_err(open_err)?;
        lock_exclusive(&lock).map_err(|e| {
            if is_locked(&e) {
                LedgerError::Locked {
                    dir: dir.to_path_buf(),
                }
            } else {
                open_err(e)
            }
        })?;
        let aliases = Aliases::load_or_create(dir).map_err(open_err)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            _lock: lock,
            aliases,
            files: HashMap::new(),
            uses: 0,
            #[cfg(any(test, feature = "testing"))]
            fail_appends: false,
        })
    }

    /// Tests only: make every append fail (`ENOSPC`) until switched back.
    #[cfg(any(test, feature = "testing"))]
    pub fn fail_appends(&mut self, fail: bool) {
        self.fail_appends = fail;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn aliases(&self) -> &Aliases {
        &self.aliases
    }

    /// Whether a record with this id is already in its period's file.
    pub fn contains(&mut self, period: Period, id: &str) -> Result<bool, LedgerError> {
        Ok(self.period_file(period)?.ids.contains(id))
    }

    /// Whether the action's last segment was posted in a period from `from` to `to`.
    pub fn ended(
        &mut self,
        action_id: &str,
        from: Period,
        to: Period,
    ) -> Result<bool, LedgerError> {
        let mut p = from;
        while p <= to {
            if self.period_file(p)?.ended.contains(action_id) {
                return Ok(true);
            }
            p = p.next();
        }
        Ok(false)
    }

    /// The highest run number (`<host>-<run>-<tick>-<seq>` action ids) that the ledger's
    /// files of `periods` hold for `host`: a new run must be above it, so that no action
    /// id in the ledger is issued again (see `enforce::journal`'s `start_run`).
    pub fn max_run(&mut self, host: &str, periods: &[Period]) -> Result<u64, LedgerError> {
        let mut max = 0;
        for p in periods {
            let pf = self.period_file(*p)?;
            for id in &pf.ids {
                if let Some(run) = id
                    .strip_prefix(host)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .and_then(|rest| rest.split('-').next())
                    .and_then(|run| run.parse::<u64>().ok())
                {
                    max = max.max(run);
                }
            }
        }
        Ok(max)
    }

    /// Append the records not yet in the ledger (by id), synced; returns those written.
    /// A failed write leaves the file as it was (a partly written batch is cut off
    /// again), so the batch can be retried whole.
    pub fn append(&mut self, records: &[LedgerRecord]) -> Result<Vec<LedgerRecord>, LedgerError> {
        #[cfg(any(test, feature = "testing"))]
        if self.fail_appends {
            return Err(LedgerError::Append {
                path: self.dir.clone(),
                source: io::Error::from_raw_os_error(libc::ENOSPC),
            });
        }
        let mut by_period: BTreeMap<Period, Vec<&LedgerRecord>> = BTreeMap::new();
        for r in records {
            by_period.entry(r.period).or_default().push(r);
        }
        let mut written = Vec::new();
        for (period, records) in by_period {
            let pf = self.period_file(period)?;
            let mut buf = Vec::new();
            let mut new_ids = Vec::new();
            for r in records {
                if pf.ids.contains(&r.record_id) || new_ids.contains(&&r.record_id) {
                    continue;
                }
                serde_json::to_writer(&mut buf, r).map_err(|e| LedgerError::Append {
                    path: pf.path.clone(),
                    source: io::Error::other(e),
                })?;
                buf.push(b'\n');
                new_ids.push(&r.record_id);
                written.push(r.clone());
            }
            if buf.is_empty() {
                continue;
            }
            let before = pf.file.metadata().map(|m| m.len());
            if let Err(source) = pf.file.write_all(&buf).and_then(|_| pf.file.sync_data()) {
                // A short write (disk full) must not leave half a line for the next
                // append to follow; if even this fails, the torn tail is cut on open.
                if let Ok(len) = before {
                    let _ = pf.file.set_len(len);
                }
                return Err(LedgerError::Append {
                    path: pf.path.clone(),
                    source,
                });
            }
            for id in new_ids {
                pf.ids.insert(id.clone());
            }
            for r in written
                .iter()
                .filter(|r| r.period == period && r.last_segment)
            {
                if let Some(a) = &r.action_id {
                    pf.ended.insert(a.clone());
                }
            }
        }
        Ok(written)
    }

    /// The periods whose files are open now (at most [`OPEN_PERIODS`]).
    pub fn open_periods(&self) -> usize {
        self.files.len()
    }

    fn period_file(&mut self, period: Period) -> Result<&mut PeriodFile, LedgerError> {
        self.uses += 1;
        if !self.files.contains_key(&period) {
            let pf = open_period(&period_path(&self.dir, period))?;
            if self.files.len() >= OPEN_PERIODS {
                let least_recent = self.files.iter().min_by_key(|(_, f)| f.used);
                if let Some(p) = least_recent.map(|(p, _)| *p) {
                    self.files.remove(&p);
                }
            }
            self.files.insert(period, pf);
        }
        let pf = self.files.get_mut(&period).expect("inserted above");
        pf.used = self.uses;
        Ok(pf)
    }
}

/// `DIR/YYYY-MM.jsonl`.
pub fn period_path(dir: &Path, period: Period) -> PathBuf {
    dir.join(format!("{period}.jsonl"))
}

/// Open a period file for appending: cut a torn last line, index the ids.
fn open_period(path: &Path) -> Result<PeriodFile, LedgerError> {
    let err = |source| LedgerError::Append {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(err)?;
    let bytes = fs::read(path).map_err(err)?;
    let (good, cut) = cut_torn_tail(&file, &bytes).map_err(err)?;
    if cut > 0 {
        warn!(
            ledger = %path.display(),
            "the last ledger line was torn by a crash ({cut} bytes); cut it off, the agent posts it again"
        );
    }
    let mut ids = HashSet::new();
    let mut ended = HashSet::new();
    for (n, line) in bytes[..good].split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<IdOnly>(line) {
            Ok(r) => {
                if let (true, Some(a)) = (r.last, r.action) {
                    ended.insert(a);
                }
                ids.insert(r.id);
            }
            Err(e) => warn!(
                "{}:{}: not a ledger record ({e}); kept as it is, skipped",
                path.display(),
                n + 1
            ),
        }
    }
    Ok(PeriodFile {
        path: path.to_path_buf(),
        file,
        ids,
        ended,
        used: 0,
    })
}

/// What the writer needs of a line.
#[derive(serde::Deserialize)]
struct IdOnly {
    #[serde(rename = "x_RecordId")]
    id: String,
    #[serde(rename = "x_ActionId", default)]
    action: Option<String>,
    #[serde(rename = "x_LastSegment", default)]
    last: bool,
}

/// A line of the ledger that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
    pub problem: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.problem)
    }
}

/// What [`read`] found: the records (file order, periods ascending) and the lines it
/// had to skip.
#[derive(Debug, Default)]
pub struct Contents {
    pub records: Vec<LedgerRecord>,
    pub bad: Vec<BadLine>,
    /// Periods that have a file.
    pub periods: Vec<Period>,
}

/// Read the ledger in `dir`, every period or only `period`. A torn last line (a
/// crash, or a writer mid-append) is not an error; any other unreadable line is
/// reported in [`Contents::bad`] and the rest is read.
pub fn read(dir: &Path, period: Option<Period>) -> Result<Contents, LedgerError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(LedgerError::Missing {
                dir: dir.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(LedgerError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut periods = Vec::new();
    for e in entries {
        let e = e.map_err(|source| LedgerError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = e.file_name();
        let Some(p) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<Period>().ok())
        else {
            continue;
        };
        periods.push(p);
    }
    periods.sort();
    let mut out = Contents {
        periods: periods.clone(),
        ..Contents::default()
    };
    for p in periods
        .into_iter()
        .filter(|p| period.is_none_or(|q| q == *p))
    {
        let path = period_path(dir, p);
        let bytes = fs::read(&path).map_err(|source| LedgerError::Read {
            path: path.clone(),
            source,
        })?;
        let complete = complete_len(&bytes);
        for (n, line) in bytes[..complete].split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<LedgerRecord>(line) {
                Ok(r) if r.period != p => out.bad.push(BadLine {
                    path: path.clone(),
                    line: n + 1,
                    problem: format!(
                        "record {} is for period {}, not {p}; skipped",
                        r.record_id, r.period
                    ),
                }),
                Ok(r) => out.records.push(r),
                Err(e) => out.bad.push(BadLine {
                    path: path.clone(),
                    line: n + 1,
                    problem: format!("not a ledger record: {e}; skipped"),
                }),
            }
        }
    }
    Ok(out)
}
