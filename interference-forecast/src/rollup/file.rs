//! The rollup file: every VM's ring in one compact binary file ([`super::codec`] has
//! the format), written crash-safe.
//!
//! The file is replaced as a whole on each save: written to `<name>.tmp`, fsynced,
//! renamed over the old one, and the directory fsynced, so a crash leaves the old file
//! or the new one, never a mix. On reading, what the checksums reject is reported with
//! the path (and the VM): a bad record costs only its VM, a file that cannot be used at
//! all is kept beside as `<name>.corrupt` for a post-mortem, never silently reused.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::codec::{decode, encode, Loaded, RollupProblem, StoreGeometry};
use super::ring::VmRollup;

/// The file's name in the store's directory.
pub const FILE_NAME: &str = "demand-rollups.bin";

/// The rollups could not be written (the previous file, if any, is intact).
#[derive(Debug, Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct SaveError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Writes the rollups to `path` crash-safe (see the module comment).
pub fn write<'a>(
    path: &Path,
    geometry: &StoreGeometry,
    last_closed: Option<i64>,
    rollups: impl Iterator<Item = (&'a str, &'a VmRollup)>,
) -> Result<(), SaveError> {
    let bytes = encode(geometry, last_closed, rollups);
    write_atomically(path, &bytes)
}

/// `path.tmp`, fsync, rename over `path`, fsync the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SaveError> {
    let err = |action: &'static str, p: &Path| {
        let path = p.to_path_buf();
        move |source| SaveError {
            action,
            path,
            source,
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(err("create the directory", dir))?;
    let tmp = sibling(path, "tmp");
    {
        let mut f = File::create(&tmp).map_err(err("create", &tmp))?;
        f.write_all(bytes).map_err(err("write", &tmp))?;
        f.sync_all().map_err(err("fsync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(err("rename into place", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("fsync the directory", dir))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

/// Reads `path`; never fails (see [`super::RollupStore::open`]).
pub fn read(path: &Path, geometry: &StoreGeometry) -> Loaded {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::default(),
        Err(e) => {
            return Loaded {
                problems: vec![RollupProblem {
                    path: path.to_path_buf(),
                    vm: None,
                    what: format!("cannot read ({e}): every VM starts afresh"),
                }],
                ..Loaded::default()
            };
        }
    };
    let mut loaded = decode(&bytes, path, geometry);
    if loaded.rollups.is_empty() && !loaded.problems.is_empty() {
        let aside = sibling(path, "corrupt");
        let kept = match fs::rename(path, &aside) {
            Ok(()) => format!("kept as {}", aside.display()),
            Err(e) => format!("could not be moved to {}: {e}", aside.display()),
        };
        if let Some(p) = loaded.problems.first_mut() {
            p.what = format!("{}; the file {kept}", p.what);
        }
    }
    loaded
}
