//! The ledger lines the controller has not acknowledged yet: whole lines (ending in a
//! newline) after the cursor, oldest period file first. A torn last line (a crash in
//! the middle of an append) is not a line yet; the ledger cuts it when it reopens and
//! posts its record again, whole.
//!
//! [`Tail`] reads each batch from the cursor and stops at the batch's size, and counts
//! the backlog (for the heartbeat and the metrics) incrementally: per file it remembers
//! how far it has counted and how many lines lie between the cursor and there, so that
//! draining a backlog of `B` lines in batches reads each byte about twice (once counted,
//! once sent) instead of rereading the whole backlog for every batch (`B² / batch`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::cursor::UploadCursor;

#[derive(Debug, Error)]
pub enum TailError {
    #[error("listing the ledger directory {path}")]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the ledger file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One line to send, and where the cursor goes once it is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLine {
    pub file: String,
    /// Offset just past this line's newline.
    pub end: u64,
    pub text: String,
}

/// What is waiting: up to `max` lines in order, and how many whole lines wait in all.
#[derive(Debug, Default)]
pub struct Pending {
    pub lines: Vec<PendingLine>,
    pub total: u64,
}

/// The ledger's period files (`YYYY-MM.jsonl`), oldest first.
pub fn ledger_files(dir: &Path) -> Result<Vec<String>, TailError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // No ledger yet: nothing billed, nothing to send.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(TailError::List {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_period_file(n))
        .collect();
    names.sort();
    Ok(names)
}

fn is_period_file(name: &str) -> bool {
    let b = name.as_bytes();
    name.len() == "YYYY-MM.jsonl".len()
        && name.ends_with(".jsonl")
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
}

/// Lines counted in one file: between the cursor's offset `from` and `to` (just past
/// the last whole line counted) lie `lines` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counted {
    from: u64,
    to: u64,
    lines: u64,
}

/// Reads batches after the cursor and keeps the backlog's count (module comment).
#[derive(Debug, Default)]
pub struct Tail {
    counted: BTreeMap<String, Counted>,
    /// Bytes read to count the backlog, in all (what the incremental count saves).
    counted_bytes: u64,
}

impl Tail {
    /// The lines after `cursor`, at most `max` of them returned, and the backlog.
    pub fn pending(
        &mut self,
        dir: &Path,
        cursor: &UploadCursor,
        max: usize,
    ) -> Result<Pending, TailError> {
        let mut out = Pending::default();
        let files = ledger_files(dir)?;
        self.counted.retain(|name, _| files.contains(name));
        for name in files {
            let path = dir.join(&name);
            let from = cursor.offset(&name);
            let read_err = |source| TailError::Read {
                path: path.clone(),
                source,
            };
            let len = std::fs::metadata(&path).map_err(read_err)?.len();
            // What is known still holds when the cursor is where the count starts and
            // the file has not been cut below it; anything else is counted again.
            let known = self
                .counted
                .get(&name)
                .copied()
                .filter(|c| c.from == from && c.to <= len)
                .unwrap_or(Counted {
                    from,
                    to: from,
                    lines: 0,
                });
            let mut counted = known;
            if len > known.to {
                let (lines, to) =
                    scan_lines(&path, known.to, len, usize::MAX, |_, _| {}).map_err(read_err)?;
                self.counted_bytes += len - known.to;
                counted.lines += lines;
                counted.to = to;
            }
            self.counted.insert(name.clone(), counted);
            out.total += counted.lines;
            let room = max.saturating_sub(out.lines.len());
            if room > 0 && counted.lines > 0 {
                let mut batch = Vec::with_capacity(room.min(counted.lines as usize));
                scan_lines(&path, from, counted.to, room, |end, text| {
                    batch.push(PendingLine {
                        file: name.clone(),
                        end,
                        text: text.to_string(),
                    })
                })
                .map_err(read_err)?;
                out.lines.extend(batch);
            }
        }
        Ok(out)
    }

    /// Moves the cursor past `sent` (acknowledged), and the counts with it.
    pub fn advance(&mut self, cursor: &mut UploadCursor, sent: &[PendingLine]) {
        let mut per_file: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for l in sent {
            let e = per_file.entry(l.file.as_str()).or_insert((0, 0));
            e.0 += 1;
            e.1 = e.1.max(l.end);
        }
        for (file, (lines, end)) in per_file {
            let before = cursor.offset(file);
            let e = cursor.files.entry(file.to_string()).or_insert(0);
            *e = (*e).max(end);
            let after = *e;
            if let Some(c) = self.counted.get_mut(file) {
                if c.from == before && after <= c.to && lines <= c.lines {
                    c.from = after;
                    c.lines -= lines;
                } else {
                    // Not the lines this count was made of: count again next time.
                    self.counted.remove(file);
                }
            }
        }
    }
}

/// Calls `each(end, text)` for the first `max` whole, non-blank lines in `[from, to)`;
/// returns how many and the offset just past the last whole line read.
fn scan_lines(
    path: &Path,
    from: u64,
    to: u64,
    max: usize,
    mut each: impl FnMut(u64, &str),
) -> std::io::Result<(u64, u64)> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut r = BufReader::with_capacity(1 << 16, f.take(to - from));
    let (mut at, mut n) = (from, 0u64);
    let mut buf = Vec::new();
    while (n as usize) < max {
        buf.clear();
        let read = r.read_until(b'\n', &mut buf)?;
        if read == 0 || buf.last() != Some(&b'\n') {
            break; // the end, or a torn tail
        }
        at += read as u64;
        let text = String::from_utf8_lossy(&buf[..buf.len() - 1]);
        if text.trim().is_empty() {
            continue;
        }
        n += 1;
        each(at, &text);
    }
    Ok((n, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backlog as the first version computed it, from scratch: the oracle.
    fn naive(dir: &Path, cursor: &UploadCursor) -> Vec<PendingLine> {
        let mut out = Vec::new();
        for name in ledger_files(dir).unwrap() {
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            let mut at = cursor.offset(&name);
            if at >= bytes.len() as u64 {
                continue;
            }
            for chunk in bytes[at as usize..].split_inclusive(|&b| b == b'\n') {
                if chunk.last() != Some(&b'\n') {
                    break;
                }
                at += chunk.len() as u64;
                let text = String::from_utf8_lossy(&chunk[..chunk.len() - 1]).into_owned();
                if !text.trim().is_empty() {
                    out.push(PendingLine {
                        file: name.clone(),
                        end: at,
                        text,
                    });
                }
            }
        }
        out
    }

    #[test]
    fn whole_lines_after_the_cursor_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("2026-11.jsonl"), "{\"a\":1}\n{\"a\":2}\n").unwrap();
        std::fs::write(
            dir.path().join("2026-12.jsonl"),
            "{\"b\":1}\n{\"b\":2,\"torn",
        )
        .unwrap();
        std::fs::write(dir.path().join(".lock"), "").unwrap();
        std::fs::write(dir.path().join("aliases.json"), "{}\n").unwrap();
        let (mut t, mut c) = (Tail::default(), UploadCursor::default());
        let p = t.pending(dir.path(), &c, 2).unwrap();
        assert_eq!(p.total, 3);
        let texts: Vec<&str> = p.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["{\"a\":1}", "{\"a\":2}"]);
        t.advance(&mut c, &p.lines);
        assert_eq!(c.offset("2026-11.jsonl"), 16);
        let p = t.pending(dir.path(), &c, 10).unwrap();
        assert_eq!(p.total, 1);
        assert_eq!(p.lines[0].text, "{\"b\":1}");
        assert_eq!(p.lines[0].end, 8);
        t.advance(&mut c, &p.lines);
        let p = t.pending(dir.path(), &c, 10).unwrap();
        assert!(p.lines.is_empty() && p.total == 0);
        // The torn line completed (the ledger cut it and posted it again): it is sent.
        std::fs::write(dir.path().join("2026-12.jsonl"), "{\"b\":1}\n{\"b\":2}\n").unwrap();
        let p = t.pending(dir.path(), &c, 10).unwrap();
        assert_eq!(p.lines[0].text, "{\"b\":2}");
        assert_eq!(p.total, 1);
    }

    #[test]
    fn no_ledger_directory_is_nothing_to_send() {
        let dir = tempfile::tempdir().unwrap();
        let p = Tail::default()
            .pending(&dir.path().join("none"), &UploadCursor::default(), 5)
            .unwrap();
        assert_eq!(p.total, 0);
    }

    #[test]
    fn draining_a_backlog_counts_each_byte_once() {
        let dir = tempfile::tempdir().unwrap();
        let line = format!("{{\"x_RecordId\":\"{}\"}}\n", "r".repeat(100));
        let backlog = line.repeat(10_000);
        std::fs::write(dir.path().join("2026-12.jsonl"), &backlog).unwrap();
        let (mut t, mut c) = (Tail::default(), UploadCursor::default());
        let mut sent = 0;
        loop {
            let p = t.pending(dir.path(), &c, 500).unwrap();
            assert_eq!(p.total, 10_000 - sent as u64);
            if p.lines.is_empty() {
                break;
            }
            sent += p.lines.len();
            t.advance(&mut c, &p.lines);
        }
        assert_eq!(sent, 10_000);
        assert_eq!(
            t.counted_bytes,
            backlog.len() as u64,
            "the backlog was counted once, not once per batch"
        );
    }

    /// Appends (whole, torn, completed, blank), acknowledgements of some batches, a new
    /// period file and a file cut below the count: every batch and every total equals
    /// the from-scratch oracle's.
    #[test]
    fn batches_and_totals_match_a_count_from_scratch() {
        let dir = tempfile::tempdir().unwrap();
        let (mut t, mut c) = (Tail::default(), UploadCursor::default());
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        let files = ["2026-11.jsonl", "2026-12.jsonl"];
        let mut contents = [String::new(), String::new()];
        for step in 0..400 {
            let f = usize::from(step > 150 && next() % 3 != 0);
            let path = dir.path().join(files[f]);
            match next() % 10 {
                0 => contents[f].push_str("{\"torn\":"),
                1 => contents[f].push('\n'),
                2 if step % 97 == 0 => {
                    // The file shrinks to its last newline, and then by one whole line:
                    // below what was counted, maybe below the cursor (a ledger does not
                    // do that, but the count must not trust what it no longer sees).
                    let keep = contents[f].rfind('\n').unwrap_or(0);
                    let keep = contents[f][..keep].rfind('\n').map_or(0, |i| i + 1);
                    contents[f].truncate(keep);
                }
                _ => contents[f].push_str(&format!("{{\"n\":{step}}}\n")),
            }
            std::fs::write(&path, &contents[f]).unwrap();
            let max = 1 + (next() % 7) as usize;
            let p = t.pending(dir.path(), &c, max).unwrap();
            let all = naive(dir.path(), &c);
            assert_eq!(p.total, all.len() as u64, "step {step}");
            assert_eq!(p.lines, all[..all.len().min(max)], "step {step}");
            if next() % 2 == 0 {
                t.advance(&mut c, &p.lines);
            }
        }
    }
}
