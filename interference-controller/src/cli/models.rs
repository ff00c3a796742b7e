//! `interference-controller models upload|promote|rollback|list`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;

use interference_controller::db::{Db, DbOptions};
use interference_controller::ops;
use interference_controller::store::{models, rollouts};
use interference_fleet::wire::{sha256_hex, BundleFile, BundleManifest, FileRole, BUNDLE_FORMAT};

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Upload a bundle: the ONNX file, its sidecar (default: same path, .json) and its
    /// golden vectors (default: .golden.json). Prints the bundle's sha256.
    Upload {
        onnx: PathBuf,
        #[arg(long)]
        sidecar: Option<PathBuf>,
        #[arg(long)]
        golden: Option<PathBuf>,
    },
    /// Start a rollout of a bundle (shadow), or move it one stage on (canary, fleet).
    Promote { sha256: String },
    /// Roll back the running rollout (or, with none, the current fleet model).
    Rollback,
    /// Bundles and rollouts.
    List,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub async fn run(database: &str, command: &ModelsCommand) -> Result<()> {
    let db = Db::connect_and_migrate(database, &DbOptions::default()).await?;
    match command {
        ModelsCommand::Upload {
            onnx,
            sidecar,
            golden,
        } => {
            let sidecar = sidecar
                .clone()
                .unwrap_or_else(|| onnx.with_extension("json"));
            let golden = golden
                .clone()
                .unwrap_or_else(|| onnx.with_extension("golden.json"));
            let sidecar_bytes = read(&sidecar)?;
            let meta: serde_json::Value = serde_json::from_slice(&sidecar_bytes)
                .with_context(|| format!("{} is not JSON", sidecar.display()))?;
            let text = |k: &str| {
                meta.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned()
            };
            let mut files = Vec::new();
            for (role, path, bytes) in [
                (FileRole::Onnx, onnx.clone(), read(onnx)?),
                (FileRole::Sidecar, sidecar.clone(), sidecar_bytes),
                (FileRole::Golden, golden.clone(), read(&golden)?),
            ] {
                let sha = sha256_hex(&bytes);
                models::put_blob(&db, &sha, &bytes).await?;
                files.push(BundleFile {
                    role,
                    name: path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    sha256: sha,
                    size: bytes.len() as u64,
                });
            }
            let manifest = BundleManifest {
                format: BUNDLE_FORMAT,
                name: text("name"),
                version: text("version"),
                files,
            };
            let bytes = manifest.to_bytes();
            let sha = sha256_hex(&bytes);
            models::put_manifest(&db, &sha, &bytes).await?;
            println!("{sha}");
        }
        ModelsCommand::Promote { sha256 } => {
            let r = ops::promote(&db, sha256, "cli").await?;
            println!(
                "rollout {} of {} is in {}",
                r.id,
                r.model_sha,
                r.stage.as_str()
            );
        }
        ModelsCommand::Rollback => {
            let r = ops::rollback(&db, "cli").await?;
            println!("rollout {} of {} rolled back", r.id, r.model_sha);
        }
        ModelsCommand::List => {
            for m in models::list(&db).await? {
                println!("{}  {} {}", m.sha256, m.name, m.version);
            }
            for r in rollouts::list(&db).await? {
                println!(
                    "rollout {} {} {}{}",
                    r.id,
                    &r.model_sha[..12.min(r.model_sha.len())],
                    r.stage.as_str(),
                    r.reason.map(|w| format!(" ({w})")).unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
