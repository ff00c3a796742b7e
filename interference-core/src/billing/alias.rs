//! Opaque, stable names for neighbours of other customers.
//!
//! A customer sees its own VMs by name and every other customer's VM as `#` and six
//! hex digits: SHA-256 of a per-ledger secret, the viewing customer and the VM name.
//! The same neighbour keeps its alias for a customer across periods and restarts; two
//! customers see different aliases for it, so they cannot compare notes; without the
//! secret (0600 in the ledger directory) an alias cannot be matched to a VM name by
//! trying names.

use std::fs::{self, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// File name of the secret inside the ledger directory.
pub const KEY_FILE: &str = "alias.key";

#[derive(Clone)]
pub struct Aliases {
    key: [u8; 32],
}

impl std::fmt::Debug for Aliases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Aliases { key: <secret> }")
    }
}

impl Aliases {
    pub fn from_key(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// A key for this process only (a dry run writes no ledger, so its aliases only
    /// appear in its own logs).
    pub fn ephemeral() -> Self {
        let mut key = [0u8; 32];
        if let Err(e) = fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key)) {
            tracing::debug!("no /dev/urandom ({e}); aliases of this dry run use a fixed key");
        }
        Self { key }
    }

    /// The secret of the ledger in `dir`, created (from /dev/urandom) when missing.
    pub fn load_or_create(dir: &Path) -> io::Result<Self> {
        let path = dir.join(KEY_FILE);
        match fs::read(&path) {
            Ok(bytes) => Self::parse(&bytes).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a 32-byte alias key", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                f.write_all(&key)?;
                f.sync_all()?;
                Ok(Self { key })
            }
            Err(e) => Err(e),
        }
    }

    fn parse(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            key: bytes.try_into().ok()?,
        })
    }

    /// `#` and six hex digits, stable for (`viewer`, `vm`).
    pub fn alias(&self, viewer: &str, vm: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(viewer.as_bytes());
        h.update([0]);
        h.update(vm.as_bytes());
        let d = h.finalize();
        format!("#{:02x}{:02x}{:02x}", d[0], d[1], d[2])
    }

    /// How `viewer` may see `vm` (owned by `owner`): by name if it is theirs.
    pub fn shown_to(&self, viewer: &str, vm: &str, owner: &str) -> String {
        if viewer == owner {
            vm.to_owned()
        } else {
            self.alias(viewer, vm)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_stable_per_viewer_and_hide_the_name() {
        let a = Aliases::from_key([7; 32]);
        let x = a.alias("acme", "batch-7");
        assert_eq!(x, a.alias("acme", "batch-7"));
        assert_ne!(x, a.alias("globex", "batch-7"));
        assert_ne!(x, Aliases::from_key([8; 32]).alias("acme", "batch-7"));
        assert!(x.starts_with('#') && x.len() == 7 && !x.contains("batch"));
        assert_eq!(a.shown_to("acme", "web-1", "acme"), "web-1");
        assert_eq!(a.shown_to("acme", "batch-7", "globex"), x);
    }

    #[test]
    fn the_key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = Aliases::load_or_create(dir.path()).unwrap();
        let b = Aliases::load_or_create(dir.path()).unwrap();
        assert_eq!(a.alias("c", "v"), b.alias("c", "v"));
        fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        let e = Aliases::load_or_create(dir.path()).unwrap_err();
        assert!(e.to_string().contains("alias.key"), "{e}");
    }
}
