//! Administrative operations shared by the admin API and the CLI (which runs them
//! straight against the database): each checks, then stores.

use thiserror::Error;

use crate::db::{Db, DbError};
use crate::domain::fleet_settings::FleetSettings;
use crate::domain::policy_layers::{check_new_layer, Scope};
use crate::store::policy;
use crate::store::rollouts::{self, RolloutError, RolloutRow};
use interference_fleet::wire::FieldError;

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("{0}")]
    Scope(String),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Checks `body` as the next document of `scope` (alone and merged with every stack it
/// joins) and stores it; returns its version.
pub async fn set_policy(
    db: &Db,
    scope: &str,
    body: &str,
    author: &str,
) -> Result<i64, PolicyError> {
    let scope = Scope::parse(scope).map_err(PolicyError::Scope)?;
    let others: Vec<_> = policy::latest_all(db)
        .await?
        .into_iter()
        .filter(|l| l.scope != scope)
        .collect();
    let host_groups = policy::host_groups(db).await?;
    check_new_layer(&scope, body, &others, &host_groups).map_err(PolicyError::Invalid)?;
    Ok(policy::put(db, &scope, body, author).await?)
}

/// The fleet's `[fleet]` settings as stored now.
pub async fn fleet_settings(db: &Db) -> Result<FleetSettings, DbError> {
    Ok(policy::latest(db, &Scope::Fleet)
        .await?
        .and_then(|l| FleetSettings::from_document(&l.body).ok())
        .unwrap_or_default())
}

/// Starts a rollout of `sha` (shadow) or moves it one stage on.
pub async fn promote(db: &Db, sha: &str, who: &str) -> Result<RolloutRow, RolloutError> {
    let settings = fleet_settings(db).await?;
    rollouts::promote(
        db,
        sha,
        settings.rollout.canary_share_pct,
        &format!("promoted by {who}"),
    )
    .await
}

pub async fn rollback(db: &Db, who: &str) -> Result<RolloutRow, RolloutError> {
    rollouts::rollback(db, &format!("rolled back by {who}")).await
}
