//! Plain data at the policy stage's boundary: what the policy decided, for the
//! enforcement stage to apply, the journal to record and billing to price.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The rungs of the ladder, cheapest first. The policy escalates one rung at a time
/// while a pair's score stays above its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rung {
    /// cpu.weight (v2) / cpu.shares (v1): raise the protected VM, cut the reduced one.
    Weight,
    /// Disjoint cpusets for the pair.
    Pin,
    /// Balloon the reduced VM towards its floor (QMP).
    Balloon,
    /// Live-migrate the reduced VM (only when enabled, to a target known to have room).
    Migrate,
}

/// One change to one VM. Every field needed to apply it, undo it, explain it and price
/// it is here; nothing refers back into the policy's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Unique and stable across restarts: `<host>-<tick>-<seq>` style, chosen by the
    /// policy; the journal and the ledger key on it.
    pub id: String,
    /// Milliseconds since the Unix epoch when decided.
    pub decided_ms: u64,
    pub rung: Rung,
    pub change: Change,
    /// The VM whose resources change.
    pub vm: String,
    /// The VM this action protects (the pair's victim or the priority VM).
    pub protects: String,
    /// The pair and the direction that triggered it.
    pub victim: String,
    pub aggressor: String,
    pub score: f32,
    /// Contention dimensions the score could not see (`llc`, `membw` without a PMU),
    /// carried to the ledger so a bill says what the score was blind to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unobservable: Vec<String>,
    /// True when `vm` is the aggressor of the pair (the credit ratio for aggressors
    /// applies in billing).
    pub vm_is_aggressor: bool,
    /// Decided in dry-run mode: logged and reported, never applied, never billed.
    pub simulated: bool,
    /// One sentence for logs and invoices.
    pub reason: String,
    /// The customer of each VM of the pair that has one (VM name -> customer id):
    /// billing charges the protected VM's and credits the other's, and a restart can
    /// bill the action after the VMs are gone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub customers: BTreeMap<String, String>,
    /// vCPUs of the changed VM, when known (a weight change is priced per vCPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    /// On a pair's first rung: what the mitigation answers, so a restart (replaying
    /// the journal) knows when it may be rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
}

/// What a pair's mitigation answers: the CPU demand (usage plus run-queue wait, cores;
/// see `VmInput::cpu_demand_cores`) of the VM the protected one is shielded from, when
/// the pair's first rung was decided, before any of its changes were in force. The
/// mitigation may be rolled back once that demand has fallen (`quiet_demand_ratio`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cause {
    /// The pair's other VM: the aggressor, or the VM reduced for a priority VM that
    /// is itself the aggressor.
    pub vm: String,
    pub demand_cores: f64,
}

/// What to change. Apply sets the new value; the enforcement stage reads and journals
/// the old value itself before writing, so a rollback restores what was really there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Set the CPU weight (cgroup v2 scale 1..10000, default 100) of the VM's own
    /// cgroups, where it competes with other VMs (a weight on its vCPU or emulator
    /// cgroups would only split the VM's own share); v1 backends convert to cpu.shares.
    CpuWeight { weight: u64 },
    /// Restrict the VM's cgroups to these CPUs.
    Cpuset { cpus: Vec<u32> },
    /// Set the balloon target (bytes of guest memory).
    Balloon { target_bytes: u64 },
    /// Migrate to this destination URI. The VM's size is what the destination's
    /// capacity is charged with (a restart replays it from the journal).
    Migrate {
        uri: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vcpus: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory_mib: Option<u64>,
    },
    /// Undo the earlier action `action_id` (restore the journalled values).
    Rollback { action_id: String },
}

impl Change {
    /// Its name in metrics (`interference_actions_total{action}`) and in the ledger
    /// (`x_Action`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::CpuWeight { .. } => "cpu_weight",
            Self::Cpuset { .. } => "cpuset",
            Self::Balloon { .. } => "balloon",
            Self::Migrate { .. } => "migrate",
            Self::Rollback { .. } => "rollback",
        }
    }
}

/// The result of applying (or simulating) an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub action_id: String,
    pub result: ActionResult,
    /// Milliseconds since the Unix epoch when the change took effect (or failed).
    pub at_ms: u64,
    /// Per cgroup file or QMP property written: what it was and what it became.
    pub effects: Vec<Effect>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionResult {
    Applied,
    Simulated,
    Failed,
}

impl ActionResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Simulated => "simulated",
            Self::Failed => "failed",
        }
    }
}

/// One value changed: a cgroup file (`target` is its path) or a VM property
/// (`target` is e.g. `qmp:<socket>#balloon`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    pub target: PathBuf,
    pub before: String,
    pub after: String,
}
