//! `validate_policy`: the seam where the agent's own `[policy]`/`[billing]` check plugs
//! in. Until `interference-core` exists, this file mirrors the agent's tables
//! (interference-user/src/policy/config.rs, billing/config.rs): the same keys, the same
//! defaults, unknown keys refused, and the content checks that matter for a fleet
//! document, reported as `file:line: field: message` like the agent's config errors.
//! When core lands, [`validate_policy`]'s body becomes "parse with core's `Config` and
//! run its `check`", and the mirror below goes.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::locate::{line_by_name, line_of, Locator};
use interference_fleet::wire::FieldError;

/// Checks one document as an agent would load it (`[policy]` and `[billing]` tables;
/// `[fleet]` is the controller's and is checked by `fleet_settings`).
pub fn validate_policy(file: &str, toml_text: &str) -> Result<(), Vec<FieldError>> {
    let doc: Document = toml::from_str(toml_text).map_err(|e| {
        let locator = Locator::new(toml_text);
        let span = e.span();
        let field = match (&span, &locator) {
            (Some(span), Some(l)) => l.field_at(span),
            // No spans: the key serde complains about is in its message.
            _ => e
                .message()
                .split('`')
                .nth(1)
                .filter(|_| e.message().starts_with("unknown field"))
                .unwrap_or_default()
                .to_owned(),
        };
        vec![FieldError {
            file: file.to_owned(),
            line: span.map_or(0, |s| line_of(toml_text, s.start)),
            field,
            message: e.message().trim().to_owned(),
        }]
    })?;
    let mut problems = Vec::new();
    doc.policy.check(&mut problems);
    doc.billing.check(&mut problems);
    if problems.is_empty() {
        return Ok(());
    }
    Err(locate(file, toml_text, problems))
}

/// (field, message) problems located in `text` by their field path.
pub fn locate(file: &str, text: &str, problems: Vec<(String, String)>) -> Vec<FieldError> {
    let locator = Locator::new(text);
    let mut out: Vec<FieldError> = problems
        .into_iter()
        .map(|(field, message)| FieldError {
            file: file.to_owned(),
            line: match &locator {
                Some(l) => l.span_of(&field).map_or(0, |s| line_of(text, s.start)),
                None => line_by_name(text, &field),
            },
            field,
            message,
        })
        .collect();
    out.sort_by_key(|p| if p.line == 0 { u32::MAX } else { p.line });
    out
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Document {
    policy: Policy,
    billing: Billing,
    /// The controller's own table (fleet scope only); checked elsewhere.
    #[allow(
        dead_code,
        reason = "parsed so that it is not an unknown key; checked by fleet_settings"
    )]
    fleet: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Policy {
    on_threshold: f32,
    off_threshold: f32,
    tiers: BTreeMap<String, Thresholds>,
    pairs: Vec<Pair>,
    priority_tiers: Vec<String>,
    customer_tiers: BTreeMap<String, String>,
    cooldown: String,
    max_actions_per_tick: u64,
    rollback_after_quiet_ticks: u64,
    quiet_demand_ratio: f64,
    escalate_after_ticks: u64,
    rungs: Vec<Rung>,
    boost_weight: u64,
    cut_weight: u64,
    protect_cpus: Option<u32>,
    balloon_step: f64,
    balloon_floor_mib: u64,
    migration: Migration,
    dry_run: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            on_threshold: 40.0,
            off_threshold: 25.0,
            tiers: BTreeMap::new(),
            pairs: Vec::new(),
            priority_tiers: vec!["gold".into()],
            customer_tiers: BTreeMap::new(),
            cooldown: "30s".into(),
            max_actions_per_tick: 4,
            rollback_after_quiet_ticks: 6,
            quiet_demand_ratio: 0.5,
            escalate_after_ticks: 2,
            rungs: vec![Rung::Weight, Rung::Pin, Rung::Balloon],
            boost_weight: 1000,
            cut_weight: 10,
            protect_cpus: None,
            balloon_step: 0.25,
            balloon_floor_mib: 512,
            migration: Migration::default(),
            dry_run: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Thresholds {
    on_threshold: Option<f32>,
    off_threshold: Option<f32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pair {
    vms: Vec<String>,
    on_threshold: Option<f32>,
    off_threshold: Option<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Rung {
    Weight,
    Pin,
    Balloon,
    Migrate,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Migration {
    enabled: bool,
    targets: Vec<Target>,
    target: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    name: Option<String>,
    uri: String,
    free_vcpus: Option<u32>,
    free_memory_mib: Option<u64>,
}

const MIGRATION_SCHEMES: &[&str] = &["tcp:", "unix:", "rdma:", "exec:", "fd:", "file:", "vsock:"];

fn threshold(field: String, v: f32, out: &mut Vec<(String, String)>) {
    if !(0.0..=100.0).contains(&v) {
        out.push((
            field,
            format!("{v} is outside the Contention Score range 0..100"),
        ));
    }
}

impl Policy {
    fn check(&self, out: &mut Vec<(String, String)>) {
        threshold("policy.on_threshold".into(), self.on_threshold, out);
        threshold("policy.off_threshold".into(), self.off_threshold, out);
        if self.off_threshold >= self.on_threshold {
            out.push((
                "policy.off_threshold".into(),
                format!(
                    "{} must be below on_threshold ({}): the gap between them is what keeps a pair from flapping",
                    self.off_threshold, self.on_threshold
                ),
            ));
        }
        for (tier, t) in &self.tiers {
            let at = format!("policy.tiers.{tier}");
            self.check_override(&at, t.on_threshold, t.off_threshold, out);
        }
        for (i, p) in self.pairs.iter().enumerate() {
            let at = format!("policy.pairs[{i}]");
            match p.vms.as_slice() {
                [a, b] if a.is_empty() || b.is_empty() => {
                    out.push((format!("{at}.vms"), "VM names must not be empty".into()))
                }
                [a, b] if a == b => out.push((
                    format!("{at}.vms"),
                    format!("names the same VM twice ({a:?}); a pair is two different VMs"),
                )),
                [_, _] => {}
                other => out.push((
                    format!("{at}.vms"),
                    format!("must name exactly two VMs, found {}", other.len()),
                )),
            }
            if p.on_threshold.is_none() && p.off_threshold.is_none() {
                out.push((
                    at.clone(),
                    "sets neither on_threshold nor off_threshold; remove the entry or set one"
                        .into(),
                ));
            }
            self.check_override(&at, p.on_threshold, p.off_threshold, out);
        }
        for (customer, tier) in &self.customer_tiers {
            if tier.trim().is_empty() {
                out.push((
                    format!("policy.customer_tiers.{customer}"),
                    "a tier name must not be empty".into(),
                ));
            }
        }
        for (i, t) in self.priority_tiers.iter().enumerate() {
            if t.is_empty() {
                out.push((
                    format!("policy.priority_tiers[{i}]"),
                    "a tier name must not be empty".into(),
                ));
            }
        }
        if humantime::parse_duration(&self.cooldown).is_err() {
            out.push((
                "policy.cooldown".into(),
                format!(
                    "{:?} is not a duration (e.g. \"30s\", \"1m\")",
                    self.cooldown
                ),
            ));
        }
        for (key, v, why) in [
            (
                "max_actions_per_tick",
                self.max_actions_per_tick,
                "(to decide without acting, set dry_run = true)",
            ),
            (
                "rollback_after_quiet_ticks",
                self.rollback_after_quiet_ticks,
                "tick",
            ),
            (
                "escalate_after_ticks",
                self.escalate_after_ticks,
                "tick (a rung needs a tick to show its effect)",
            ),
        ] {
            if v == 0 {
                out.push((format!("policy.{key}"), format!("must be at least 1 {why}")));
            }
        }
        for (key, v, example) in [
            (
                "quiet_demand_ratio",
                self.quiet_demand_ratio,
                "0.5 rolls a mitigation back once the aggressor's CPU demand has halved",
            ),
            (
                "balloon_step",
                self.balloon_step,
                "0.25 shrinks by a quarter",
            ),
        ] {
            if !(v > 0.0 && v < 1.0) {
                out.push((
                    format!("policy.{key}"),
                    format!("{v} is not a fraction between 0 and 1 ({example})"),
                ));
            }
        }
        let mut listed = Vec::new();
        let migration_usable = self.migration.enabled && !self.migration.targets.is_empty();
        for (i, r) in self.rungs.iter().enumerate() {
            if listed.contains(r) {
                out.push((
                    format!("policy.rungs[{i}]"),
                    format!("{r:?} is listed twice").to_lowercase(),
                ));
            }
            listed.push(*r);
            if *r == Rung::Migrate && !migration_usable {
                out.push((
                    format!("policy.rungs[{i}]"),
                    "migrate needs policy.migration.enabled = true and a [[policy.migration.targets]] entry".into(),
                ));
            }
        }
        if self.rungs.iter().all(|r| *r == Rung::Migrate) && !migration_usable {
            out.push((
                "policy.rungs".into(),
                "no rung is enabled (to decide without acting, set dry_run = true)".into(),
            ));
        }
        for (key, v) in [
            ("boost_weight", self.boost_weight),
            ("cut_weight", self.cut_weight),
        ] {
            if !(1..=10_000).contains(&v) {
                out.push((
                    format!("policy.{key}"),
                    format!("{v} is outside the cpu.weight range 1..10000"),
                ));
            }
        }
        if self.cut_weight >= self.boost_weight {
            out.push((
                "policy.cut_weight".into(),
                format!(
                    "{} must be below boost_weight ({})",
                    self.cut_weight, self.boost_weight
                ),
            ));
        }
        if self.protect_cpus == Some(0) {
            out.push((
                "policy.protect_cpus".into(),
                "must be at least 1 (leave it out for half of the host's CPUs)".into(),
            ));
        }
        if self.balloon_floor_mib == 0 {
            out.push((
                "policy.balloon_floor_mib".into(),
                "must be at least 1 MiB; a guest ballooned to nothing stops".into(),
            ));
        }
        self.check_migration(out);
        let _ = self.dry_run;
    }

    fn check_override(
        &self,
        at: &str,
        on: Option<f32>,
        off: Option<f32>,
        out: &mut Vec<(String, String)>,
    ) {
        if let Some(v) = on {
            threshold(format!("{at}.on_threshold"), v, out);
        }
        if let Some(v) = off {
            threshold(format!("{at}.off_threshold"), v, out);
        }
        let (eff_on, eff_off) = (
            on.unwrap_or(self.on_threshold),
            off.unwrap_or(self.off_threshold),
        );
        if eff_off >= eff_on && (on.is_some() || off.is_some()) {
            let field = if on.is_some() && off.is_none() {
                format!("{at}.on_threshold")
            } else {
                format!("{at}.off_threshold")
            };
            out.push((
                field,
                format!("off threshold {eff_off} must be below on threshold {eff_on}"),
            ));
        }
    }

    fn check_migration(&self, out: &mut Vec<(String, String)>) {
        let m = &self.migration;
        if m.enabled && m.targets.is_empty() {
            out.push((
                "policy.migration.targets".into(),
                "migration is enabled but no target is declared: add [[policy.migration.targets]] with uri, free_vcpus and free_memory_mib".into(),
            ));
        }
        if m.enabled && m.target.is_some() {
            out.push((
                "policy.migration.target".into(),
                "no longer enables migration: declare [[policy.migration.targets]] with their free capacity and remove target".into(),
            ));
        }
        for (i, t) in m.targets.iter().enumerate() {
            let at = format!("policy.migration.targets[{i}]");
            if !MIGRATION_SCHEMES.iter().any(|s| t.uri.starts_with(s)) {
                out.push((
                    format!("{at}.uri"),
                    format!(
                        "{:?} is not a QEMU migration URI (one of {})",
                        t.uri,
                        MIGRATION_SCHEMES.join(", ")
                    ),
                ));
            }
            if t.name.as_deref() == Some("") {
                out.push((
                    format!("{at}.name"),
                    "must not be empty (leave the key out to show the URI)".into(),
                ));
            }
            if t.free_vcpus.is_none() {
                out.push((
                    format!("{at}.free_vcpus"),
                    "is required: the vCPUs free on this target".into(),
                ));
            }
            if t.free_memory_mib.is_none() {
                out.push((
                    format!("{at}.free_memory_mib"),
                    "is required: the memory (MiB) free on this target".into(),
                ));
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Billing {
    enabled: bool,
    ledger_dir: String,
    currency: String,
    charge_interval: String,
    credit_ratio: f64,
    aggressor_credit_ratio: f64,
    performance_impact_factor: f64,
    default_customer: String,
    #[allow(dead_code, reason = "read to check the document; the agent applies it")]
    max_unbilled_lines: usize,
    /// Who pays, and per SLA tier (`interference_core::billing::Payer`: its values are
    /// the agent's, read by the same type).
    #[allow(dead_code, reason = "read to check the document; the agent applies it")]
    payer: interference_core::billing::Payer,
    #[allow(dead_code, reason = "read to check the document; the agent applies it")]
    payer_tiers: std::collections::BTreeMap<String, interference_core::billing::Payer>,
    prices: Prices,
}

impl Default for Billing {
    fn default() -> Self {
        Self {
            enabled: true,
            ledger_dir: "/var/lib/interference/ledger".into(),
            currency: "USD".into(),
            charge_interval: "1h".into(),
            credit_ratio: 0.8,
            aggressor_credit_ratio: 0.0,
            performance_impact_factor: 0.25,
            default_customer: "unassigned".into(),
            max_unbilled_lines: 64,
            payer: Default::default(),
            payer_tiers: Default::default(),
            prices: Prices::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Prices {
    vcpu_hour: f64,
    gib_hour: f64,
    cpu_weight_vcpu_hour: f64,
    pinned_cpu_hour: f64,
    balloon_gib_hour: f64,
    migration: f64,
}

impl Default for Prices {
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

impl Billing {
    fn check(&self, out: &mut Vec<(String, String)>) {
        let _ = self.enabled;
        let c = &self.currency;
        if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            out.push((
                "billing.currency".into(),
                format!("{c:?} is not an ISO 4217 code (three capital letters, e.g. USD)"),
            ));
        }
        match humantime::parse_duration(&self.charge_interval) {
            Ok(d) => {
                let ms = d.as_millis();
                if ms < 1000 || !ms.is_multiple_of(1000) || !86_400_000u128.is_multiple_of(ms) {
                    out.push((
                        "billing.charge_interval".into(),
                        format!("{} must be whole seconds that divide a day (e.g. 1h, 15m, 10s), so no ledger line straddles a billing period", self.charge_interval),
                    ));
                }
            }
            Err(_) => out.push((
                "billing.charge_interval".into(),
                format!("{:?} is not a duration", self.charge_interval),
            )),
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
        if self.ledger_dir.is_empty() {
            out.push(("billing.ledger_dir".into(), "must not be empty".into()));
        }
        let p = &self.prices;
        for (name, v) in [
            ("vcpu_hour", p.vcpu_hour),
            ("gib_hour", p.gib_hour),
            ("cpu_weight_vcpu_hour", p.cpu_weight_vcpu_hour),
            ("pinned_cpu_hour", p.pinned_cpu_hour),
            ("balloon_gib_hour", p.balloon_gib_hour),
            ("migration", p.migration),
        ] {
            if !v.is_finite() || v < 0.0 || v.abs() >= 9.0e9 {
                out.push((
                    format!("billing.prices.{name}"),
                    format!("{v} is not a price (a finite amount, 0 or more)"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match validate_policy("fleet.toml", text) {
            Ok(()) => Vec::new(),
            Err(v) => v.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn empty_and_partial_documents_are_valid() {
        assert!(errors("").is_empty());
        assert!(errors("[policy]\non_threshold = 50\n[billing]\ncredit_ratio = 0.5\n").is_empty());
    }

    #[test]
    fn the_billing_rule_fleet_wide_and_per_tier_is_the_agents() {
        assert!(errors(
            "[billing]\npayer = \"reduced\"\nmax_unbilled_lines = 10\n[billing.payer_tiers]\ngold = \"protected\"\n"
        )
        .is_empty());
        let e = errors("[billing]\npayer = \"nobody\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("nobody"), "{e:?}");
    }

    #[test]
    fn content_problems_name_file_line_and_field() {
        let e = errors("[policy]\non_threshold = 30\noff_threshold = 35\n");
        assert_eq!(
            e,
            ["fleet.toml:3: policy.off_threshold: 35 must be below on_threshold (30): the gap between them is what keeps a pair from flapping"]
        );
        let e = errors(
            "[billing]\ncurrency = \"usd\"\n\n[policy]\ncut_weight = 5000\nboost_weight = 100\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("fleet.toml:2: billing.currency: "),
            "{e:?}"
        );
        assert!(
            e[1].starts_with(
                "fleet.toml:5: policy.cut_weight: 5000 must be below boost_weight (100)"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_keys_and_types_are_refused_with_their_line() {
        let e = errors("[policy]\non_threshold = 50\non_treshold = 3\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("fleet.toml:3: policy.on_treshold: unknown field `on_treshold`"),
            "{e:?}"
        );
        let e = errors("[policy]\nrungs = [\"nice\"]\n");
        assert!(e[0].starts_with("fleet.toml:2: policy.rungs"), "{e:?}");
        let e = errors("[polcy]\n");
        assert!(
            e[0].starts_with("fleet.toml:1: polcy: unknown field"),
            "{e:?}"
        );
        let e = errors("[policy\n");
        assert!(e[0].starts_with("fleet.toml:1: "), "{e:?}");
    }

    #[test]
    fn migration_needs_targets_with_capacity() {
        let e = errors("[policy.migration]\nenabled = true\n");
        assert!(
            e[0].starts_with("fleet.toml:1: policy.migration.targets: migration is enabled"),
            "{e:?}"
        );
        let e = errors("[policy.migration]\nenabled = true\n[[policy.migration.targets]]\nuri = \"10.0.0.1:4444\"\nfree_vcpus = 2\n");
        assert_eq!(e.len(), 2, "{e:?}");
        // A missing key is located at its table's header.
        assert!(
            e[0].starts_with(
                "fleet.toml:3: policy.migration.targets[0].free_memory_mib: is required"
            ),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("fleet.toml:4: policy.migration.targets[0].uri"),
            "{e:?}"
        );
    }
}
