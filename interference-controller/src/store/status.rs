//! The figures `interference-controller status` and the admin API show.

use serde::Serialize;
use sqlx::Row;

use crate::db::sql::now_ms;
use crate::db::{Db, DbError};

#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    pub host: String,
    pub group: String,
    /// Seconds since the last heartbeat (None: never).
    pub heartbeat_age_s: Option<f64>,
    pub policy_version: Option<String>,
    pub model_sha: Option<String>,
    pub shadow_model_sha: Option<String>,
    pub draining: bool,
    pub free_vcpus: i64,
    pub free_memory_mib: i64,
    pub vms: i64,
    /// Items the agent has not uploaded yet, and the age of the oldest (s).
    pub backlog_items: i64,
    pub ingest_lag_s: Option<f64>,
    pub last_seq: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    pub backend: &'static str,
    pub generation: i64,
    pub hosts: Vec<HostStatus>,
    pub rollout: Option<super::rollouts::RolloutRow>,
    pub fleet_model: Option<String>,
    pub policy_layers: Vec<String>,
    pub reservations: Vec<(String, i64)>,
    pub tables: Vec<(&'static str, i64)>,
}

pub async fn fleet(db: &Db) -> Result<FleetStatus, DbError> {
    let now = now_ms();
    let hosts = super::hosts::all(db)
        .await?
        .into_iter()
        .map(|h| HostStatus {
            heartbeat_age_s: h.heartbeat_ms.map(|t| (now - t) as f64 / 1000.0),
            ingest_lag_s: h
                .oldest_unsent_ms
                .map(|t| ((now - t).max(0)) as f64 / 1000.0),
            host: h.id,
            group: h.group,
            policy_version: h.policy_version,
            model_sha: h.model_sha,
            shadow_model_sha: h.shadow_model_sha,
            draining: h.draining,
            free_vcpus: h.free_vcpus,
            free_memory_mib: h.free_memory_mib,
            vms: h.vms,
            backlog_items: h.backlog_items,
            last_seq: h.last_seq,
        })
        .collect();
    let layers = super::policy::latest_all(db)
        .await?
        .into_iter()
        .map(|l| format!("{}@{}", l.scope, l.version))
        .collect();
    let generation: i64 = sqlx::query("SELECT value FROM fleet_counters WHERE name = 'generation'")
        .fetch_one(db.pool())
        .await?
        .get(0);
    Ok(FleetStatus {
        backend: db.backend().as_str(),
        generation,
        hosts,
        rollout: super::rollouts::active(db).await?,
        fleet_model: super::rollouts::fleet_current(db)
            .await?
            .map(|r| r.model_sha),
        policy_layers: layers,
        reservations: super::placement::counts(db).await?,
        tables: super::ingest::table_counts(db).await?,
    })
}
