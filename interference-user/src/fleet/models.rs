//! Model bundles from the controller, on the host: fetched by address, every byte
//! checked against the sha256 it was asked for, kept under `<state_dir>/models/<sha>/`
//! (the manifest's exact bytes as `manifest.json`, each file under its name), and
//! loaded only after its files hash to the manifest, the sidecar vouches for the ONNX
//! file and the model reproduces its golden vectors. A bundle is verified again from
//! disk every time it is loaded (a restart without a controller runs on a saved
//! desired state, so on these files). The bundles in use and the previous ones stay on
//! disk, so a rollback needs no download; the built-in model needs none at all.

use std::fs;
use std::path::{Path, PathBuf};

use interference_fleet::client::{ClientError, FleetClient};
use interference_fleet::wire::{sha256_hex, BundleManifest, FileRole, ManifestError};
use thiserror::Error;

use crate::predict::{check_golden, GoldenError, LstmScorer, PredictError};

/// Bundles kept on disk besides the ones in use (the newest first).
const KEEP_OTHERS: usize = 2;

const MANIFEST: &str = "manifest.json";

#[derive(Debug, Error)]
pub enum BundleError {
    #[error("model bundle {sha}: fetching it")]
    Fetch {
        sha: String,
        #[source]
        source: Box<ClientError>,
    },
    #[error("model bundle {sha}: not on this host ({path}); the controller is needed to fetch it")]
    Missing { sha: String, path: PathBuf },
    #[error("model bundle {sha}: {path}")]
    Io {
        sha: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model bundle {sha}: the manifest is not valid JSON: {reason}")]
    Unreadable { sha: String, reason: String },
    #[error("model bundle {sha}: refused")]
    Manifest {
        sha: String,
        #[source]
        source: ManifestError,
    },
    #[error("model bundle {sha}: {what} hashes to {got}, not {want}")]
    Sha {
        sha: String,
        what: String,
        want: String,
        got: String,
    },
    #[error("model bundle {sha}: file {name}: {got} bytes, the manifest says {want}")]
    Size {
        sha: String,
        name: String,
        want: u64,
        got: u64,
    },
    #[error("model bundle {sha}: file name {name:?} is not a plain file name")]
    Name { sha: String, name: String },
    #[error("model bundle {sha}: the model does not load")]
    Model {
        sha: String,
        #[source]
        source: Box<PredictError>,
    },
    #[error("model bundle {sha}: refused")]
    Golden {
        sha: String,
        #[source]
        source: Box<GoldenError>,
    },
}

/// A bundle verified and loaded, ready to score.
#[derive(Debug)]
pub struct LoadedModel {
    pub sha: String,
    pub name: String,
    pub version: String,
    pub scorer: LstmScorer,
    /// The largest difference from the golden outputs.
    pub golden_worst: f32,
}

#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
}

impl ModelStore {
    /// Bundles under `<state_dir>/models`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("models"),
        }
    }

    fn bundle_dir(&self, sha: &str) -> PathBuf {
        self.dir.join(sha)
    }

    /// Fetches bundle `sha` unless it is on disk already: the manifest, then each
    /// file, every one checked against its address, written to a temporary directory
    /// renamed into place once whole.
    pub async fn fetch(&self, client: &FleetClient, sha: &str) -> Result<(), BundleError> {
        let dest = self.bundle_dir(sha);
        if dest.join(MANIFEST).exists() {
            return Ok(());
        }
        let fetch_err = |source| BundleError::Fetch {
            sha: sha.to_owned(),
            source: Box::new(source),
        };
        let bytes = client.model_manifest_bytes(sha).await.map_err(fetch_err)?;
        let manifest = parse_manifest(sha, &bytes)?;
        let mut files = Vec::new();
        for f in &manifest.files {
            plain_name(sha, &f.name)?;
            files.push((
                f.name.clone(),
                client.blob(&f.sha256).await.map_err(fetch_err)?,
            ));
        }
        let io_err = |path: &Path| {
            let (sha, path) = (sha.to_owned(), path.to_owned());
            move |source| BundleError::Io { sha, path, source }
        };
        let tmp = self.dir.join(format!("{sha}.tmp"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        fs::write(tmp.join(MANIFEST), &bytes).map_err(io_err(&tmp))?;
        for (name, data) in files {
            fs::write(tmp.join(&name), data).map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        Ok(())
    }

    /// Loads bundle `sha` from disk, verifying everything (see the module doc).
    pub fn load(&self, sha: &str) -> Result<LoadedModel, BundleError> {
        let dir = self.bundle_dir(sha);
        let read = |name: &str| -> Result<Vec<u8>, BundleError> {
            let path = dir.join(name);
            fs::read(&path).map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => BundleError::Missing {
                    sha: sha.to_owned(),
                    path: path.clone(),
                },
                _ => BundleError::Io {
                    sha: sha.to_owned(),
                    path: path.clone(),
                    source,
                },
            })
        };
        let bytes = read(MANIFEST)?;
        let got = sha256_hex(&bytes);
        if got != sha {
            return Err(BundleError::Sha {
                sha: sha.to_owned(),
                what: "the manifest".into(),
                want: sha.to_owned(),
                got,
            });
        }
        let manifest = parse_manifest(sha, &bytes)?;
        let file = |role: FileRole| -> Result<(String, Vec<u8>), BundleError> {
            // validate() made sure there is exactly one of each role.
            let Some(f) = manifest.file(role) else {
                return Err(BundleError::Manifest {
                    sha: sha.to_owned(),
                    source: ManifestError::Count { role, count: 0 },
                });
            };
            plain_name(sha, &f.name)?;
            let data = read(&f.name)?;
            if data.len() as u64 != f.size {
                return Err(BundleError::Size {
                    sha: sha.to_owned(),
                    name: f.name.clone(),
                    want: f.size,
                    got: data.len() as u64,
                });
            }
            let got = sha256_hex(&data);
            if got != f.sha256 {
                return Err(BundleError::Sha {
                    sha: sha.to_owned(),
                    what: format!("file {}", f.name),
                    want: f.sha256.clone(),
                    got,
                });
            }
            Ok((f.name.clone(), data))
        };
        let (onnx_name, onnx) = file(FileRole::Onnx)?;
        let (_, sidecar) = file(FileRole::Sidecar)?;
        let (golden_name, golden) = file(FileRole::Golden)?;
        let origin = format!("{}/{onnx_name}", dir.display());
        let scorer = LstmScorer::from_bytes(&onnx, &sidecar, &origin).map_err(|source| {
            BundleError::Model {
                sha: sha.to_owned(),
                source: Box::new(source),
            }
        })?;
        let golden_worst =
            check_golden(&scorer, &golden, &golden_name).map_err(|source| BundleError::Golden {
                sha: sha.to_owned(),
                source: Box::new(source),
            })?;
        Ok(LoadedModel {
            sha: sha.to_owned(),
            name: manifest.name,
            version: manifest.version,
            scorer,
            golden_worst,
        })
    }

    /// Removes bundles other than `keep` and the two newest others.
    pub fn prune(&self, keep: &[&str]) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut others: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                !keep.contains(&name.as_ref())
            })
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        others.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        for (_, path) in others.into_iter().skip(KEEP_OTHERS) {
            if let Err(e) = fs::remove_dir_all(&path) {
                tracing::warn!("removing the old model bundle {}: {e}", path.display());
            }
        }
    }
}

fn parse_manifest(sha: &str, bytes: &[u8]) -> Result<BundleManifest, BundleError> {
    let manifest: BundleManifest =
        serde_json::from_slice(bytes).map_err(|e| BundleError::Unreadable {
            sha: sha.to_owned(),
            reason: e.to_string(),
        })?;
    manifest
        .validate()
        .map_err(|source| BundleError::Manifest {
            sha: sha.to_owned(),
            source,
        })?;
    Ok(manifest)
}

/// A bundle's file names become paths on the host: one component, no tricks.
fn plain_name(sha: &str, name: &str) -> Result<(), BundleError> {
    let ok = !name.is_empty()
        && name != MANIFEST
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(BundleError::Name {
            sha: sha.to_owned(),
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
