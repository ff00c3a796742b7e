//! The ledger lines the controller has not acknowledged yet: whole lines (ending in a
//! newline) after the cursor, oldest period file first. A torn last line (a crash in
//! the middle of an append) is not a line yet; the ledger cuts it when it reopens and
//! posts its record again, whole.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
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

/// The lines after `cursor`, at most `max` of them returned.
pub fn pending(dir: &Path, cursor: &UploadCursor, max: usize) -> Result<Pending, TailError> {
    let mut out = Pending::default();
    for name in ledger_files(dir)? {
        let path = dir.join(&name);
        let from = cursor.offset(&name);
        let read_err = |source| TailError::Read {
            path: path.clone(),
            source,
        };
        let mut f = File::open(&path).map_err(read_err)?;
        let len = f.metadata().map_err(read_err)?.len();
        if len <= from {
            continue;
        }
        f.seek(SeekFrom::Start(from)).map_err(read_err)?;
        let mut bytes = Vec::with_capacity((len - from) as usize);
        f.read_to_end(&mut bytes).map_err(read_err)?;
        let mut at = from;
        for chunk in bytes.split_inclusive(|&b| b == b'\n') {
            if chunk.last() != Some(&b'\n') {
                break; // torn tail
            }
            at += chunk.len() as u64;
            let text = String::from_utf8_lossy(&chunk[..chunk.len() - 1]).into_owned();
            if text.trim().is_empty() {
                continue;
            }
            out.total += 1;
            if out.lines.len() < max {
                out.lines.push(PendingLine {
                    file: name.clone(),
                    end: at,
                    text,
                });
            }
        }
    }
    Ok(out)
}

/// Moves the cursor past `sent` (acknowledged).
pub fn advance(cursor: &mut UploadCursor, sent: &[PendingLine]) {
    for l in sent {
        let e = cursor.files.entry(l.file.clone()).or_insert(0);
        *e = (*e).max(l.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut c = UploadCursor::default();
        let p = pending(dir.path(), &c, 2).unwrap();
        assert_eq!(p.total, 3);
        let texts: Vec<&str> = p.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["{\"a\":1}", "{\"a\":2}"]);
        advance(&mut c, &p.lines);
        assert_eq!(c.offset("2026-11.jsonl"), 16);
        let p = pending(dir.path(), &c, 10).unwrap();
        assert_eq!(p.total, 1);
        assert_eq!(p.lines[0].text, "{\"b\":1}");
        assert_eq!(p.lines[0].end, 8);
        advance(&mut c, &p.lines);
        assert!(pending(dir.path(), &c, 10).unwrap().lines.is_empty());
        // The torn line completed (the ledger cut it and posted it again): it is sent.
        std::fs::write(dir.path().join("2026-12.jsonl"), "{\"b\":1}\n{\"b\":2}\n").unwrap();
        let p = pending(dir.path(), &c, 10).unwrap();
        assert_eq!(p.lines[0].text, "{\"b\":2}");
    }

    #[test]
    fn no_ledger_directory_is_nothing_to_send() {
        let dir = tempfile::tempdir().unwrap();
        let p = pending(&dir.path().join("none"), &UploadCursor::default(), 5).unwrap();
        assert_eq!(p.total, 0);
    }
}
