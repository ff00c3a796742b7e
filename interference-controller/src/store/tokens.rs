//! Bearer tokens: 32 random bytes, shown once, stored as their sha256. A host token
//! names its host (created with it if new); an admin token names its holder.

use rand::RngCore;
use sqlx::Row;

use crate::db::sql::now_ms;
use crate::db::{Db, DbError};
use interference_fleet::wire::sha256_hex;

const HOST_PREFIX: &str = "ifh_";
const ADMIN_PREFIX: &str = "ifa_";

fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let mut out = String::from(prefix);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A new token for `host` (the host row is created in `group` if it does not exist).
pub async fn create_host_token(db: &Db, host: &str, group: &str) -> Result<String, DbError> {
    let token = new_token(HOST_PREFIX);
    let now = now_ms();
    let _gate = db.write_gate().await;
    let mut tx = db.pool().begin().await?;
    sqlx::query("INSERT INTO hosts (id, grp) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
        .bind(host)
        .bind(group)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO host_tokens (token_sha256, host_id, created_ms) VALUES ($1, $2, $3)")
        .bind(sha256_hex(token.as_bytes()))
        .bind(host)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    bump_generation(&mut tx).await?;
    tx.commit().await?;
    Ok(token)
}

pub async fn create_admin_token(db: &Db, name: &str) -> Result<String, DbError> {
    let token = new_token(ADMIN_PREFIX);
    let _gate = db.write_gate().await;
    sqlx::query("INSERT INTO admin_tokens (token_sha256, name, created_ms) VALUES ($1, $2, $3)")
        .bind(sha256_hex(token.as_bytes()))
        .bind(name)
        .bind(now_ms())
        .execute(db.pool())
        .await?;
    Ok(token)
}

/// Revokes every token of a host; returns how many.
pub async fn revoke_host_tokens(db: &Db, host: &str) -> Result<u64, DbError> {
    let _gate = db.write_gate().await;
    let r = sqlx::query(
        "UPDATE host_tokens SET revoked_ms = $1 WHERE host_id = $2 AND revoked_ms IS NULL",
    )
    .bind(now_ms())
    .bind(host)
    .execute(db.pool())
    .await?;
    Ok(r.rows_affected())
}

/// The host a token belongs to, if it is valid.
pub async fn host_of(db: &Db, token: &str) -> Result<Option<String>, DbError> {
    let row = sqlx::query(
        "SELECT host_id FROM host_tokens WHERE token_sha256 = $1 AND revoked_ms IS NULL",
    )
    .bind(sha256_hex(token.as_bytes()))
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| r.get::<String, _>(0)))
}

pub async fn admin_of(db: &Db, token: &str) -> Result<Option<String>, DbError> {
    let row =
        sqlx::query("SELECT name FROM admin_tokens WHERE token_sha256 = $1 AND revoked_ms IS NULL")
            .bind(sha256_hex(token.as_bytes()))
            .fetch_optional(db.pool())
            .await?;
    Ok(row.map(|r| r.get::<String, _>(0)))
}

/// Something every host's desired state may depend on changed: replicas reload.
pub async fn bump_generation(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE fleet_counters SET value = value + 1 WHERE name = 'generation'")
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn generation(db: &Db) -> Result<i64, DbError> {
    let row = sqlx::query("SELECT value FROM fleet_counters WHERE name = 'generation'")
        .fetch_one(db.pool())
        .await?;
    Ok(row.get::<i64, _>(0))
}
