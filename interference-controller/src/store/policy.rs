//! Versioned policy documents per scope (fleet, group, host). A new version is checked
//! against the other layers before it is stored; storing it bumps the fleet generation
//! so that every replica's long polls wake.

use sqlx::Row;

use crate::db::sql::now_ms;
use crate::db::{Db, DbError};
use crate::domain::policy_layers::{Layer, Scope};
use interference_fleet::wire::sha256_hex;

/// The latest version of every scope's document.
pub async fn latest_all(db: &Db) -> Result<Vec<Layer>, DbError> {
    let rows = sqlx::query(
        "SELECT p.scope, p.version, p.body FROM policy_docs p \
         WHERE p.version = (SELECT MAX(q.version) FROM policy_docs q WHERE q.scope = p.scope) \
         ORDER BY p.scope",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let scope: String = r.get(0);
            Some(Layer {
                scope: Scope::parse(&scope).ok()?,
                version: r.get(1),
                body: r.get(2),
            })
        })
        .collect())
}

pub async fn latest(db: &Db, scope: &Scope) -> Result<Option<Layer>, DbError> {
    let row = sqlx::query(
        "SELECT version, body FROM policy_docs WHERE scope = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(scope.to_string())
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| Layer {
        scope: scope.clone(),
        version: r.get(0),
        body: r.get(1),
    }))
}

/// Stores `body` as the next version of `scope` (already checked); returns the version.
/// Two writers racing for the same version: the loser retries with the next number.
pub async fn put(db: &Db, scope: &Scope, body: &str, author: &str) -> Result<i64, DbError> {
    let _gate = db.write_gate().await;
    for _ in 0..5 {
        let mut tx = db.pool().begin().await?;
        let next: i64 = sqlx::query(
            "SELECT CAST(COALESCE(MAX(version), 0) + 1 AS BIGINT) FROM policy_docs WHERE scope = $1",
        )
        .bind(scope.to_string())
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        let inserted = sqlx::query(
            "INSERT INTO policy_docs (scope, version, body, sha256, created_ms, author) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(scope.to_string())
        .bind(next)
        .bind(body)
        .bind(sha256_hex(body.as_bytes()))
        .bind(now_ms())
        .bind(author)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            super::tokens::bump_generation(&mut tx).await?;
            tx.commit().await?;
            return Ok(next);
        }
        tx.rollback().await?;
    }
    Err(DbError::Query(sqlx::Error::Protocol(
        "policy version kept changing under five attempts".into(),
    )))
}

/// (host, group) of every host with a group other than the default or a host document:
/// the stacks a new layer must be checked in.
pub async fn host_groups(db: &Db) -> Result<Vec<(String, String)>, DbError> {
    let rows = sqlx::query("SELECT id, grp FROM hosts ORDER BY id")
        .fetch_all(db.pool())
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
