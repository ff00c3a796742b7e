//! Model bundles, content-addressed: a manifest lists the bundle's files (the ONNX
//! graph, its sidecar, golden input/output vectors) by sha256, and the sha256 of the
//! manifest's bytes is the bundle's address. A file is fetched by its own sha256, so
//! every byte an agent loads is checked against the address it asked for.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The manifest format this crate reads.
pub const BUNDLE_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    pub format: u32,
    /// The sidecar's model name and version, repeated here for listings.
    pub name: String,
    pub version: String,
    pub files: Vec<BundleFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFile {
    pub role: FileRole,
    /// File name inside the bundle (`contention-lstm.onnx`).
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileRole {
    Onnx,
    Sidecar,
    Golden,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManifestError {
    #[error("manifest format {0} is not supported (this side reads format {BUNDLE_FORMAT})")]
    Format(u32),
    #[error("a bundle has exactly one {role:?} file, this one has {count}")]
    Count { role: FileRole, count: usize },
    #[error("file {name:?}: sha256 {sha256:?} is not 64 lower-case hex digits")]
    Sha { name: String, sha256: String },
    #[error("name and version must not be empty")]
    Empty,
}

impl BundleManifest {
    /// The manifest's canonical bytes (field order fixed by the struct): what a
    /// bundle's address is computed over when one is built.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn file(&self, role: FileRole) -> Option<&BundleFile> {
        self.files.iter().find(|f| f.role == role)
    }

    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.format != BUNDLE_FORMAT {
            return Err(ManifestError::Format(self.format));
        }
        if self.name.trim().is_empty() || self.version.trim().is_empty() {
            return Err(ManifestError::Empty);
        }
        for role in [FileRole::Onnx, FileRole::Sidecar, FileRole::Golden] {
            let count = self.files.iter().filter(|f| f.role == role).count();
            if count != 1 {
                return Err(ManifestError::Count { role, count });
            }
        }
        for f in &self.files {
            if !is_sha256_hex(&f.sha256) {
                return Err(ManifestError::Sha {
                    name: f.name.clone(),
                    sha256: f.sha256.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    out
}

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_bundle_has_one_file_of_each_role() {
        let file = |role, name: &str| BundleFile {
            role,
            name: name.into(),
            sha256: sha256_hex(name.as_bytes()),
            size: 1,
        };
        let mut m = BundleManifest {
            format: 1,
            name: "contention-lstm".into(),
            version: "3".into(),
            files: vec![
                file(FileRole::Onnx, "m.onnx"),
                file(FileRole::Sidecar, "m.json"),
                file(FileRole::Golden, "m.golden.json"),
            ],
        };
        assert_eq!(m.validate(), Ok(()));
        m.files.pop();
        assert_eq!(
            m.validate(),
            Err(ManifestError::Count {
                role: FileRole::Golden,
                count: 0
            })
        );
    }
}
