//! Hosts: registration, heartbeats, drain, and the rows placement and status read.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::sql::{big, now_ms};
use crate::db::{Db, DbError};
use interference_fleet::wire::{Heartbeat, Register};

/// A host as the controller last heard of it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRow {
    pub id: String,
    pub group: String,
    pub agent_version: Option<String>,
    pub cpu_model: Option<String>,
    pub qemu_version: Option<String>,
    pub migration_uri: Option<String>,
    pub total_vcpus: i64,
    pub total_memory_mib: i64,
    pub free_vcpus: i64,
    pub free_memory_mib: i64,
    pub vms: i64,
    pub contention: f64,
    pub draining: bool,
    pub registered_ms: Option<i64>,
    pub heartbeat_ms: Option<i64>,
    pub policy_version: Option<String>,
    pub model_sha: Option<String>,
    pub shadow_model_sha: Option<String>,
    pub backlog_items: i64,
    pub oldest_unsent_ms: Option<i64>,
    pub last_seq: i64,
    pub last_ingest_ms: Option<i64>,
}

const COLUMNS: &str = "id, grp, agent_version, cpu_model, qemu_version, migration_uri, \
    total_vcpus, total_memory_mib, free_vcpus, free_memory_mib, vms, contention, draining, \
    registered_ms, heartbeat_ms, policy_version, model_sha, shadow_model_sha, backlog_items, \
    oldest_unsent_ms, last_seq, last_ingest_ms";

fn host_row(r: &AnyRow) -> Result<HostRow, sqlx::Error> {
    Ok(HostRow {
        id: r.try_get(0)?,
        group: r.try_get(1)?,
        agent_version: r.try_get(2)?,
        cpu_model: r.try_get(3)?,
        qemu_version: r.try_get(4)?,
        migration_uri: r.try_get(5)?,
        total_vcpus: r.try_get(6)?,
        total_memory_mib: r.try_get(7)?,
        free_vcpus: r.try_get(8)?,
        free_memory_mib: r.try_get(9)?,
        vms: r.try_get(10)?,
        contention: r.try_get(11)?,
        draining: r.try_get::<i64, _>(12)? != 0,
        registered_ms: r.try_get(13)?,
        heartbeat_ms: r.try_get(14)?,
        policy_version: r.try_get(15)?,
        model_sha: r.try_get(16)?,
        shadow_model_sha: r.try_get(17)?,
        backlog_items: r.try_get(18)?,
        oldest_unsent_ms: r.try_get(19)?,
        last_seq: r.try_get(20)?,
        last_ingest_ms: r.try_get(21)?,
    })
}

pub async fn register(db: &Db, host: &str, r: &Register) -> Result<HostRow, DbError> {
    let now = now_ms();
    {
        let _gate = db.write_gate().await;
        sqlx::query(
            "UPDATE hosts SET agent_version = $1, cpu_model = $2, qemu_version = $3, \
             migration_uri = $4, total_vcpus = $5, total_memory_mib = $6, free_vcpus = $7, \
             free_memory_mib = $8, vms = $9, registered_ms = $10, heartbeat_ms = $10 \
             WHERE id = $11",
        )
        .bind(&r.agent_version)
        .bind(&r.cpu_model)
        .bind(&r.qemu_version)
        .bind(r.migration_uri.as_deref())
        .bind(i64::from(r.capacity.total_vcpus))
        .bind(big(r.capacity.total_memory_mib))
        .bind(i64::from(r.capacity.free_vcpus))
        .bind(big(r.capacity.free_memory_mib))
        .bind(i64::from(r.capacity.vms))
        .bind(now)
        .bind(host)
        .execute(db.pool())
        .await?;
    }
    get(db, host)
        .await?
        .ok_or_else(|| DbError::Query(sqlx::Error::RowNotFound))
}

pub async fn heartbeat(db: &Db, host: &str, h: &Heartbeat) -> Result<(), DbError> {
    let _gate = db.write_gate().await;
    sqlx::query(
        "UPDATE hosts SET heartbeat_ms = $1, total_vcpus = $2, total_memory_mib = $3, \
         free_vcpus = $4, free_memory_mib = $5, vms = $6, contention = $7, draining = $8, \
         policy_version = $9, model_sha = $10, shadow_model_sha = $11, backlog_items = $12, \
         oldest_unsent_ms = $13 WHERE id = $14",
    )
    .bind(now_ms())
    .bind(i64::from(h.capacity.total_vcpus))
    .bind(big(h.capacity.total_memory_mib))
    .bind(i64::from(h.capacity.free_vcpus))
    .bind(big(h.capacity.free_memory_mib))
    .bind(i64::from(h.capacity.vms))
    .bind(f64::from(h.contention))
    .bind(i64::from(h.draining))
    .bind(h.policy_version.as_deref())
    .bind(h.model_sha.as_deref())
    .bind(h.shadow_model_sha.as_deref())
    .bind(big(h.backlog_items))
    .bind(h.oldest_unsent_ms.map(big))
    .bind(host)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn set_draining(db: &Db, host: &str, draining: bool) -> Result<bool, DbError> {
    let _gate = db.write_gate().await;
    let r = sqlx::query("UPDATE hosts SET draining = $1 WHERE id = $2")
        .bind(i64::from(draining))
        .bind(host)
        .execute(db.pool())
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn set_group(db: &Db, host: &str, group: &str) -> Result<bool, DbError> {
    let _gate = db.write_gate().await;
    let mut tx = db.pool().begin().await?;
    let r = sqlx::query("UPDATE hosts SET grp = $1 WHERE id = $2")
        .bind(group)
        .bind(host)
        .execute(&mut *tx)
        .await?;
    super::tokens::bump_generation(&mut tx).await?;
    tx.commit().await?;
    Ok(r.rows_affected() == 1)
}

pub async fn get(db: &Db, host: &str) -> Result<Option<HostRow>, DbError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM hosts WHERE id = $1"))
        .bind(host)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(host_row).transpose()?)
}

pub async fn group_of(db: &Db, host: &str) -> Result<Option<String>, DbError> {
    let row = sqlx::query("SELECT grp FROM hosts WHERE id = $1")
        .bind(host)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|r| r.get::<String, _>(0)))
}

pub async fn all(db: &Db) -> Result<Vec<HostRow>, DbError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM hosts ORDER BY id"))
        .fetch_all(db.pool())
        .await?;
    Ok(rows.iter().map(host_row).collect::<Result<_, _>>()?)
}

/// Hosts that could take a migrated VM: heartbeat since `fresh_since_ms`, not draining,
/// a migration URI, the CPU model given.
pub async fn candidates(
    db: &Db,
    conn: &mut sqlx::AnyConnection,
    fresh_since_ms: i64,
    cpu_model: &str,
) -> Result<Vec<HostRow>, DbError> {
    let _ = db;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM hosts WHERE heartbeat_ms >= $1 AND draining = 0 \
         AND migration_uri IS NOT NULL AND cpu_model = $2 ORDER BY id"
    ))
    .bind(fresh_since_ms)
    .bind(cpu_model)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(host_row).collect::<Result<_, _>>()?)
}
