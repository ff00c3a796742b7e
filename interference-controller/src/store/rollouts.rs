//! Rollout rows and their transitions, and the outcome figures the rules compare.
//! Every transition bumps the fleet generation: the agents' desired state changes.

use rand::RngCore;
use sqlx::any::AnyRow;
use sqlx::Row;
use thiserror::Error;

use crate::db::sql::now_ms;
use crate::db::{Db, DbError};
use crate::domain::rollout::{Outcomes, Stage};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RolloutRow {
    pub id: String,
    pub model_sha: String,
    pub baseline_sha: Option<String>,
    #[serde(serialize_with = "stage_str")]
    pub stage: Stage,
    pub share_pct: i64,
    pub started_ms: i64,
    pub stage_since_ms: i64,
    pub ended_ms: Option<i64>,
    pub reason: Option<String>,
}

fn stage_str<S: serde::Serializer>(s: &Stage, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

#[derive(Debug, Error)]
pub enum RolloutError {
    #[error("no bundle {0} in the registry (upload it first)")]
    UnknownModel(String),
    #[error("rollout {id} of {model_sha} is in {stage}: promote or roll it back first")]
    Busy {
        id: String,
        model_sha: String,
        stage: &'static str,
    },
    #[error("{0} is already the fleet's model")]
    AlreadyFleet(String),
    #[error("nothing to roll back: no rollout is running and no earlier fleet model exists")]
    NothingToRollBack,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for RolloutError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

const COLUMNS: &str =
    "id, model_sha, baseline_sha, stage, share_pct, started_ms, stage_since_ms, ended_ms, reason";

fn row(r: &AnyRow) -> RolloutRow {
    let stage: String = r.get(3);
    RolloutRow {
        id: r.get(0),
        model_sha: r.get(1),
        baseline_sha: r.get(2),
        stage: Stage::parse(&stage).unwrap_or(Stage::RolledBack),
        share_pct: r.get(4),
        started_ms: r.get(5),
        stage_since_ms: r.get(6),
        ended_ms: r.get(7),
        reason: r.get(8),
    }
}

pub async fn list(db: &Db) -> Result<Vec<RolloutRow>, DbError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM rollouts ORDER BY started_ms, id"
    ))
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(row).collect())
}

/// The rollout in shadow or canary, if any (at most one).
pub async fn active(db: &Db) -> Result<Option<RolloutRow>, DbError> {
    let r = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM rollouts WHERE stage IN ('shadow', 'canary') ORDER BY started_ms DESC LIMIT 1"
    ))
    .fetch_optional(db.pool())
    .await?;
    Ok(r.as_ref().map(row))
}

/// The model every host acts with outside a canary (None: the agents' built-in one).
pub async fn fleet_current(db: &Db) -> Result<Option<RolloutRow>, DbError> {
    let r = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM rollouts WHERE stage = 'fleet' ORDER BY stage_since_ms DESC, id DESC LIMIT 1"
    ))
    .fetch_optional(db.pool())
    .await?;
    Ok(r.as_ref().map(row))
}

/// Starts a rollout of `sha` in shadow, or moves its running rollout one stage on.
pub async fn promote(
    db: &Db,
    sha: &str,
    share_pct: u32,
    why: &str,
) -> Result<RolloutRow, RolloutError> {
    if super::models::model(db, sha).await?.is_none() {
        return Err(RolloutError::UnknownModel(sha.into()));
    }
    let now = now_ms();
    match active(db).await? {
        Some(r) if r.model_sha == sha => {
            let next = r.stage.next().unwrap_or(Stage::Fleet);
            set_stage(db, &r.id, next, why, now).await?;
            Ok(RolloutRow {
                stage: next,
                stage_since_ms: now,
                ended_ms: (next == Stage::Fleet).then_some(now),
                reason: Some(why.into()),
                ..r
            })
        }
        Some(r) => Err(RolloutError::Busy {
            id: r.id,
            model_sha: r.model_sha,
            stage: r.stage.as_str(),
        }),
        None => {
            let baseline = fleet_current(db).await?.map(|r| r.model_sha);
            if baseline.as_deref() == Some(sha) {
                return Err(RolloutError::AlreadyFleet(sha.into()));
            }
            let mut id_bytes = [0u8; 6];
            rand::rng().fill_bytes(&mut id_bytes);
            let id = format!(
                "r-{}",
                id_bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            );
            let _gate = db.write_gate().await;
            let mut tx = db.pool().begin().await?;
            sqlx::query(
                "INSERT INTO rollouts (id, model_sha, baseline_sha, stage, share_pct, started_ms, stage_since_ms, reason) \
                 VALUES ($1, $2, $3, 'shadow', $4, $5, $5, $6)",
            )
            .bind(&id)
            .bind(sha)
            .bind(baseline.as_deref())
            .bind(i64::from(share_pct))
            .bind(now)
            .bind(why)
            .execute(&mut *tx)
            .await?;
            super::tokens::bump_generation(&mut tx).await?;
            tx.commit().await?;
            Ok(RolloutRow {
                id,
                model_sha: sha.into(),
                baseline_sha: baseline,
                stage: Stage::Shadow,
                share_pct: i64::from(share_pct),
                started_ms: now,
                stage_since_ms: now,
                ended_ms: None,
                reason: Some(why.into()),
            })
        }
    }
}

/// Rolls back the running rollout; with none running, the current fleet model (the
/// one before it becomes current again).
pub async fn rollback(db: &Db, why: &str) -> Result<RolloutRow, RolloutError> {
    let target = match active(db).await? {
        Some(r) => r,
        None => fleet_current(db)
            .await?
            .ok_or(RolloutError::NothingToRollBack)?,
    };
    let now = now_ms();
    set_stage(db, &target.id, Stage::RolledBack, why, now).await?;
    Ok(RolloutRow {
        stage: Stage::RolledBack,
        stage_since_ms: now,
        ended_ms: Some(now),
        reason: Some(why.into()),
        ..target
    })
}

pub async fn set_stage(
    db: &Db,
    id: &str,
    stage: Stage,
    why: &str,
    now: i64,
) -> Result<(), DbError> {
    let ended = (!stage.is_active()).then_some(now);
    let _gate = db.write_gate().await;
    let mut tx = db.pool().begin().await?;
    sqlx::query("UPDATE rollouts SET stage = $1, stage_since_ms = $2, ended_ms = $3, reason = $4 WHERE id = $5")
        .bind(stage.as_str())
        .bind(now)
        .bind(ended)
        .bind(why)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    super::tokens::bump_generation(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// The candidate's and the baseline's outcomes since the stage began.
pub async fn outcomes(
    db: &Db,
    r: &RolloutRow,
    flap_window_ms: i64,
) -> Result<(Outcomes, Outcomes), DbError> {
    let since = r.stage_since_ms;
    let sha = r.model_sha.as_str();
    let p = db.pool();
    let f64_of = |row: AnyRow| row.try_get::<Option<f64>, _>(0).ok().flatten();
    if r.stage == Stage::Shadow {
        // Same hosts, same time: the candidate's shadow events against the acting
        // model's live events.
        let hosts = "SELECT DISTINCT host_id FROM score_events WHERE shadow = 1 AND model_sha = $1 AND at_ms >= $2";
        let cand: i64 = sqlx::query(
            "SELECT COUNT(*) FROM score_events WHERE shadow = 1 AND model_sha = $1 AND at_ms >= $2",
        )
        .bind(sha)
        .bind(since)
        .fetch_one(p)
        .await?
        .get(0);
        let base: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) FROM score_events WHERE shadow = 0 AND at_ms >= $2 AND host_id IN ({hosts})"
        ))
        .bind(sha).bind(since).fetch_one(p).await?.get(0);
        let vm_hours = f64_of(
            sqlx::query(&format!(
                "SELECT CAST(SUM(window_ms) AS DOUBLE PRECISION) / 3600000.0 FROM rollups \
                 WHERE window_start_ms >= $2 AND host_id IN ({hosts})"
            ))
            .bind(sha)
            .bind(since)
            .fetch_one(p)
            .await?,
        )
        .unwrap_or(0.0);
        return Ok((
            Outcomes {
                vm_hours,
                actions: cand as f64,
                ..Outcomes::default()
            },
            Outcomes {
                vm_hours,
                actions: base as f64,
                ..Outcomes::default()
            },
        ));
    }
    let mut out = Vec::new();
    for (cmp, label) in [
        ("model_sha = $1", "candidate"),
        ("(model_sha IS NULL OR model_sha <> $1)", "baseline"),
    ] {
        let _ = label;
        let vm_hours = f64_of(
            sqlx::query(&format!(
                "SELECT CAST(SUM(window_ms) AS DOUBLE PRECISION) / 3600000.0 FROM rollups WHERE {cmp} AND window_start_ms >= $2"
            ))
            .bind(sha).bind(since).fetch_one(p).await?,
        )
        .unwrap_or(0.0);
        let actions: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) FROM action_phases WHERE phase = 'done' AND {cmp} AND at_ms >= $2"
        ))
        .bind(sha)
        .bind(since)
        .fetch_one(p)
        .await?
        .get(0);
        let d_cmp = cmp.replace("model_sha", "d.model_sha");
        let flaps: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) FROM action_phases d JOIN action_phases r \
               ON r.host_id = d.host_id AND r.action_id = d.action_id AND r.phase = 'rollback' \
             WHERE d.phase = 'done' AND {d_cmp} AND d.at_ms >= $2 AND r.at_ms - d.at_ms < $3"
        ))
        .bind(sha)
        .bind(since)
        .bind(flap_window_ms)
        .fetch_one(p)
        .await?
        .get(0);
        let victim_wait_ms = f64_of(
            sqlx::query(&format!(
                "SELECT CAST(AVG(victim_wait_after_ms) AS DOUBLE PRECISION) FROM action_phases \
                 WHERE phase = 'outcome' AND {cmp} AND at_ms >= $2"
            ))
            .bind(sha)
            .bind(since)
            .fetch_one(p)
            .await?,
        );
        let forecast_abs_error = f64_of(
            sqlx::query(&format!(
                "SELECT CAST(AVG(forecast_abs_error) AS DOUBLE PRECISION) FROM rollups WHERE {cmp} AND window_start_ms >= $2"
            ))
            .bind(sha).bind(since).fetch_one(p).await?,
        );
        out.push(Outcomes {
            vm_hours,
            actions: actions as f64,
            flaps: flaps as f64,
            victim_wait_ms,
            forecast_abs_error,
        });
    }
    let baseline = out.pop().unwrap_or_default();
    let candidate = out.pop().unwrap_or_default();
    Ok((candidate, baseline))
}
