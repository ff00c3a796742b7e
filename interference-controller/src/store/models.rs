//! The model registry: files stored under their sha256 (verified on the way in), and
//! bundle manifests stored under the sha256 of their bytes once every file they list
//! is present with the size they say and the sidecar vouches for the ONNX file.

use sqlx::Row;
use thiserror::Error;

use crate::db::sql::{big, now_ms};
use crate::db::{Db, DbError};
use interference_fleet::wire::{is_sha256_hex, sha256_hex, BundleManifest, FileRole};

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("{what}: the address says sha256 {expected} but the bytes hash to {got}")]
    ShaMismatch {
        what: &'static str,
        expected: String,
        got: String,
    },
    #[error("{0:?} is not a sha256 (64 lower-case hex digits)")]
    NotASha(String),
    #[error("not a bundle manifest: {0}")]
    Manifest(String),
    #[error("the bundle lists {name} ({sha256}) which has not been uploaded")]
    MissingFile { name: String, sha256: String },
    #[error("the bundle says {name} has {said} bytes, the stored file has {stored}")]
    Size {
        name: String,
        said: u64,
        stored: i64,
    },
    #[error("the sidecar {name} vouches for ONNX sha256 {said}, the bundle's ONNX file is {onnx}")]
    SidecarMismatch {
        name: String,
        said: String,
        onnx: String,
    },
    #[error("the golden vectors {name} are not JSON with input and output: {message}")]
    Golden { name: String, message: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for RegistryError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

/// Stores a file under `sha256` after checking its bytes; idempotent.
pub async fn put_blob(db: &Db, sha256: &str, bytes: &[u8]) -> Result<bool, RegistryError> {
    if !is_sha256_hex(sha256) {
        return Err(RegistryError::NotASha(sha256.into()));
    }
    let got = sha256_hex(bytes);
    if got != sha256 {
        return Err(RegistryError::ShaMismatch {
            what: "file",
            expected: sha256.into(),
            got,
        });
    }
    let _gate = db.write_gate().await;
    let r = sqlx::query(
        "INSERT INTO blobs (sha256, size, bytes, created_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(sha256)
    .bind(bytes.len() as i64)
    .bind(bytes.to_vec())
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn get_blob(db: &Db, sha256: &str) -> Result<Option<Vec<u8>>, DbError> {
    let row = sqlx::query("SELECT bytes FROM blobs WHERE sha256 = $1")
        .bind(sha256)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|r| r.get::<Vec<u8>, _>(0)))
}

/// Registers a bundle: the manifest's bytes must hash to `sha256`, list one ONNX file,
/// one sidecar and one golden file, all uploaded, and the sidecar's `onnx_sha256` must
/// be the ONNX file's. Idempotent.
pub async fn put_manifest(
    db: &Db,
    sha256: &str,
    manifest_bytes: &[u8],
) -> Result<BundleManifest, RegistryError> {
    if !is_sha256_hex(sha256) {
        return Err(RegistryError::NotASha(sha256.into()));
    }
    let got = sha256_hex(manifest_bytes);
    if got != sha256 {
        return Err(RegistryError::ShaMismatch {
            what: "bundle manifest",
            expected: sha256.into(),
            got,
        });
    }
    let manifest: BundleManifest = serde_json::from_slice(manifest_bytes)
        .map_err(|e| RegistryError::Manifest(e.to_string()))?;
    manifest
        .validate()
        .map_err(|e| RegistryError::Manifest(e.to_string()))?;
    for f in &manifest.files {
        let row = sqlx::query("SELECT size FROM blobs WHERE sha256 = $1")
            .bind(&f.sha256)
            .fetch_optional(db.pool())
            .await?;
        let Some(row) = row else {
            return Err(RegistryError::MissingFile {
                name: f.name.clone(),
                sha256: f.sha256.clone(),
            });
        };
        let stored: i64 = row.get(0);
        if stored != big(f.size) {
            return Err(RegistryError::Size {
                name: f.name.clone(),
                said: f.size,
                stored,
            });
        }
    }
    check_contents(db, &manifest).await?;
    let _gate = db.write_gate().await;
    sqlx::query(
        "INSERT INTO models (sha256, name, version, manifest, created_ms) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT DO NOTHING",
    )
    .bind(sha256)
    .bind(&manifest.name)
    .bind(&manifest.version)
    .bind(String::from_utf8_lossy(manifest_bytes).into_owned())
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(manifest)
}

/// The sidecar vouches for the ONNX file; the golden file has inputs and outputs. (The
/// agent runs the golden vectors itself before it switches; the controller has no
/// model runtime.)
async fn check_contents(db: &Db, m: &BundleManifest) -> Result<(), RegistryError> {
    let (Some(onnx), Some(sidecar), Some(golden)) = (
        m.file(FileRole::Onnx),
        m.file(FileRole::Sidecar),
        m.file(FileRole::Golden),
    ) else {
        return Err(RegistryError::Manifest("missing a file role".into()));
    };
    let bytes = get_blob(db, &sidecar.sha256).await?.unwrap_or_default();
    let said = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.get("onnx_sha256")
                .and_then(|s| s.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    if said != onnx.sha256 {
        return Err(RegistryError::SidecarMismatch {
            name: sidecar.name.clone(),
            said,
            onnx: onnx.sha256.clone(),
        });
    }
    let bytes = get_blob(db, &golden.sha256).await?.unwrap_or_default();
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Golden {
            name: golden.name.clone(),
            message: e.to_string(),
        })?;
    for key in ["input", "output"] {
        if !value.get(key).is_some_and(serde_json::Value::is_array) {
            return Err(RegistryError::Golden {
                name: golden.name.clone(),
                message: format!("no {key:?} array"),
            });
        }
    }
    Ok(())
}

/// A registered bundle's manifest bytes.
pub async fn get_manifest(db: &Db, sha256: &str) -> Result<Option<String>, DbError> {
    let row = sqlx::query("SELECT manifest FROM models WHERE sha256 = $1")
        .bind(sha256)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|r| r.get::<String, _>(0)))
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelRow {
    pub sha256: String,
    pub name: String,
    pub version: String,
    pub created_ms: i64,
}

pub async fn list(db: &Db) -> Result<Vec<ModelRow>, DbError> {
    let rows = sqlx::query(
        "SELECT sha256, name, version, created_ms FROM models ORDER BY created_ms, sha256",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| ModelRow {
            sha256: r.get(0),
            name: r.get(1),
            version: r.get(2),
            created_ms: r.get(3),
        })
        .collect())
}

pub async fn model(db: &Db, sha256: &str) -> Result<Option<ModelRow>, DbError> {
    Ok(list(db).await?.into_iter().find(|m| m.sha256 == sha256))
}
