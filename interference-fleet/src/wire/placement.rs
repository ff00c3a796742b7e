//! Migration placement: the agent's migrate rung asks the controller for a target; the
//! controller reserves room there until the migration ends or the reservation expires.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRequest {
    /// The VM's name on the source host, and its uuid when known.
    pub vm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_uuid: Option<String>,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// Hosts not to propose (a target that just failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// Room held on a target for one migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: String,
    pub target_host: String,
    /// Where the target's QEMU accepts the migration.
    pub migration_uri: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// Unused after this, the room is given back.
    pub expires_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub outcome: ReleaseOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseOutcome {
    /// The VM runs on the target: the room stays taken until the target's next
    /// heartbeat counts the VM.
    Migrated,
    /// The migration failed: the room is given back.
    Failed,
    /// Not attempted after all.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    pub id: String,
    /// `consumed`, `released`, or what it already was (`expired`, ...): releasing twice
    /// is harmless.
    pub state: String,
}
