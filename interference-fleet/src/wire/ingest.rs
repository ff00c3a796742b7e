//! Ingest: batches of idempotent items, one per-host sequence number per batch.
//!
//! What reaches the controller is what fleet-level questions need, and no more (see
//! docs/controller.md for the arithmetic): ledger lines (billing), action journal
//! phases (audit, caps, rollout outcomes), 5-minute per-VM rollups, score events above
//! the off threshold, capacity samples. Raw per-tick samples and all-pairs scores stay
//! on the host.
//!
//! Every item carries the id its producer gave it, so a batch can be sent any number
//! of times, in any order, overlapping other batches: the controller inserts what it
//! has not seen and ignores the rest, in one transaction per batch, and answers with
//! an [`IngestAck`] only after that transaction committed.

use serde::{Deserialize, Serialize};

use super::host::Capacity;
use super::ledger::LedgerLine;

/// Rollups cover this long, aligned on the epoch.
pub const ROLLUP_WINDOW_MS: u64 = 300_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestBatch {
    /// Per host, increasing by one per new batch; a resent batch keeps its number.
    pub seq: u64,
    pub items: Vec<Item>,
}

/// One fact, externally tagged (`{"ledger": {...}}`) so that a ledger line's bytes
/// pass through untouched.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Item {
    Ledger {
        line: LedgerLine,
        /// The VM's uuid, when the agent knows it (the ledger names VMs by host and
        /// name; the uuid follows a VM across a migration).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vm_uuid: Option<String>,
    },
    ActionPhase(ActionPhase),
    Rollup(Rollup),
    Score(ScoreEvent),
    Capacity(CapacitySample),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Ledger,
    ActionPhase,
    Rollup,
    Score,
    Capacity,
}

impl ItemKind {
    pub const ALL: [ItemKind; 5] = [
        ItemKind::Ledger,
        ItemKind::ActionPhase,
        ItemKind::Rollup,
        ItemKind::Score,
        ItemKind::Capacity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ledger => "ledger",
            Self::ActionPhase => "action_phase",
            Self::Rollup => "rollup",
            Self::Score => "score",
            Self::Capacity => "capacity",
        }
    }
}

impl Item {
    pub fn kind(&self) -> ItemKind {
        match self {
            Self::Ledger { .. } => ItemKind::Ledger,
            Self::ActionPhase(_) => ItemKind::ActionPhase,
            Self::Rollup(_) => ItemKind::Rollup,
            Self::Score(_) => ItemKind::Score,
            Self::Capacity(_) => ItemKind::Capacity,
        }
    }

    /// The idempotency key: a ledger line's `x_RecordId` (unique fleet-wide), the
    /// others' ids unique on their host. None for a ledger line without a record id.
    pub fn id(&self) -> Option<String> {
        match self {
            Self::Ledger { line, .. } => line.record_id().ok(),
            Self::ActionPhase(p) => Some(p.id.clone()),
            Self::Rollup(r) => Some(r.id()),
            Self::Score(s) => Some(s.id()),
            Self::Capacity(c) => Some(c.id()),
        }
    }
}

/// The journal's record kinds that say where an action stands
/// (interference-user/src/enforce/journal.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Decided; the change is about to be written.
    Intent,
    /// Applied.
    Done,
    Failed,
    /// Undone (or closed without a write).
    Rollback,
    /// Measured after the fact.
    Outcome,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Intent => "intent",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Rollback => "rollback",
            Self::Outcome => "outcome",
        }
    }
}

/// One phase of one action, from the agent's journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionPhase {
    /// Unique on the host: `<action id>/<phase>/<journal entry id>`.
    pub id: String,
    pub action_id: String,
    pub phase: Phase,
    pub at_ms: u64,
    /// `cpu_weight`, `cpuset`, `balloon`, `migrate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rung: Option<String>,
    /// The VM changed, and its customer (the per-tenant action cap counts by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// The model bundle whose score triggered the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha: Option<String>,
    /// On `outcome`: the protected VM's mean run-queue wait (ms per second) over the
    /// minute after the action took effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victim_wait_after_ms: Option<f64>,
    /// Anything else the journal says (before/after values, error), for audits.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// Five minutes of one VM, summed or averaged from the host's ticks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    pub vm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// Aligned on [`ROLLUP_WINDOW_MS`].
    pub window_start_ms: u64,
    pub window_ms: u64,
    /// Mean CPU used, in cores.
    pub cpu_usage_cores: f64,
    /// Run-queue wait of its vCPUs, ms per second (mean over the window).
    pub run_queue_wait_ms: f64,
    /// Time other VMs (or the host) took the CPU from it, ms per second.
    pub preempted_ms: f64,
    pub io_ops: u64,
    pub io_bytes: u64,
    pub memory_mib: u64,
    /// The highest score of a pair it was in.
    pub max_score: f32,
    /// Actions applied to or for it in the window.
    pub actions: u32,
    /// The model acting on the host during the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha: Option<String>,
    /// |forecast demand - observed demand| averaged over the window, where a forecast
    /// ran: the rollout's forecast-accuracy outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast_abs_error: Option<f64>,
}

impl Rollup {
    pub fn id(&self) -> String {
        format!("{}/{}", self.vm, self.window_start_ms)
    }
}

/// A pair's score at or above the off threshold (the ones that matter for audits
/// and rollouts; the rest stay on the host).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreEvent {
    pub victim: String,
    pub aggressor: String,
    pub at_ms: u64,
    pub score: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha: Option<String>,
    /// Scored by a model in shadow: compared, not acted on.
    #[serde(default)]
    pub shadow: bool,
}

impl ScoreEvent {
    pub fn id(&self) -> String {
        let shadow = if self.shadow { "/shadow" } else { "" };
        format!("{}/{}/{}{shadow}", self.victim, self.aggressor, self.at_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacitySample {
    pub at_ms: u64,
    pub capacity: Capacity,
}

impl CapacitySample {
    pub fn id(&self) -> String {
        self.at_ms.to_string()
    }
}

/// Sent after the batch's transaction committed, never before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestAck {
    pub seq: u64,
    pub items: u32,
    /// New to the controller.
    pub inserted: u32,
    /// Already there (a resend, an overlap).
    pub duplicates: u32,
    /// This exact sequence number had been committed before.
    pub replayed_batch: bool,
    /// Ledger record ids already stored with different content (from another host):
    /// kept as they were, reported here and in the controller's log and metrics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    /// Items that could not be read (kept in quarantine on the controller, so the
    /// agent may advance past them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Position in the batch.
    pub index: u32,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_externally_tagged_and_keep_ledger_bytes() {
        let line = r#"{"x_RecordId":"h/1/charge","BilledCost":1.5e-05,"Z":1,"A":2}"#;
        let text = format!(
            r#"{{"seq":3,"items":[{{"ledger":{{"line":{line}}}}},{{"capacity":{{"at_ms":5,"capacity":{{"total_vcpus":8,"total_memory_mib":1024,"free_vcpus":4,"free_memory_mib":512,"vms":2}}}}}}]}}"#
        );
        let batch: IngestBatch = serde_json::from_str(&text).expect("batch");
        assert_eq!(batch.items.len(), 2);
        match &batch.items[0] {
            Item::Ledger { line: l, vm_uuid } => {
                assert_eq!(l.as_str(), line, "bytes kept, key order too");
                assert!(vm_uuid.is_none());
            }
            other => panic!("not a ledger item: {other:?}"),
        }
        assert_eq!(batch.items[0].id().as_deref(), Some("h/1/charge"));
        assert_eq!(batch.items[1].id().as_deref(), Some("5"));
        assert_eq!(batch.items[1].kind(), ItemKind::Capacity);
        assert_eq!(serde_json::to_string(&batch).expect("back"), text);
    }

    #[test]
    fn score_ids_separate_shadow_from_live() {
        let mut e = ScoreEvent {
            victim: "a".into(),
            aggressor: "b".into(),
            at_ms: 10,
            score: 50.0,
            model_sha: None,
            shadow: false,
        };
        assert_eq!(e.id(), "a/b/10");
        e.shadow = true;
        assert_eq!(e.id(), "a/b/10/shadow");
    }
}
