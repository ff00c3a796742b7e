//! What the controller wants a host to run: the layered policy, the model bundles, the
//! fleet's limits. Pulled with a long poll and an ETag; the agent applies a new state
//! between ticks and reports the versions it applied in its heartbeat. Without a
//! controller the agent keeps the last state it applied (fail-static).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredState {
    /// Opaque; equal ETags mean equal states.
    pub etag: String,
    pub policy: PolicyAssignment,
    pub model: ModelAssignment,
    pub limits: Limits,
    /// Ask the controller for migration targets (else use the static targets).
    pub placement: bool,
}

/// The fleet, group and host documents merged (later layers win key by key), as one
/// TOML document with `[policy]` and `[billing]` tables, already checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyAssignment {
    /// `fleet@3+group:web@1+host:h1@2`: the layers and their versions.
    pub version: String,
    pub toml: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelAssignment {
    /// The bundle to act with; None: the agent's built-in model.
    pub active: Option<ModelRef>,
    /// A bundle to score with beside it, compared and reported, never acted on.
    pub shadow: Option<ModelRef>,
    /// The rollout this host takes part in, if any.
    pub rollout: Option<RolloutRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    /// The bundle manifest's sha256 (its address).
    pub sha256: String,
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutRef {
    pub id: String,
    /// `shadow`, `canary`, `fleet`.
    pub stage: String,
}

/// Fleet-wide caps the agent enforces locally between polls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_actions_per_tenant_per_day: Option<u32>,
    /// Tenants that reached that cap today (UTC): take no new action for their VMs
    /// (rollbacks still run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_tenants: Vec<String>,
    pub max_concurrent_migrations: Option<u32>,
}
