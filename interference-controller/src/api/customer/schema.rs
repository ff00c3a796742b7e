//! What the customer API answers, as plain serialisable types with their OpenAPI
//! schemas. Amounts are exact decimal strings in the line's currency (`"0.0125"`);
//! instants are RFC 3339 UTC; every id is the customer's own public id.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Every error: a stable code and a message for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct Error {
    /// `unauthorized`, `not_found`, `bad_request`, `too_many`, `unavailable`, ...
    pub code: String,
    pub message: String,
}

/// One of the customer's VMs.
#[derive(Debug, Serialize, ToSchema)]
pub struct Vm {
    /// The VM's id in this API: its uuid, or (a VM without one) an id derived from its
    /// name.
    pub id: String,
    pub name: String,
    pub uuid: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VmList {
    pub vms: Vec<Vm>,
}

/// A time range; both ends RFC 3339. Default: the last 24 hours; at most 92 days.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Range {
    /// Start (inclusive), RFC 3339, e.g. `2026-12-01T00:00:00Z`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End (exclusive), RFC 3339.
    #[param(format = DateTime)]
    pub to: Option<String>,
}

/// `json` (the default) or `csv`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Csv,
}

/// A ledger line's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Base,
    Charge,
    Credit,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::Charge => "charge",
            Self::Credit => "credit",
        }
    }
}

/// How a cost summary groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Day,
    Vm,
    #[default]
    Kind,
}

impl GroupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Vm => "vm",
            Self::Kind => "kind",
        }
    }
}

/// Five minutes of one VM as its host summed them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Window {
    pub start: String,
    pub seconds: f64,
    /// The highest contention score of any pair the VM was the victim of.
    pub max_score: f64,
    pub cpu_usage_cores: f64,
    /// Mean run-queue wait, ms per second.
    pub run_queue_wait_ms: f64,
    pub actions: i64,
}

/// One pair score: the VM slowed by a neighbour, or slowing one.
#[derive(Debug, Serialize, ToSchema)]
pub struct PairScore {
    pub at: String,
    pub score: f64,
    /// `slowed_by` (the VM waited behind the neighbour) or `slowing`.
    pub direction: String,
    /// The other VM: its name when it is the customer's own, else an alias (`#` and
    /// eight hex digits, the same on every host and for every period).
    pub neighbour: String,
    pub own_neighbour: bool,
}

/// One neighbour's row of the heatmap: the highest score per five minutes.
#[derive(Debug, Serialize, ToSchema)]
pub struct NeighbourRow {
    pub neighbour: String,
    pub own_neighbour: bool,
    pub cells: Vec<Cell>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Cell {
    pub start: String,
    pub max_score: f64,
}

/// A VM's contention over a range.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreTimeline {
    pub vm: Vm,
    pub from: String,
    pub to: String,
    /// The latest pair score in the range where the VM was slowed, if any.
    pub now: Option<PairScore>,
    pub windows: Vec<Window>,
    pub pairs: Vec<PairScore>,
    /// Neighbours over time (slowed-by scores), five-minute cells.
    pub neighbours: Vec<NeighbourRow>,
}

/// One step of an action on its host.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionStep {
    /// `intent`, `done`, `failed`, `rollback`, `outcome`.
    pub phase: String,
    pub at: String,
}

/// An action that touched one of the customer's VMs, as the customer's lines of it say.
#[derive(Debug, Serialize, ToSchema)]
pub struct Action {
    pub id: String,
    /// The customer's VM on the line (protected, or whose resources were used).
    pub vm: String,
    /// `cpu_weight`, `cpuset`, `balloon`, `migrate`.
    pub rung: Option<String>,
    /// `now` (measured) or `forecast`.
    pub trigger: Option<String>,
    /// `protected`, `good_neighbour` or `aggressor`.
    pub role: Option<String>,
    pub neighbour: Option<String>,
    pub score: Option<f64>,
    pub start: String,
    pub end: String,
    pub seconds: f64,
    /// What the customer's lines of the action sum to (negative: a credit).
    pub amount: String,
    pub currency: String,
    /// The action's last step on its host, when the host reported it.
    pub state: Option<String>,
    pub steps: Vec<ActionStep>,
    pub description: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActionList {
    pub actions: Vec<Action>,
}

/// Which lines, and how.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChargesQuery {
    /// Billing period `YYYY-MM`.
    #[param(pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$")]
    pub period: Option<String>,
    /// One VM's lines (its id from `/v1/vms`).
    pub vm: Option<String>,
    #[param(inline)]
    pub kind: Option<Kind>,
    #[param(inline)]
    pub format: Option<Format>,
    /// Lines per page, 1 to 1000 (default 200).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of FOCUS rows (the columns of `interference bill --focus`), redacted: ids are
/// the customer's public ids, neighbours aliases, hosts per-customer tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChargesPage {
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<serde_json::Value>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CostsQuery {
    /// Billing period `YYYY-MM` (default: the latest with lines).
    #[param(pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$")]
    pub period: Option<String>,
    /// `day`, `vm` or `kind` (default `kind`).
    #[param(inline)]
    pub by: Option<GroupBy>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CostGroup {
    /// The day (`YYYY-MM-DD`), the VM's name or the line kind.
    pub key: String,
    pub base: String,
    pub charges: String,
    pub credits: String,
    pub total: String,
    pub lines: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CostSummary {
    pub period: String,
    pub by: String,
    pub currency: String,
    pub groups: Vec<CostGroup>,
    pub base: String,
    pub charges: String,
    pub credits: String,
    pub total: String,
}

/// A billing period in a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PeriodPath {
    /// Billing period `YYYY-MM`.
    #[param(pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$")]
    pub period: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatQuery {
    #[param(inline)]
    pub format: Option<Format>,
}

/// One invoice line: an action's whole time in effect on one side, or a VM's base
/// allocation of one resource.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceLine {
    /// `base`, `charge` or `credit`.
    pub kind: String,
    pub vm: String,
    pub start: String,
    pub end: String,
    pub quantity: f64,
    pub unit: String,
    pub amount: String,
    pub description: String,
    pub action_id: Option<String>,
    /// The ledger lines summed (ids for `/v1/lines/{id}/explain`).
    pub records: Vec<String>,
    /// Who pays a mitigation's line under the provider's billing rule: `protected`
    /// (the protected VM's customer; the good neighbour is credited) or `reduced` (the
    /// reduced VM's customer; nobody is credited).
    pub payer_rule: String,
}

/// The invoice of a period: the numbers `interference bill` prints for it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Invoice {
    pub customer: String,
    pub period: String,
    pub currency: String,
    pub base: String,
    pub interference_charges: String,
    pub credits: String,
    pub total: String,
    pub lines: Vec<InvoiceLine>,
}

/// The other side of an action's line: its kind and amount only, when another
/// customer's.
#[derive(Debug, Serialize, ToSchema)]
pub struct OtherSide {
    pub id: String,
    pub kind: String,
    pub amount: String,
    pub yours: bool,
}

/// The derivation of one line, as `interference explain` prints it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Explanation {
    pub id: String,
    pub text: String,
    pub amount: String,
    /// The amount recomputed from the line's own fields.
    pub recomputed: String,
    pub reconciles: bool,
    pub other_side: Option<OtherSide>,
}

/// What one SLA tier allows.
#[derive(Debug, Serialize, ToSchema)]
pub struct TierView {
    pub name: String,
    pub priority_hours_per_month: f64,
    pub max_priority_share: f64,
}

/// One priority request's grant.
#[derive(Debug, Serialize, ToSchema)]
pub struct Grant {
    pub id: String,
    pub vm: String,
    pub name: String,
    pub start: String,
    pub end: String,
    pub active: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VmPreference {
    pub vm: String,
    pub name: String,
    pub no_donor: bool,
}

/// The customer's settings and what its tier allows.
#[derive(Debug, Serialize, ToSchema)]
pub struct Preferences {
    pub customer: String,
    pub tier: Option<TierView>,
    /// Opted out of being a donor: no VM of the customer's is reduced to protect
    /// another unless it is the pair's aggressor, and none gets a credit.
    pub no_donor: bool,
    /// The monthly cap on interference charges, when set.
    pub monthly_charge_cap: Option<String>,
    /// Interference charges of the current period so far.
    pub charges_this_month: String,
    /// The cap is reached: no new mitigation is charged to you until the period ends.
    pub capped: bool,
    pub priority_hours_used_this_month: f64,
    pub vms: Vec<VmPreference>,
    pub priority: Vec<Grant>,
}

/// A change of the customer's own settings; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesUpdate {
    pub no_donor: Option<bool>,
    /// A decimal amount in the billing currency, or null to remove the cap.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub monthly_charge_cap: Option<Option<String>>,
}

/// Tells a field sent as `null` (Some(None)) from one not sent (None).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmPreferenceUpdate {
    pub no_donor: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriorityRequest {
    /// How long the VM should be a priority VM, from now.
    pub hours: f64,
}

/// The answer to a request that changes how VMs are treated: accepted or not, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct Answer {
    pub accepted: bool,
    pub reason: String,
    pub grant: Option<Grant>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: String,
    pub at: String,
    /// The token that made the request (its id).
    pub token: String,
    pub request: String,
    pub target: String,
    pub accepted: bool,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}
