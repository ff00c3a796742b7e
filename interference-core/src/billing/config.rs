//! `[billing]`: where the ledger goes, the currency, the price table and the credit
//! ratios. Every key has a default, so an agent with no `[billing]` table bills at the
//! list prices below into [`DEFAULT_LEDGER_DIR`].

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::money::Money;
use crate::humantime_serde::humantime_duration;

/// Where the agent writes the ledger unless `--ledger` or `[billing] ledger_dir` says.
pub const DEFAULT_LEDGER_DIR: &str = "/var/lib/interference/ledger";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// Write the ledger at all (dry runs never do).
    pub enabled: bool,
    /// One JSONL file per billing period (`YYYY-MM.jsonl`) is kept here.
    pub ledger_dir: PathBuf,
    /// ISO 4217 code of every amount.
    pub currency: String,
    /// Ledger lines cover at most this long (aligned on the epoch; must divide a day):
    /// a long mitigation is billed as it goes, not only when it ends.
    #[serde(with = "humantime_duration")]
    pub charge_interval: Duration,
    /// Share of an action's IMC credited to the customer whose resources were used.
    pub credit_ratio: f64,
    /// The same when that VM was the aggressor of the pair (a VM slowed down to stop
    /// it hurting its neighbour earns nothing by default).
    pub aggressor_credit_ratio: f64,
    /// IMC = list cost × (1 + performance_impact_factor × score / 100): the closer the
    /// pair was to hurting, the more the protection is worth.
    pub performance_impact_factor: f64,
    /// Customer billed for VMs that have none in the inventory.
    pub default_customer: String,
    /// While more ledger lines than this wait to be written (the ledger's disk is full
    /// or read-only), the agent applies no new charged mitigation: a broken disk must
    /// not turn into unbounded unbilled work. Mitigations in effect stay until they
    /// would roll back anyway; what they owe stays in the journal until written.
    pub max_unbilled_lines: usize,
    /// Who pays for a mitigation: `protected` (the customer whose VM was protected
    /// pays the IMC; the one whose resources were used is credited) or `reduced` (the
    /// customer of the VM that was reduced pays, as the product's first pseudocode
    /// had it; nobody is credited). Every line says which rule applied.
    pub payer: Payer,
    /// The rule for the mitigations of a protected VM of an SLA tier, where it differs
    /// from `payer` (`[billing.payer_tiers] gold = "protected"`).
    pub payer_tiers: std::collections::BTreeMap<String, Payer>,
    pub prices: PriceTable,
}

/// The billing rule of a mitigation's lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Payer {
    /// The protected VM's customer pays; the good neighbour is credited.
    #[default]
    Protected,
    /// The reduced VM's customer pays; no credit.
    Reduced,
}

impl BillingConfig {
    /// The rule for a mitigation protecting a VM of `tier`.
    pub fn payer_for(&self, tier: Option<&str>) -> Payer {
        tier.and_then(|t| self.payer_tiers.get(t).copied())
            .unwrap_or(self.payer)
    }
}

impl Payer {
    pub fn is_protected(&self) -> bool {
        *self == Self::Protected
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Protected => "protected",
            Self::Reduced => "reduced",
        }
    }

    /// The rule in words, for invoices and explanations.
    pub fn words(self) -> &'static str {
        match self {
            Self::Protected => "the customer of the protected VM pays the mitigation; the customer whose resources were used is credited",
            Self::Reduced => "the customer of the VM that was reduced pays the mitigation; the protected VM's customer pays nothing and nobody is credited",
        }
    }
}

/// List prices per pricing unit, in the billing currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriceTable {
    /// Base price: one vCPU allocated for an hour.
    pub vcpu_hour: f64,
    /// Base price: one GiB of guest memory allocated for an hour.
    pub gib_hour: f64,
    /// Weight rung: one vCPU's CPU priority moved for an hour (scaled by how much of
    /// the weight moved).
    pub cpu_weight_vcpu_hour: f64,
    /// Pin rung: one host CPU taken away from a VM, or reserved for the protected VM,
    /// for an hour.
    pub pinned_cpu_hour: f64,
    /// Balloon rung: one GiB of guest memory ballooned away for an hour.
    pub balloon_gib_hour: f64,
    /// Migrate rung: one live migration.
    pub migration: f64,
}

impl Default for BillingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ledger_dir: PathBuf::from(DEFAULT_LEDGER_DIR),
            currency: "USD".into(),
            charge_interval: Duration::from_secs(3600),
            credit_ratio: 0.8,
            aggressor_credit_ratio: 0.0,
            performance_impact_factor: 0.25,
            default_customer: "unassigned".into(),
            max_unbilled_lines: 64,
            payer: Payer::Protected,
            payer_tiers: std::collections::BTreeMap::new(),
            prices: PriceTable::default(),
        }
    }
}

impl Default for PriceTable {
    fn default() -> Self {
        Self {
            vcpu_hour: 0.04,
            gib_hour: 0.005,
            cpu_weight_vcpu_hour: 0.01,
            pinned_cpu_hour: 0.02,
            balloon_gib_hour: 0.004,
            migration: 0.05,
        }
    }
}

// The f64 fields are checked finite by `check`, so equality is an equivalence in
// every config that loads.
impl Eq for BillingConfig {}

impl BillingConfig {
    /// What serde cannot check, as (field, problem).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let c = &self.currency;
        if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            out.push((
                "billing.currency".into(),
                format!("{c:?} is not an ISO 4217 code (three capital letters, e.g. USD)"),
            ));
        }
        let ms = self.charge_interval.as_millis();
        if ms < 1000 || !ms.is_multiple_of(1000) || !86_400_000u128.is_multiple_of(ms) {
            out.push((
                "billing.charge_interval".into(),
                format!(
                    "{} must be whole seconds that divide a day (e.g. 1h, 15m, 10s), so no ledger line straddles a billing period",
                    humantime::format_duration(self.charge_interval)
                ),
            ));
        }
        for (field, v, max) in [
            ("credit_ratio", self.credit_ratio, 1.0),
            ("aggressor_credit_ratio", self.aggressor_credit_ratio, 1.0),
            (
                "performance_impact_factor",
                self.performance_impact_factor,
                10.0,
            ),
        ] {
            if !(0.0..=max).contains(&v) {
                out.push((
                    format!("billing.{field}"),
                    format!("{v} is outside 0..{max}"),
                ));
            }
        }
        if self.default_customer.trim().is_empty() {
            out.push((
                "billing.default_customer".into(),
                "must not be empty".into(),
            ));
        }
        if self.ledger_dir.as_os_str().is_empty() {
            out.push(("billing.ledger_dir".into(), "must not be empty".into()));
        }
        for (name, v) in self.prices.entries() {
            if !v.is_finite() || v < 0.0 || Money::from_units(v).is_none() {
                out.push((
                    format!("billing.prices.{name}"),
                    format!("{v} is not a price (a finite amount, 0 or more)"),
                ));
            }
        }
        out
    }

    pub fn charge_interval_ms(&self) -> u64 {
        u64::try_from(self.charge_interval.as_millis()).unwrap_or(3_600_000)
    }
}

impl PriceTable {
    fn entries(&self) -> [(&'static str, f64); 6] {
        [
            ("vcpu_hour", self.vcpu_hour),
            ("gib_hour", self.gib_hour),
            ("cpu_weight_vcpu_hour", self.cpu_weight_vcpu_hour),
            ("pinned_cpu_hour", self.pinned_cpu_hour),
            ("balloon_gib_hour", self.balloon_gib_hour),
            ("migration", self.migration),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_bad_values_are_named() {
        assert!(BillingConfig::default().check().is_empty());
        let bad = BillingConfig {
            currency: "usd".into(),
            charge_interval: Duration::from_secs(7),
            credit_ratio: 1.5,
            prices: PriceTable {
                migration: -1.0,
                ..PriceTable::default()
            },
            ..BillingConfig::default()
        };
        let fields: Vec<String> = bad.check().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "billing.currency",
                "billing.charge_interval",
                "billing.credit_ratio",
                "billing.prices.migration"
            ]
        );
    }
}
