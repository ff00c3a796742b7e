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
    /// What customers asked for through the customer API, within the operator's
    /// limits. Absent from controllers that predate it: nothing asked.
    #[serde(default)]
    pub influence: Influence,
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

/// Customers' requests, as the policy applies them (docs/customer-api.md, "Influence").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Influence {
    /// Customers whose VMs are never reduced to protect another VM unless they are the
    /// pair's aggressor, and get no credit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_donor_customers: Vec<String>,
    /// The same, for single VMs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_donor_vms: Vec<VmRef>,
    /// Customers whose interference charges reached their monthly cap: no new
    /// mitigation is charged to them until the period ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capped_customers: Vec<String>,
    /// Priority requests in force: each VM is a priority VM until its grant ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority: Vec<PriorityGrant>,
}

/// A VM as the controller knows it: by uuid where there is one, else by its
/// customer's name for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VmRef {
    pub customer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl VmRef {
    /// Whether this names the VM `name` of `customer` (uuid `uuid`, if known).
    pub fn matches(&self, customer: Option<&str>, name: &str, uuid: Option<&str>) -> bool {
        if customer != Some(self.customer.as_str()) {
            return false;
        }
        match (&self.uuid, uuid) {
            (Some(a), Some(b)) => a == b,
            _ => self.name.as_deref() == Some(name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorityGrant {
    /// The grant's id (the customer API's and the audit log's).
    pub id: String,
    pub vm: VmRef,
    /// Milliseconds since the epoch: a priority VM from `start_ms` until `until_ms`.
    pub start_ms: u64,
    pub until_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::VmRef;

    #[test]
    fn a_vm_is_named_by_uuid_where_both_know_it_else_by_customer_and_name() {
        let by_uuid = VmRef {
            customer: "acme".into(),
            uuid: Some("u-1".into()),
            name: Some("web".into()),
        };
        assert!(by_uuid.matches(Some("acme"), "web", Some("u-1")));
        assert!(
            by_uuid.matches(Some("acme"), "web-renamed", Some("u-1")),
            "migrated and renamed"
        );
        assert!(
            !by_uuid.matches(Some("acme"), "web", Some("u-2")),
            "another VM of that name"
        );
        assert!(
            !by_uuid.matches(Some("globex"), "web", Some("u-1")),
            "another customer"
        );
        assert!(
            by_uuid.matches(Some("acme"), "web", None),
            "the host does not know its uuid"
        );
        let by_name = VmRef {
            uuid: None,
            ..by_uuid
        };
        assert!(by_name.matches(Some("acme"), "web", Some("u-9")));
        assert!(!by_name.matches(None, "web", None));
    }
}
