//! Plain data at the policy stage's boundary: what the policy decided, for the
//! enforcement stage to apply, the journal to record and billing to price.
//!
//! What an applied action changed comes back as typed [`Setting`]s (a weight with its
//! scale, a CPU list, bytes, a URI), written by the enforcement stage, so billing
//! prices numbers and never re-parses cgroup files. Journals written before the
//! settings were typed hold plain strings; they are read into the same types by the
//! file or property they came from ([`Setting::from_text`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::cpu_list::CpuList;
use crate::cpu_weight::shares_to_weight;

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
    /// What raised the alarm: the measured score, or a forecast of it (only the
    /// reversible cpu.weight rung may act on a forecast alone). Journals written before
    /// forecasts existed read as `now`.
    #[serde(default, skip_serializing_if = "Trigger::is_now")]
    pub trigger: Trigger,
    /// VMs of the pair whose customers opted them out of being donors (the customer
    /// API): never credited for this action.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_donors: Vec<String>,
    /// Who pays for it (`[billing] payer`, or `[billing.payer_tiers]` for the protected
    /// VM's SLA tier), decided with the action and journalled with it, so that a
    /// restart bills it by the rule it was taken under.
    #[serde(default, skip_serializing_if = "crate::billing::Payer::is_protected")]
    pub payer: crate::billing::Payer,
}

/// What raised a pair's alarm (`x_Trigger` in the ledger).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The nowcast: contention measured over the last ticks.
    #[default]
    Now,
    /// The forecast: contention expected within the forecast's horizon, not measured
    /// yet.
    Forecast,
}

impl Trigger {
    pub fn is_now(&self) -> bool {
        *self == Trigger::Now
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::Now => "now",
            Trigger::Forecast => "forecast",
        }
    }
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
    Cpuset { cpus: CpuList },
    /// Set the balloon target (bytes of guest memory).
    Balloon { target_bytes: u64 },
    /// Migrate to this destination URI. The VM's size is what the destination's
    /// capacity is charged with (a restart replays it from the journal). The policy
    /// may name [`CONTROLLER_PLACEMENT`] instead: the agent asks the controller for a
    /// target and applies the reservation's URI, so the journal and the ledger only
    /// ever hold a real destination.
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

/// The destination a migrate action names when the controller places the VM: resolved
/// to the reserved host's migration URI before the action is applied.
pub const CONTROLLER_PLACEMENT: &str = "controller:placement";

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Effect {
    pub target: PathBuf,
    pub before: Setting,
    pub after: Setting,
}

/// A value an action set, typed by what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Setting {
    /// cgroup v2 `cpu.weight` (1..10000, default 100).
    CpuWeight { weight: u64 },
    /// cgroup v1 `cpu.shares` (2..262144, default 1024).
    CpuShares { shares: u64 },
    /// `cpuset.cpus` (an empty list: a v2 cpuset that inherits its parent's).
    Cpus { cpus: CpuList },
    /// A balloon target or size, bytes of guest memory.
    Bytes { bytes: u64 },
    /// A migration destination.
    Uri { uri: String },
    /// Anything else: the file's own text.
    Text { text: String },
}

impl Effect {
    /// The change of `target` from `before` to `after`, each typed by what the target
    /// holds ([`Setting::from_text`]).
    pub fn from_texts(target: PathBuf, before: &str, after: &str) -> Self {
        Self {
            before: Setting::from_text(&target, before),
            after: Setting::from_text(&target, after),
            target,
        }
    }

    /// The same change undone.
    pub fn reversed(&self) -> Self {
        Self {
            target: self.target.clone(),
            before: self.after.clone(),
            after: self.before.clone(),
        }
    }
}

impl Setting {
    /// The value of the file or property `target` whose text is `text`: how the
    /// enforcement stage types what it read and wrote, and how an old journal's
    /// strings are read. Text that does not parse as what the target holds stays text.
    pub fn from_text(target: &Path, text: &str) -> Self {
        let t = text.trim();
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let typed = match name {
            "cpu.weight" => t.parse().ok().map(|weight| Self::CpuWeight { weight }),
            "cpu.shares" => t.parse().ok().map(|shares| Self::CpuShares { shares }),
            "cpuset.cpus" | "cpuset.cpus.effective" => {
                t.parse().ok().map(|cpus| Self::Cpus { cpus })
            }
            n if n.ends_with("#balloon") => t.parse().ok().map(|bytes| Self::Bytes { bytes }),
            n if n.ends_with("#migrate") => Some(Self::Uri { uri: t.to_owned() }),
            _ => None,
        };
        typed.unwrap_or_else(|| Self::Text { text: t.to_owned() })
    }

    /// The CPU weight on the v2 scale (v1 shares converted as systemd does).
    pub fn weight(&self) -> Option<u64> {
        match self {
            Self::CpuWeight { weight } => Some(*weight),
            Self::CpuShares { shares } => Some(shares_to_weight(*shares)),
            _ => None,
        }
    }

    pub fn cpus(&self) -> Option<&CpuList> {
        match self {
            Self::Cpus { cpus } => Some(cpus),
            _ => None,
        }
    }

    pub fn bytes(&self) -> Option<u64> {
        match self {
            Self::Bytes { bytes } => Some(*bytes),
            _ => None,
        }
    }
}

impl fmt::Display for Setting {
    /// As the file or property holds it: `100`, `0-3`, `536870912`, a URI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CpuWeight { weight } => write!(f, "{weight}"),
            Self::CpuShares { shares } => write!(f, "{shares}"),
            Self::Cpus { cpus } => write!(f, "{cpus}"),
            Self::Bytes { bytes } => write!(f, "{bytes}"),
            Self::Uri { uri } => f.write_str(uri),
            Self::Text { text } => f.write_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for Effect {
    /// Typed settings, or (journals of format 1) the strings they were, typed here by
    /// their target.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Typed(Setting),
            Text(String),
        }
        #[derive(Deserialize)]
        struct Raw {
            target: PathBuf,
            before: Stored,
            after: Stored,
        }
        let raw = Raw::deserialize(d)?;
        let typed = |s: Stored| match s {
            Stored::Typed(s) => s,
            Stored::Text(t) => Setting::from_text(&raw.target, &t),
        };
        Ok(Self {
            before: typed(raw.before),
            after: typed(raw.after),
            target: raw.target,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_typed_by_their_target() {
        let t = |f: &str, v: &str| Setting::from_text(Path::new(f), v);
        assert_eq!(
            t("/cg/vm/cpu.weight", "100\n"),
            Setting::CpuWeight { weight: 100 }
        );
        assert_eq!(
            t("/cg/vm/cpu.shares", "1024"),
            Setting::CpuShares { shares: 1024 }
        );
        assert_eq!(t("/cg/vm/cpu.shares", "1024").weight(), Some(100));
        assert_eq!(
            t("/cg/vm/cpuset.cpus", "0-1")
                .cpus()
                .map(ToString::to_string),
            Some("0-1".into())
        );
        assert_eq!(
            t("qmp:/run/q.sock#balloon", "536870912").bytes(),
            Some(512 << 20)
        );
        assert_eq!(
            t("/cg/vm/cpu.max", "max 100000"),
            Setting::Text {
                text: "max 100000".into()
            }
        );
        assert_eq!(
            t("/cg/vm/cpu.weight", "junk"),
            Setting::Text {
                text: "junk".into()
            }
        );
    }

    #[test]
    fn old_journals_strings_read_as_typed_settings() {
        let old = r#"{"target":"/cg/vm/cpu.shares","before":"1024","after":"102"}"#;
        let e: Effect = serde_json::from_str(old).unwrap();
        assert_eq!(e.before.weight(), Some(100));
        assert_eq!(e.after, Setting::CpuShares { shares: 102 });
        let new = serde_json::to_string(&e).unwrap();
        assert!(
            new.contains(r#""before":{"kind":"cpu_shares","shares":1024}"#),
            "{new}"
        );
        assert_eq!(serde_json::from_str::<Effect>(&new).unwrap(), e);
    }
}
