//! One ledger line: a FinOps FOCUS cost row (column names as FOCUS spells them) with
//! our own columns prefixed `x_`. Every line says everything needed to explain it; no
//! line names a VM of another customer than its own (neighbours appear as aliases).

use serde::{Deserialize, Serialize};

use super::config::Payer;
use super::money::Money;
use super::period::Period;
use crate::action::Trigger;

/// FOCUS ChargeCategory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChargeCategory {
    Usage,
    Credit,
    Adjustment,
}

/// What a line bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// Allocation: vCPU-hours or GiB-hours of a VM.
    Base,
    /// Interference Mitigation Cost, paid by the customer whose VM was protected.
    Charge,
    /// Good-neighbour credit, to the customer whose resources were used.
    Credit,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::Charge => "charge",
            Self::Credit => "credit",
        }
    }
}

/// The side of a mitigation this line's VM was on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The VM the action protected (its customer pays).
    Protected,
    /// Its resources were used and it was not the one causing the slowdown.
    GoodNeighbour,
    /// Its resources were used and it was the one causing the slowdown.
    Aggressor,
}

/// What an action changed, in pricing terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceDelta {
    /// e.g. "CPU weight", "CPUs", "memory".
    pub what: String,
    pub before: String,
    pub after: String,
    /// Pricing units per hour while in effect (e.g. 1.8 vCPU of priority); for a
    /// one-off action (migration), the units of the whole action.
    pub per_hour: f64,
    /// How `per_hour` was obtained, in words.
    pub basis: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LedgerRecord {
    /// Unique and idempotent: the same use always gets the same id.
    #[serde(rename = "x_RecordId")]
    pub record_id: String,
    /// The customer.
    pub billing_account_id: String,
    pub billing_currency: String,
    pub billing_period_start: String,
    pub billing_period_end: String,
    pub charge_period_start: String,
    pub charge_period_end: String,
    pub charge_category: ChargeCategory,
    /// "Usage-Based" (time in effect) or "One-Time" (a migration).
    pub charge_frequency: String,
    pub charge_description: String,
    pub service_name: String,
    pub service_category: String,
    pub provider_name: String,
    /// `<host>/<vm>`.
    pub resource_id: String,
    pub resource_name: String,
    pub resource_type: String,
    pub sku_id: String,
    pub pricing_unit: String,
    pub pricing_quantity: f64,
    pub consumed_unit: String,
    pub consumed_quantity: f64,
    pub list_unit_price: Money,
    pub list_cost: Money,
    pub billed_cost: Money,
    pub effective_cost: Money,
    pub contracted_cost: Money,
    #[serde(rename = "x_Host")]
    pub host: String,
    #[serde(rename = "x_Period")]
    pub period: Period,
    #[serde(rename = "x_Kind")]
    pub kind: LineKind,
    #[serde(
        rename = "x_ActionId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub action_id: Option<String>,
    /// cpu_weight, cpuset, balloon, migrate.
    #[serde(rename = "x_Action", default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(rename = "x_Role", default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The other VM of the pair: its name when it is the same customer's, else its
    /// alias for this customer.
    #[serde(
        rename = "x_Neighbor",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub neighbor: Option<String>,
    /// The VM whose resources the action changed (name or alias, as `x_Neighbor`).
    #[serde(
        rename = "x_ChangedVm",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub changed_vm: Option<String>,
    /// `"<victim> slowed by <aggressor>"` (names or aliases, as `x_Neighbor`).
    #[serde(
        rename = "x_Direction",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub direction: Option<String>,
    #[serde(
        rename = "x_ContentionScore",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub contention_score: Option<f32>,
    /// What raised the action's alarm: `now` (the measured score) or `forecast` (the
    /// score expected within the forecast's horizon). On every line of an action.
    #[serde(rename = "x_Trigger", default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// Contention dimensions the score could not see (`llc`, `membw` on a host without
    /// a PMU): the score measured CPU contention only.
    #[serde(
        rename = "x_Unobservable",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub unobservable: Vec<String>,
    #[serde(
        rename = "x_ResourceDelta",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_delta: Option<ResourceDelta>,
    /// The time billed in this line's charge period (less than the period's span when
    /// the host's wall clock stepped forward inside it: see `x_ClockSkippedSeconds`).
    #[serde(rename = "x_DurationSeconds")]
    pub duration_seconds: f64,
    /// Seconds inside the charge period that the host's wall clock stepped over (they
    /// did not pass, so they are not billed).
    #[serde(
        rename = "x_ClockSkippedSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub clock_skipped_seconds: Option<f64>,
    /// 1 + performance_impact_factor × score / 100.
    #[serde(
        rename = "x_ImpactMultiplier",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub impact_multiplier: Option<f64>,
    /// The action's IMC for this segment (a credit is a share of it).
    #[serde(rename = "x_Imc", default, skip_serializing_if = "Option::is_none")]
    pub imc: Option<Money>,
    #[serde(
        rename = "x_CreditRatio",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub credit_ratio: Option<f64>,
    /// The arithmetic of this line, with its numbers.
    #[serde(rename = "x_Formula")]
    pub formula: String,
    /// On the lines of an action's last segment: the action is billed to its end, so
    /// a restarted agent that finds it still in effect (killed between billing and
    /// undoing it) bills nothing more.
    #[serde(rename = "x_LastSegment", default, skip_serializing_if = "is_false")]
    pub last_segment: bool,
    /// The billing rule of an action's line: absent for `protected` (the default, and
    /// every line written before the rule could be chosen), `reduced` otherwise.
    #[serde(
        rename = "x_Payer",
        default,
        skip_serializing_if = "Payer::is_protected"
    )]
    pub payer: Payer,
}

fn is_false(b: &bool) -> bool {
    !b
}
