//! The upload cursor: how far into each ledger file and into the outbox the controller
//! has acknowledged, and the sequence number of the last acknowledged batch. The ledger itself is the
//! buffer (no second copy of a line is kept); the cursor only moves forward, after an
//! acknowledgement, and is replaced crash-safe (temporary file, fsync, rename, fsync of
//! the directory). Lost or unreadable, it starts over from the beginning: the
//! controller ignores lines it already holds (idempotent record ids), so the cost is
//! bandwidth, never a doubled line.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::outbox::OutboxMark;

pub const CURSOR_FILE: &str = "upload-cursor.json";

#[derive(Debug, Error)]
pub enum CursorError {
    #[error("reading the upload cursor {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the upload cursor {path} is not valid JSON")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing the upload cursor {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadCursor {
    /// The last batch the controller acknowledged (0: none yet).
    pub seq: u64,
    /// Ledger file name -> bytes acknowledged from its start (whole lines).
    pub files: BTreeMap<String, u64>,
    /// How far into the outbox (the other items) the controller has acknowledged.
    #[serde(default)]
    pub outbox: OutboxMark,
}

impl UploadCursor {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(CURSOR_FILE)
    }

    /// The saved cursor; a fresh one when there is none.
    pub fn load(state_dir: &Path) -> Result<Self, CursorError> {
        let path = Self::path(state_dir);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(CursorError::Read { path, source }),
        };
        serde_json::from_str(&text).map_err(|source| CursorError::Parse { path, source })
    }

    /// Replaces the saved cursor, crash-safe.
    pub fn save(&self, state_dir: &Path) -> Result<(), CursorError> {
        let path = Self::path(state_dir);
        let write = || -> std::io::Result<()> {
            fs::create_dir_all(state_dir)?;
            let tmp = state_dir.join(format!("{CURSOR_FILE}.tmp"));
            let mut f = File::create(&tmp)?;
            f.write_all(serde_json::to_string(self)?.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(state_dir)?.sync_all()
        };
        write().map_err(|source| CursorError::Write {
            path: path.clone(),
            source,
        })
    }

    pub fn offset(&self, file: &str) -> u64 {
        self.files.get(file).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_starts_fresh_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            UploadCursor::load(dir.path()).unwrap(),
            UploadCursor::default()
        );
        let mut c = UploadCursor {
            seq: 7,
            ..UploadCursor::default()
        };
        c.files.insert("2026-12.jsonl".into(), 4096);
        c.save(dir.path()).unwrap();
        let back = UploadCursor::load(dir.path()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.offset("2026-12.jsonl"), 4096);
        assert_eq!(back.offset("2026-11.jsonl"), 0);
        std::fs::write(UploadCursor::path(dir.path()), "{not json").unwrap();
        let e = UploadCursor::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(CURSOR_FILE), "{e}");
    }
}
