//! One consistent picture of what the fleet wants, and each host's part of it.

use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::db::sql::now_ms;
use crate::db::{Db, DbError};
use crate::domain::fleet_settings::FleetSettings;
use crate::domain::policy_layers::{merged, Layer, Scope};
use crate::domain::rollout::{in_share, Stage};
use crate::store::{models, policy, rollouts};
use interference_fleet::wire::{
    DesiredState, Influence, Limits, ModelAssignment, ModelRef, PolicyAssignment, RolloutRef,
};

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub generation: i64,
    pub layers: Vec<Layer>,
    pub settings: FleetSettings,
    pub fleet_model: Option<ModelRef>,
    /// The running rollout (shadow or canary) and its bundle.
    pub rollout: Option<(rollouts::RolloutRow, ModelRef)>,
    pub blocked_tenants: Vec<String>,
    /// Customers' requests in force (the customer API).
    pub influence: Influence,
}

impl Snapshot {
    pub async fn load(db: &Db) -> Result<Self, DbError> {
        let generation = crate::store::tokens::generation(db).await?;
        let layers = policy::latest_all(db).await?;
        let settings = layers
            .iter()
            .find(|l| l.scope == Scope::Fleet)
            .and_then(|l| FleetSettings::from_document(&l.body).ok())
            .unwrap_or_default();
        let model_ref = |sha: String| async move {
            let m = models::model(db, &sha).await?;
            Ok::<_, DbError>(ModelRef {
                name: m.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
                version: m.map(|m| m.version).unwrap_or_default(),
                sha256: sha,
            })
        };
        let fleet_model = match rollouts::fleet_current(db).await? {
            Some(r) => Some(model_ref(r.model_sha).await?),
            None => None,
        };
        let rollout = match rollouts::active(db).await? {
            Some(r) => {
                let m = model_ref(r.model_sha.clone()).await?;
                Some((r, m))
            }
            None => None,
        };
        let blocked_tenants = match settings.max_actions_per_tenant_per_day {
            Some(cap) => blocked_tenants(db, cap).await?,
            None => Vec::new(),
        };
        let now = now_ms();
        let period =
            interference_core::billing::Period::containing(u64::try_from(now).unwrap_or(0));
        let influence = crate::store::influence::influence(db, now, &period.to_string()).await?;
        Ok(Self {
            influence,
            generation,
            layers,
            settings,
            fleet_model,
            rollout,
            blocked_tenants,
        })
    }

    /// The state `host` (in `group`) should run.
    pub fn desired_for(&self, host: &str, group: &str) -> DesiredState {
        let find = |s: Scope| self.layers.iter().find(move |l| l.scope == s);
        let stack: Vec<&Layer> = [
            find(Scope::Fleet),
            find(Scope::Group(group.to_owned())),
            find(Scope::Host(host.to_owned())),
        ]
        .into_iter()
        .flatten()
        .collect();
        let (toml, version) = merged(&stack);
        let mut model = ModelAssignment {
            active: self.fleet_model.clone(),
            shadow: None,
            rollout: None,
        };
        if let Some((r, m)) = &self.rollout {
            if in_share(&r.id, host, u32::try_from(r.share_pct).unwrap_or(0)) {
                model.rollout = Some(RolloutRef {
                    id: r.id.clone(),
                    stage: r.stage.as_str().into(),
                });
                match r.stage {
                    Stage::Shadow => model.shadow = Some(m.clone()),
                    Stage::Canary => model.active = Some(m.clone()),
                    Stage::Fleet | Stage::RolledBack => {}
                }
            }
        }
        let limits = Limits {
            max_actions_per_tenant_per_day: self.settings.max_actions_per_tenant_per_day,
            blocked_tenants: self.blocked_tenants.clone(),
            max_concurrent_migrations: Some(self.settings.max_concurrent_migrations),
        };
        let mut state = DesiredState {
            etag: String::new(),
            policy: PolicyAssignment { version, toml },
            model,
            limits,
            placement: self.settings.placement,
            influence: self.influence.clone(),
        };
        state.etag = etag(&state);
        state
    }
}

/// A digest of everything but the ETag itself.
fn etag(state: &DesiredState) -> String {
    let text = serde_json::to_vec(&(
        &state.policy,
        &state.model,
        &state.limits,
        state.placement,
        &state.influence,
    ))
    .unwrap_or_default();
    let digest = Sha256::digest(&text);
    digest[..10].iter().map(|b| format!("{b:02x}")).collect()
}

/// Customers with at least `cap` actions applied since midnight UTC.
async fn blocked_tenants(db: &Db, cap: u32) -> Result<Vec<String>, DbError> {
    let day = now_ms() / 86_400_000 * 86_400_000;
    let rows = sqlx::query(
        "SELECT customer FROM action_phases WHERE phase = 'done' AND at_ms >= $1 AND customer IS NOT NULL \
         GROUP BY customer HAVING COUNT(*) >= $2 ORDER BY customer",
    )
    .bind(day)
    .bind(i64::from(cap))
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
}
