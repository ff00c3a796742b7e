//! The outbox: the bounded on-disk buffer for what the controller gets besides the
//! ledger (action phases, score events, capacity samples, rollups). The ledger needs no
//! such buffer (the link reads it through its cursor); these items exist nowhere else,
//! so they are appended here as the ticks produce them and sent from here.
//!
//! One JSONL file, `outbox-<generation>.jsonl` in the link's state directory, one
//! [`Item`] per line, appended with a single write (synced when it holds an action
//! phase, the items the fleet's caps and rollouts count). The link acknowledges up to
//! an [`OutboxMark`] (generation and byte offset) and saves that mark in its upload
//! cursor. A new generation starts when everything is acknowledged and the file has
//! grown, or when the buffer is full: then the unacknowledged part is rewritten
//! without its oldest rollups, score events and capacity samples (counted as dropped),
//! never without an action phase. A new generation is written whole (temporary file,
//! fsync, rename) before the old one is removed, and a mark of an older generation
//! means "nothing acknowledged", so a crash at any point can resend items (the
//! controller ignores ids it holds), never skip one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use interference_fleet::wire::Item;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::durable::cut_torn_tail;

/// A generation that is wholly acknowledged and at least this long is replaced by an
/// empty one.
const ROLL_BYTES: u64 = 1 << 20;

/// Lines of these kinds may be dropped when the buffer is full, oldest first: they are
/// summaries the fleet can do without for a while. Action phases never are.
const DROPPABLE: [&str; 3] = ["{\"rollup\":", "{\"score\":", "{\"capacity\":"];

#[derive(Debug, Error)]
pub enum OutboxError {
    #[error("the controller outbox {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("encoding an item for the controller outbox")]
    Encode(#[from] serde_json::Error),
}

/// How far the controller acknowledged: a byte offset (after a whole line) in one
/// generation of the outbox file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMark {
    pub generation: u64,
    pub offset: u64,
}

/// Items read after the acknowledged mark, for one batch.
#[derive(Debug, Default)]
pub struct OutboxBatch {
    pub items: Vec<Item>,
    /// Lines consumed (items plus unreadable lines passed over).
    pub lines: u64,
    /// Acknowledging this mark consumes them.
    pub end: OutboxMark,
}

pub struct Outbox {
    dir: PathBuf,
    generation: u64,
    file: File,
    len: u64,
    acked: u64,
    /// Lines after `acked`.
    pending: u64,
    max_bytes: u64,
    /// Lines dropped because the buffer was full, since start.
    dropped: u64,
}

impl Outbox {
    /// Opens the newest generation in `dir` (removing older ones a crash left), cuts a
    /// torn last line, and starts after `acked` when it is a mark of this generation.
    pub fn open(dir: &Path, max_bytes: u64, acked: OutboxMark) -> Result<Self, OutboxError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| OutboxError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut generations = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let name = entry.map_err(io_err(dir))?.file_name();
            if let Some(g) = name.to_str().and_then(generation_of) {
                generations.push(g);
            }
        }
        generations.sort_unstable();
        let generation = generations.last().copied().unwrap_or(1);
        for g in &generations[..generations.len().saturating_sub(1)] {
            let old = file_path(dir, *g);
            fs::remove_file(&old).map_err(io_err(&old))?;
        }
        let path = file_path(dir, generation);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(&path))?;
        let (good, cut) = cut_torn_tail(&file, &bytes).map_err(io_err(&path))?;
        if cut > 0 {
            tracing::warn!(
                "{}: cut {cut} bytes of a line a crash left unfinished",
                path.display()
            );
        }
        let bytes = &bytes[..good];
        let at = usize::try_from(acked.offset).unwrap_or(usize::MAX);
        let on_a_line = at == 0 || (at <= bytes.len() && bytes[at - 1] == b'\n');
        let acked = if acked.generation == generation && on_a_line {
            acked.offset
        } else {
            0
        };
        let pending = count_lines(&bytes[acked as usize..]);
        Ok(Self {
            dir: dir.to_owned(),
            generation,
            file,
            len: good as u64,
            acked,
            pending,
            max_bytes,
            dropped: 0,
        })
    }

    /// Appends items (one write; synced when one is an action phase). A full buffer
    /// first makes room (see the module doc).
    pub fn push(&mut self, items: &[Item]) -> Result<(), OutboxError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for item in items {
            serde_json::to_writer(&mut buf, item)?;
            buf.push(b'\n');
        }
        if self.len - self.acked + buf.len() as u64 > self.max_bytes {
            self.make_room(buf.len() as u64)?;
        }
        let path = self.path();
        self.file
            .write_all(&buf)
            .map_err(|source| OutboxError::Io {
                path: path.clone(),
                source,
            })?;
        if items.iter().any(|i| matches!(i, Item::ActionPhase(_))) {
            self.file
                .sync_data()
                .map_err(|source| OutboxError::Io { path, source })?;
        }
        self.len += buf.len() as u64;
        self.pending += items.len() as u64;
        Ok(())
    }

    /// Up to `max_items` items after the acknowledged mark. A line that does not read
    /// as an item (written by another version, say) is passed over with a warning.
    pub fn read(&mut self, max_items: usize) -> Result<OutboxBatch, OutboxError> {
        let path = self.path();
        let io_err = |source| OutboxError::Io {
            path: path.clone(),
            source,
        };
        let mut batch = OutboxBatch {
            end: self.mark(),
            ..OutboxBatch::default()
        };
        if self.acked == self.len {
            return Ok(batch);
        }
        let mut reader = File::open(&path).map_err(io_err)?;
        reader.seek(SeekFrom::Start(self.acked)).map_err(io_err)?;
        let mut reader = BufReader::new(reader.take(self.len - self.acked));
        let mut offset = self.acked;
        let mut line = String::new();
        while batch.items.len() < max_items {
            line.clear();
            let n = reader.read_line(&mut line).map_err(io_err)?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            offset += n as u64;
            batch.lines += 1;
            match serde_json::from_str::<Item>(line.trim_end()) {
                Ok(item) => batch.items.push(item),
                Err(e) => tracing::warn!(
                    "{} (line ending at byte {offset}): not an item, not sent: {e}",
                    path.display()
                ),
            }
        }
        batch.end = OutboxMark {
            generation: self.generation,
            offset,
        };
        Ok(batch)
    }

    /// The controller holds `batch`: what to save in the cursor, or None when the
    /// outbox moved to a new generation since it was read (its items are sent again).
    pub fn ack(&mut self, batch: &OutboxBatch) -> Result<Option<OutboxMark>, OutboxError> {
        let end = batch.end;
        if end.generation != self.generation || end.offset < self.acked || end.offset > self.len {
            return Ok(None);
        }
        self.acked = end.offset;
        self.pending = self.pending.saturating_sub(batch.lines);
        if self.acked == self.len && self.len >= ROLL_BYTES {
            self.rewrite(&[])?;
        }
        Ok(Some(self.mark()))
    }

    /// Items waiting for an acknowledgement.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Items dropped because the buffer was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn mark(&self) -> OutboxMark {
        OutboxMark {
            generation: self.generation,
            offset: self.acked,
        }
    }

    fn path(&self) -> PathBuf {
        file_path(&self.dir, self.generation)
    }

    /// Keeps the unacknowledged lines, less the oldest droppable ones, until they and
    /// `incoming` bytes fit in half the buffer (so that the next pushes do not rewrite
    /// again at once); action phases are kept whatever the size.
    fn make_room(&mut self, incoming: u64) -> Result<(), OutboxError> {
        let path = self.path();
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| {
                f.seek(SeekFrom::Start(self.acked))?;
                f.read_to_end(&mut bytes)
            })
            .map_err(|source| OutboxError::Io {
                path: path.clone(),
                source,
            })?;
        let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
        let mut size = bytes.len() as u64 + incoming;
        let target = self.max_bytes / 2;
        let mut keep = vec![true; lines.len()];
        for (i, line) in lines.iter().enumerate() {
            if size <= target {
                break;
            }
            if DROPPABLE.iter().any(|p| line.starts_with(p.as_bytes())) {
                keep[i] = false;
                size -= line.len() as u64;
            }
        }
        let kept: Vec<&[u8]> = lines
            .iter()
            .zip(&keep)
            .filter_map(|(l, k)| k.then_some(*l))
            .collect();
        let dropped = (lines.len() - kept.len()) as u64;
        self.dropped += dropped;
        tracing::warn!(
            "controller outbox full ({} bytes unacknowledged, limit {}): dropped the oldest {dropped} rollups, score events and capacity samples",
            bytes.len(),
            self.max_bytes
        );
        self.rewrite(&kept)
    }

    /// Starts the next generation holding `lines` (written whole before the old file
    /// goes), with nothing acknowledged.
    fn rewrite(&mut self, lines: &[&[u8]]) -> Result<(), OutboxError> {
        let next = self.generation + 1;
        let path = file_path(&self.dir, next);
        let tmp = self.dir.join(format!("outbox-{next}.jsonl.tmp"));
        let io_err = |source| OutboxError::Io {
            path: path.clone(),
            source,
        };
        let mut f = File::create(&tmp).map_err(io_err)?;
        let mut len = 0;
        for l in lines {
            f.write_all(l).map_err(io_err)?;
            len += l.len() as u64;
        }
        f.sync_all().map_err(io_err)?;
        fs::rename(&tmp, &path).map_err(io_err)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err)?;
        let old = self.path();
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_err)?;
        self.generation = next;
        self.len = len;
        self.acked = 0;
        self.pending = lines.len() as u64;
        if let Err(e) = fs::remove_file(&old) {
            tracing::warn!("{}: {e} (removed at the next start)", old.display());
        }
        Ok(())
    }
}

fn file_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("outbox-{generation}.jsonl"))
}

fn generation_of(name: &str) -> Option<u64> {
    name.strip_prefix("outbox-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}

#[cfg(test)]
mod tests;
