//! The policy's input, plain data: each VM as the policy sees it this tick, and
//! everything one decision looks at besides the policy's own state.

use serde::{Deserialize, Serialize};

use super::action::Outcome;
use crate::inventory::Priority;
use crate::predict::{ContentionScore, DirectedScore};

/// One VM as the policy sees it this tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmInput {
    pub name: String,
    pub customer: Option<String>,
    pub priority: Priority,
    pub sla_tier: Option<String>,
    /// CPU used over the last tick, in cores.
    pub cpu_cores: f64,
    /// CPU demand over the last tick, in cores: usage plus the time its threads spent
    /// runnable but waiting for a CPU (seconds per second, summed over its threads). A
    /// weight cut or a pin lowers the usage of a VM that still wants the CPU, not its
    /// demand. 0 when unknown.
    pub cpu_demand_cores: f64,
    /// Current cpu.weight (v2 scale), when known: the reason shows old -> new, and a
    /// weight already past the target is left alone.
    pub cpu_weight: Option<u64>,
    /// Current cpuset (CPUs the VM may run on), when known.
    pub cpuset: Option<Vec<u32>>,
    /// Current guest memory (balloon actual), bytes, when known.
    pub memory_bytes: Option<u64>,
    /// Guest memory as configured (QEMU `-m`, `[[vm]] memory_mib`), bytes, when known:
    /// what a migration destination must have room for.
    pub memory_allocated_bytes: Option<u64>,
    /// The VM's own memory floor, bytes; the higher of it and `balloon_floor_mib` wins.
    pub memory_floor_bytes: Option<u64>,
    /// Balloon and migration go through QMP.
    pub has_qmp: bool,
    /// vCPUs (allocation), when known: carried on actions for billing.
    pub vcpus: Option<u32>,
    /// Its customer opted it out of being a donor (the customer API): it is never
    /// reduced to protect another VM unless it is the pair's aggressor, and never
    /// credited.
    #[serde(default)]
    pub no_donor: bool,
    /// A priority VM by its customer's request until this instant (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_until_ms: Option<u64>,
}

/// Everything one decision looks at besides the policy's own state.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    /// Moves forward by one each tick of this run: action ids embed it (after the run
    /// number the id prefix carries, so ids do not repeat across restarts).
    pub tick: u64,
    /// Milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// The host's online CPUs.
    pub host_cpus: &'a [u32],
    pub vms: &'a [VmInput],
    /// One per unordered pair (`predict::contention_scores`).
    pub scores: &'a [ContentionScore],
    /// Both directions, when available (used to explain a protected aggressor).
    pub directed: &'a [DirectedScore],
    /// What became of the previous decision's actions.
    pub outcomes: &'a [Outcome],
    /// Why no new mitigation may start this tick (the ledger cannot take what it
    /// would owe); rollbacks go on. None: nothing holds them.
    pub hold_new: Option<&'a str>,
    /// Customers whose VMs may not be changed by a new action (the fleet's per-tenant
    /// cap for the day, `fleet::limits`); rollbacks go on. Sorted.
    pub blocked_customers: &'a [String],
    /// Customers whose interference charges reached their monthly cap (the customer
    /// API): no new mitigation protects their VMs, since it would charge them; rollbacks
    /// go on. Sorted.
    pub capped_customers: &'a [String],
    /// Who pays a mitigation (`[billing] payer`): the capped customers above are
    /// held back as the protected side (`protected`) or as the reduced one (`reduced`).
    pub payer: interference_core::billing::Payer,
    /// `[billing.payer_tiers]`: the rule for a protected VM of these SLA tiers.
    pub payer_tiers: &'a std::collections::BTreeMap<String, interference_core::billing::Payer>,
    /// Where the migrate rung's targets come from.
    pub placement: Placement,
}

/// Where migration targets come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Placement {
    /// The static `[[policy.migration.targets]]` (no controller, or placement off).
    #[default]
    Static,
    /// The controller places each migration.
    Controller,
    /// The controller refused a placement lately: the static targets stand in, and
    /// without room there the rung waits for the controller instead of passing over.
    ControllerPaused,
    /// The fleet's concurrent migrations are at their cap: no migration starts, placed
    /// or static (the cap is the fleet's); the rung waits.
    Busy,
}
