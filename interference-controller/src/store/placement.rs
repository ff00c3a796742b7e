//! Reservations. A placement runs in one transaction that first bumps the `placement`
//! counter row: on PostgreSQL that row lock serialises placements across replicas, on
//! SQLite it takes the write lock before anything is read, so two placements never
//! both count the same free room.

use rand::RngCore;
use sqlx::Row;
use thiserror::Error;

use crate::db::sql::{big, now_ms};
use crate::db::{Db, DbError};
use crate::domain::placement::{choose, refusal_message, Candidate, Need};
use interference_fleet::wire::{PlacementRequest, ReleaseOutcome, Released, Reservation};

#[derive(Debug, Error)]
pub enum PlacementError {
    #[error("{active} migrations are in flight, the fleet allows {cap} at once")]
    Busy { active: i64, cap: u32 },
    #[error("{0}")]
    NoTarget(String),
    #[error("no reservation {0} of this host")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for PlacementError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

pub struct PlacementLimits {
    pub max_concurrent: u32,
    pub ttl_ms: i64,
    pub fresh_ms: i64,
}

pub async fn place(
    db: &Db,
    source: &str,
    req: &PlacementRequest,
    limits: &PlacementLimits,
) -> Result<Reservation, PlacementError> {
    let now = now_ms();
    let _gate = db.write_gate().await;
    let mut tx = db.pool().begin().await?;
    sqlx::query("UPDATE fleet_counters SET value = value + 1 WHERE name = 'placement'")
        .execute(&mut *tx)
        .await?;
    let active: i64 =
        sqlx::query("SELECT COUNT(*) FROM reservations WHERE state = 'active' AND expires_ms > $1")
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .get(0);
    if active >= i64::from(limits.max_concurrent) {
        tx.rollback().await?;
        return Err(PlacementError::Busy {
            active,
            cap: limits.max_concurrent,
        });
    }
    let cpu_model: Option<String> = sqlx::query("SELECT cpu_model FROM hosts WHERE id = $1")
        .bind(source)
        .fetch_optional(&mut *tx)
        .await?
        .and_then(|r| r.get::<Option<String>, _>(0));
    let rows = sqlx::query(
        "SELECT h.id, h.cpu_model, h.migration_uri, h.total_vcpus, h.total_memory_mib, \
                h.free_vcpus, h.free_memory_mib, h.contention, h.heartbeat_ms, h.draining, \
                CAST(COALESCE(SUM(r.vcpus), 0) AS BIGINT), CAST(COALESCE(SUM(r.memory_mib), 0) AS BIGINT) \
         FROM hosts h LEFT JOIN reservations r ON r.target_host = h.id AND ( \
              (r.state = 'active' AND r.expires_ms > $1) \
           OR (r.state = 'consumed' AND (h.heartbeat_ms IS NULL OR r.ended_ms >= h.heartbeat_ms))) \
         GROUP BY h.id ORDER BY h.id",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let candidates: Vec<Candidate> = rows
        .iter()
        .map(|r| Candidate {
            host: r.get(0),
            cpu_model: r.get(1),
            migration_uri: r.get(2),
            total_vcpus: r.get(3),
            total_memory_mib: r.get(4),
            free_vcpus: r.get(5),
            free_memory_mib: r.get(6),
            contention: r.get(7),
            heartbeat_ms: r.get(8),
            draining: r.get::<i64, _>(9) != 0,
            reserved_vcpus: r.get(10),
            reserved_memory_mib: r.get(11),
        })
        .collect();
    let need = Need {
        source_host: source.to_owned(),
        cpu_model,
        vcpus: i64::from(req.vcpus),
        memory_mib: big(req.memory_mib),
        exclude: req.exclude.clone(),
    };
    let target = match choose(&candidates, &need, now, limits.fresh_ms) {
        Ok(t) => t.clone(),
        Err(refused) => {
            tx.rollback().await?;
            return Err(PlacementError::NoTarget(refusal_message(&need, &refused)));
        }
    };
    let mut id_bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut id_bytes);
    let id = format!(
        "res-{}",
        id_bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let expires = now + limits.ttl_ms;
    sqlx::query(
        "INSERT INTO reservations (id, source_host, target_host, vm, vm_uuid, vcpus, memory_mib, created_ms, expires_ms, state) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active')",
    )
    .bind(&id)
    .bind(source)
    .bind(&target.host)
    .bind(&req.vm)
    .bind(req.vm_uuid.as_deref())
    .bind(i64::from(req.vcpus))
    .bind(big(req.memory_mib))
    .bind(now)
    .bind(expires)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Reservation {
        id,
        target_host: target.host,
        migration_uri: target.migration_uri.unwrap_or_default(),
        vcpus: req.vcpus,
        memory_mib: req.memory_mib,
        expires_at_ms: u64::try_from(expires).unwrap_or(0),
    })
}

/// Ends a reservation of `source`'s: `migrated` keeps the room taken until the target's
/// next heartbeat (`consumed`), `failed`/`cancelled` give it back. A reservation already
/// ended answers with the state it has.
pub async fn release(
    db: &Db,
    source: &str,
    id: &str,
    outcome: ReleaseOutcome,
) -> Result<Released, PlacementError> {
    let state = match outcome {
        ReleaseOutcome::Migrated => "consumed",
        ReleaseOutcome::Failed | ReleaseOutcome::Cancelled => "released",
    };
    let _gate = db.write_gate().await;
    let changed = sqlx::query(
        "UPDATE reservations SET state = $1, ended_ms = $2 \
         WHERE id = $3 AND source_host = $4 AND state = 'active'",
    )
    .bind(state)
    .bind(now_ms())
    .bind(id)
    .bind(source)
    .execute(db.pool())
    .await?
    .rows_affected();
    if changed == 1 {
        return Ok(Released {
            id: id.into(),
            state: state.into(),
        });
    }
    let row = sqlx::query("SELECT state FROM reservations WHERE id = $1 AND source_host = $2")
        .bind(id)
        .bind(source)
        .fetch_optional(db.pool())
        .await?;
    match row {
        Some(r) => Ok(Released {
            id: id.into(),
            state: r.get(0),
        }),
        None => Err(PlacementError::NotFound(id.into())),
    }
}

/// Active reservations past their expiry give their room back; returns how many.
pub async fn expire(db: &Db) -> Result<u64, DbError> {
    let now = now_ms();
    let _gate = db.write_gate().await;
    let r = sqlx::query(
        "UPDATE reservations SET state = 'expired', ended_ms = $1 WHERE state = 'active' AND expires_ms <= $1",
    )
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(r.rows_affected())
}

/// (state, count) of all reservations.
pub async fn counts(db: &Db) -> Result<Vec<(String, i64)>, DbError> {
    let rows =
        sqlx::query("SELECT state, COUNT(*) FROM reservations GROUP BY state ORDER BY state")
            .fetch_all(db.pool())
            .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
