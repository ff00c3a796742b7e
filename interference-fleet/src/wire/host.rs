//! Registration and heartbeats: what the controller knows about a host. The host's
//! name comes from its token, so neither message carries it.

use serde::{Deserialize, Serialize};

/// What a host has and what is free on it, in the units placement reasons in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub total_vcpus: u32,
    pub total_memory_mib: u64,
    /// For new VMs (migrations in): what the host can still take.
    pub free_vcpus: u32,
    pub free_memory_mib: u64,
    /// VMs running.
    pub vms: u32,
}

/// Sent at start-up and whenever the host's hardware or software changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    pub agent_version: String,
    /// `/proc/cpuinfo` "model name": live migration needs a compatible CPU model.
    pub cpu_model: String,
    pub qemu_version: String,
    pub capacity: Capacity,
    /// Where QEMUs on this host accept incoming migrations (`tcp:10.0.0.7:4444`), if
    /// the host takes migrated VMs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_uri: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// The host's name, from its token.
    pub host: String,
    /// Its policy group (`group:<name>` layer).
    pub group: String,
    pub server_time_ms: u64,
    /// The highest batch sequence the controller has committed for this host (0: none).
    /// Informational: items are idempotent, so resending from the agent's own cursor
    /// is always safe.
    pub last_seq: u64,
    /// How often the controller expects a heartbeat; placement treats a host silent
    /// for three of these as gone.
    pub heartbeat_every_ms: u64,
    /// The largest batch the controller accepts.
    pub max_batch_items: u32,
}

/// Every `heartbeat_every_ms`: liveness, capacity and versions in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub at_ms: u64,
    pub capacity: Capacity,
    /// The highest pair Contention Score (0-100) on the host over the last minute:
    /// placement prefers quiet hosts.
    pub contention: f32,
    /// Take no migrated VMs (maintenance).
    #[serde(default)]
    pub draining: bool,
    /// The policy version applied (from [`crate::wire::DesiredState`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// The model bundle acting, and the one scored in shadow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_model_sha: Option<String>,
    /// Items waiting to be uploaded, and the age of the oldest: the ingest lag.
    #[serde(default)]
    pub backlog_items: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_unsent_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    pub server_time_ms: u64,
    /// The current desired state's ETag: a differing one means "poll now".
    pub desired_etag: String,
}
