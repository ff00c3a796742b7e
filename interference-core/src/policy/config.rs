//! `[policy]`: thresholds, priorities, the ladder and its limits. Every key has a
//! default, so an empty (or absent) `[policy]` table is a working policy. serde refuses
//! unknown keys; [`PolicyConfig::check`] refuses what serde cannot see (an off threshold
//! above its on threshold, a migrate rung without a target, ...).
//!
//! Thresholds are resolved per pair, most specific first (see [`PolicyConfig::thresholds`]):
//! a `[[policy.pairs]]` entry naming both VMs, then the `[policy.tiers.<tier>]` entry of
//! the SLA tier of the VM the policy protects in that pair, then the top-level
//! `on_threshold`/`off_threshold`. Each of the two values falls back separately.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::action::Rung;
use crate::vm::Priority;

/// The whole `[policy]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// A pair whose Contention Score reaches this (0-100) becomes active: mitigation
    /// starts.
    pub on_threshold: f32,
    /// An active pair whose score stays below this for `rollback_after_quiet_ticks`
    /// ticks has its mitigation rolled back. Must be below `on_threshold`.
    pub off_threshold: f32,
    /// Per SLA tier: `[policy.tiers.gold] on_threshold = 30`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tiers: BTreeMap<String, TierThresholds>,
    /// Per VM pair: `[[policy.pairs]] vms = ["web-1", "db-1"]`, `on_threshold = 20`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<PairThresholds>,
    /// SLA tiers whose VMs are priority VMs (besides `priority = "high"`).
    pub priority_tiers: Vec<String>,
    /// The SLA tier of each customer's VMs: `[policy.customer_tiers] acme = "gold"`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub customer_tiers: BTreeMap<String, String>,
    /// Least time between two changes to one VM (humantime: "30s"). Rollbacks are not
    /// held back by it, but they do restart it.
    #[serde(with = "crate::humantime_serde::humantime_duration")]
    pub cooldown: Duration,
    /// At most this many actions (rollbacks included) per tick.
    pub max_actions_per_tick: usize,
    /// An active pair below its off threshold for this many consecutive quiet ticks is
    /// rolled back (see `quiet_demand_ratio` for what makes a tick quiet).
    pub rollback_after_quiet_ticks: u32,
    /// A mitigated pair's tick below its off threshold counts as quiet only when the
    /// cause is gone too: the CPU demand (usage plus run-queue wait, which a weight cut
    /// or a pin does not hide) of the VM the protected one is shielded from is at most
    /// this fraction of its peak since the pair's first rung, or that VM has left. Otherwise the
    /// score is low because the mitigation works, and undoing it would bring the
    /// contention back. With no demand known the score alone decides. 0 < ratio < 1.
    pub quiet_demand_ratio: f64,
    /// An active pair still at or above its on threshold for this many consecutive
    /// ticks after its last rung took effect climbs to the next rung.
    pub escalate_after_ticks: u32,
    /// The rungs the ladder may use, climbed in their fixed order (weight, pin, balloon,
    /// migrate) whatever the order here. `migrate` also needs `[policy.migration]`.
    pub rungs: Vec<Rung>,
    /// cpu.weight (v2 scale 1..10000, kernel default 100) given to the protected VM.
    pub boost_weight: u64,
    /// cpu.weight given to the reduced VM.
    pub cut_weight: u64,
    /// CPUs the protected VM gets when the pair is pinned apart; the reduced VM gets the
    /// rest. Default: half of the host's CPUs, rounded up. Always leaves at least one
    /// CPU to each side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protect_cpus: Option<u32>,
    /// The balloon rung shrinks the reduced VM's memory by this fraction of its current
    /// size (0 < step < 1).
    pub balloon_step: f64,
    /// Never balloon a VM below this (MiB); a VM's own floor, when higher, wins.
    pub balloon_floor_mib: u64,
    pub migration: MigrationConfig,
    /// Decide and report, but mark every action `simulated`: nothing is applied or
    /// billed.
    pub dry_run: bool,
}

/// Thresholds are compared with `==` only in tests and config diffs; `check` refuses
/// non-finite ones, so equality is total on every config the agent runs with.
impl Eq for PolicyConfig {}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            // The nowcast is the share of the victim's runnable time a neighbour took,
            // close to its slowdown in percent: act at a fifth, stand down under a tenth.
            on_threshold: 20.0,
            off_threshold: 10.0,
            tiers: BTreeMap::new(),
            pairs: Vec::new(),
            priority_tiers: vec!["gold".to_owned()],
            customer_tiers: BTreeMap::new(),
            cooldown: Duration::from_secs(30),
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
            migration: MigrationConfig::default(),
            dry_run: false,
        }
    }
}

/// `[policy.tiers.<tier>]`: thresholds for pairs that protect a VM of this SLA tier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierThresholds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_threshold: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_threshold: Option<f32>,
}

/// `[[policy.pairs]]`: thresholds for one pair of VMs (either order).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairThresholds {
    pub vms: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_threshold: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_threshold: Option<f32>,
}

/// `[policy.migration]`: the last rung, live migration of the reduced VM. Off unless
/// enabled with at least one target whose free capacity is declared:
///
/// ```toml
/// [policy.migration]
/// enabled = true
/// [[policy.migration.targets]]
/// name = "host-7"              # optional, for messages
/// uri = "tcp:10.0.0.7:4444"
/// free_vcpus = 16
/// free_memory_mib = 65536
/// ```
///
/// The rung moves a VM to the first target (in this order) that still has room for
/// its vCPUs and memory: the declared free capacity minus what this agent has migrated
/// there already (kept in the agent's policy state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigrationConfig {
    /// Adds `migrate` to the end of the ladder (with at least one target).
    pub enabled: bool,
    /// Destinations, tried in this order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<MigrationTarget>,
    /// Deprecated: the single destination URI of earlier versions, without a capacity.
    /// Still parsed, so configs with migration disabled load as before; with `enabled =
    /// true` it is refused (see [`PolicyConfig::check`]): declare the destination as a
    /// `[[policy.migration.targets]]` entry with its free capacity instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// `[[policy.migration.targets]]`: one destination and what is free there for this
/// agent's VMs. Both capacities are required ([`PolicyConfig::check`] says so with the
/// field's path); they are options here only so that a missing one is reported that way
/// rather than as a bare serde error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationTarget {
    /// For messages; the URI when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// QEMU migration URI of the destination (a QEMU started with `-incoming` on it),
    /// e.g. "tcp:10.0.0.7:4444".
    pub uri: String,
    /// vCPUs free on the destination for VMs migrated there by this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_vcpus: Option<u32>,
    /// Memory (MiB) free on the destination for VMs migrated there by this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_memory_mib: Option<u64>,
}

impl MigrationTarget {
    /// "host-7 (tcp:10.0.0.7:4444)", or the URI alone.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) if !n.is_empty() => format!("{n} ({})", self.uri),
            _ => self.uri.clone(),
        }
    }
}

/// The thresholds in force for one pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub on: f32,
    pub off: f32,
}

/// QEMU's migration URI schemes (qemu-options `-incoming`, QMP `migrate`).
const MIGRATION_SCHEMES: &[&str] = &["tcp:", "unix:", "rdma:", "exec:", "fd:", "file:", "vsock:"];

/// cgroup v2 cpu.weight range.
const WEIGHT_RANGE: std::ops::RangeInclusive<u64> = 1..=10_000;

impl PolicyConfig {
    /// The rungs in climbing order: the enabled ones of `rungs`, plus `migrate` when
    /// migration is enabled with a target.
    pub fn ladder(&self) -> Vec<Rung> {
        let mut ladder: Vec<Rung> = self
            .rungs
            .iter()
            .copied()
            .filter(|r| *r != Rung::Migrate)
            .collect();
        if !self.migration_targets().is_empty() {
            ladder.push(Rung::Migrate);
        }
        ladder.sort();
        ladder.dedup();
        ladder
    }

    /// The migration destinations, in the order they are tried; empty unless
    /// migration is enabled (the migrate rung is usable only with one).
    pub fn migration_targets(&self) -> &[MigrationTarget] {
        if self.migration.enabled {
            &self.migration.targets
        } else {
            &[]
        }
    }

    /// The SLA tier of a VM of `customer` (`customer_tiers`).
    pub fn tier_of(&self, customer: Option<&str>) -> Option<&str> {
        customer
            .and_then(|c| self.customer_tiers.get(c))
            .map(String::as_str)
    }

    /// Whether a VM with this priority and SLA tier is a priority VM.
    pub fn is_priority(&self, priority: Priority, tier: Option<&str>) -> bool {
        priority == Priority::High
            || tier.is_some_and(|t| self.priority_tiers.iter().any(|p| p == t))
    }

    /// The thresholds for the pair `{a, b}` when `protected_tier` is the SLA tier of the
    /// VM the policy would protect: the `[[policy.pairs]]` entry for the pair, else the
    /// tier's entry, else the defaults; on and off fall back separately. (The engine
    /// resolves the same rule through a prepared index; this is the readable version.)
    pub fn thresholds(&self, a: &str, b: &str, protected_tier: Option<&str>) -> Thresholds {
        let pair = self.pairs.iter().rev().find(|p| {
            p.vms.len() == 2
                && ((p.vms[0] == a && p.vms[1] == b) || (p.vms[0] == b && p.vms[1] == a))
        });
        let tier = protected_tier.and_then(|t| self.tiers.get(t));
        let pick = |from_pair: Option<f32>, from_tier: Option<f32>, default: f32| {
            from_pair.or(from_tier).unwrap_or(default)
        };
        Thresholds {
            on: pick(
                pair.and_then(|p| p.on_threshold),
                tier.and_then(|t| t.on_threshold),
                self.on_threshold,
            ),
            off: pick(
                pair.and_then(|p| p.off_threshold),
                tier.and_then(|t| t.off_threshold),
                self.off_threshold,
            ),
        }
    }

    /// What is wrong with the content, as (field path, message); empty when valid.
    /// `PolicyConfig::default()` always is. Paths start with `policy.`.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |field: String, message: String| out.push((field, message));

        check_threshold("policy.on_threshold", self.on_threshold, &mut push);
        check_threshold("policy.off_threshold", self.off_threshold, &mut push);
        if self.off_threshold >= self.on_threshold {
            push(
                "policy.off_threshold".into(),
                format!(
                    "{} must be below on_threshold ({}): the gap between them is what keeps a pair from flapping",
                    self.off_threshold, self.on_threshold
                ),
            );
        }

        for (customer, tier) in &self.customer_tiers {
            if tier.trim().is_empty() {
                push(
                    format!("policy.customer_tiers.{customer}"),
                    "a tier name must not be empty".into(),
                );
            }
        }

        for (tier, t) in &self.tiers {
            let at = format!("policy.tiers.{tier}");
            if tier.is_empty() {
                push(at.clone(), "a tier name must not be empty".into());
            }
            check_override(
                &at,
                t.on_threshold,
                t.off_threshold,
                (self.on_threshold, self.off_threshold),
                &mut push,
            );
        }

        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (i, p) in self.pairs.iter().enumerate() {
            let at = format!("policy.pairs[{i}]");
            match p.vms.as_slice() {
                [a, b] if a.is_empty() || b.is_empty() => {
                    push(format!("{at}.vms"), "VM names must not be empty".into())
                }
                [a, b] if a == b => push(
                    format!("{at}.vms"),
                    format!("names the same VM twice ({a:?}); a pair is two different VMs"),
                ),
                [a, b] => {
                    let key = if a < b {
                        (a.clone(), b.clone())
                    } else {
                        (b.clone(), a.clone())
                    };
                    if let Some(first) = seen.insert(key, i) {
                        push(
                            format!("{at}.vms"),
                            format!(
                                "the pair {a:?}, {b:?} is already listed in policy.pairs[{first}]"
                            ),
                        );
                    }
                }
                other => push(
                    format!("{at}.vms"),
                    format!("must name exactly two VMs, found {}", other.len()),
                ),
            }
            if p.on_threshold.is_none() && p.off_threshold.is_none() {
                push(
                    at.clone(),
                    "sets neither on_threshold nor off_threshold; remove the entry or set one"
                        .into(),
                );
            }
            // A pair entry overrides whatever tier would apply; check it against the
            // defaults and against every tier it could fall back to.
            let mut bases = vec![(self.on_threshold, self.off_threshold)];
            bases.extend(self.tiers.values().map(|t| {
                (
                    t.on_threshold.unwrap_or(self.on_threshold),
                    t.off_threshold.unwrap_or(self.off_threshold),
                )
            }));
            for base in bases {
                if check_override(&at, p.on_threshold, p.off_threshold, base, &mut push) {
                    break;
                }
            }
        }

        for (i, t) in self.priority_tiers.iter().enumerate() {
            if t.is_empty() {
                push(
                    format!("policy.priority_tiers[{i}]"),
                    "a tier name must not be empty".into(),
                );
            }
        }
        if self.max_actions_per_tick == 0 {
            push(
                "policy.max_actions_per_tick".into(),
                "must be at least 1 (to decide without acting, set dry_run = true)".into(),
            );
        }
        if self.rollback_after_quiet_ticks == 0 {
            push(
                "policy.rollback_after_quiet_ticks".into(),
                "must be at least 1 tick".into(),
            );
        }
        if !(self.quiet_demand_ratio > 0.0 && self.quiet_demand_ratio < 1.0) {
            push(
                "policy.quiet_demand_ratio".into(),
                format!(
                    "{} is not a fraction between 0 and 1 (0.5 rolls a mitigation back once the aggressor's CPU demand has halved)",
                    self.quiet_demand_ratio
                ),
            );
        }
        if self.escalate_after_ticks == 0 {
            push(
                "policy.escalate_after_ticks".into(),
                "must be at least 1 tick (a rung needs a tick to show its effect)".into(),
            );
        }

        let mut listed: Vec<Rung> = Vec::new();
        for (i, r) in self.rungs.iter().enumerate() {
            if listed.contains(r) {
                push(
                    format!("policy.rungs[{i}]"),
                    format!("{} is listed twice", rung_name(*r)),
                );
            }
            listed.push(*r);
            if *r == Rung::Migrate && self.migration_targets().is_empty() {
                push(
                    format!("policy.rungs[{i}]"),
                    "migrate needs policy.migration.enabled = true and a [[policy.migration.targets]] entry"
                        .into(),
                );
            }
        }
        if self.ladder().is_empty() {
            push(
                "policy.rungs".into(),
                "no rung is enabled (to decide without acting, set dry_run = true)".into(),
            );
        }

        for (key, value) in [
            ("boost_weight", self.boost_weight),
            ("cut_weight", self.cut_weight),
        ] {
            if !WEIGHT_RANGE.contains(&value) {
                push(
                    format!("policy.{key}"),
                    format!("{value} is outside the cpu.weight range 1..10000"),
                );
            }
        }
        if self.cut_weight >= self.boost_weight {
            push(
                "policy.cut_weight".into(),
                format!(
                    "{} must be below boost_weight ({})",
                    self.cut_weight, self.boost_weight
                ),
            );
        }
        if self.protect_cpus == Some(0) {
            push(
                "policy.protect_cpus".into(),
                "must be at least 1 (leave it out for half of the host's CPUs)".into(),
            );
        }
        if !(self.balloon_step > 0.0 && self.balloon_step < 1.0) {
            push(
                "policy.balloon_step".into(),
                format!(
                    "{} is not a fraction between 0 and 1 (0.25 shrinks by a quarter)",
                    self.balloon_step
                ),
            );
        }
        if self.balloon_floor_mib == 0 {
            push(
                "policy.balloon_floor_mib".into(),
                "must be at least 1 MiB; a guest ballooned to nothing stops".into(),
            );
        }
        check_migration(&self.migration, &mut push);
        out
    }
}

/// `[policy.migration]`: every target needs a URI QEMU accepts and its free capacity;
/// the deprecated single `target` no longer enables anything.
fn check_migration(m: &MigrationConfig, push: &mut impl FnMut(String, String)) {
    let example = "e.g. \"tcp:10.0.0.7:4444\"";
    let uri_problem = |uri: &str| {
        if uri.is_empty() {
            Some(format!(
                "must not be empty: a QEMU migration URI, {example}"
            ))
        } else if !MIGRATION_SCHEMES.iter().any(|s| uri.starts_with(s)) {
            Some(format!(
                "{uri:?} is not a QEMU migration URI (one of {})",
                MIGRATION_SCHEMES.join(", ")
            ))
        } else {
            None
        }
    };
    match &m.target {
        Some(t) if m.enabled && m.targets.is_empty() => push(
            "policy.migration.target".into(),
            format!(
                "no longer enables migration on its own: a VM is only migrated to a target known to have room for it. \
                 Declare the destination as [[policy.migration.targets]] with uri = {t:?}, free_vcpus and free_memory_mib, \
                 and remove target"
            ),
        ),
        Some(_) if m.enabled => push(
            "policy.migration.target".into(),
            "is deprecated and not used: the destinations are policy.migration.targets; remove target".into(),
        ),
        Some(t) => {
            if let Some(problem) = uri_problem(t) {
                push("policy.migration.target".into(), problem);
            }
        }
        None if m.enabled && m.targets.is_empty() => push(
            "policy.migration.targets".into(),
            format!(
                "migration is enabled but no target is declared: add [[policy.migration.targets]] with uri ({example}), \
                 free_vcpus and free_memory_mib (what is free there for the VMs this agent migrates)"
            ),
        ),
        None => {}
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, t) in m.targets.iter().enumerate() {
        let at = format!("policy.migration.targets[{i}]");
        if let Some(problem) = uri_problem(&t.uri) {
            push(format!("{at}.uri"), problem);
        } else if let Some(first) = seen.insert(&t.uri, i) {
            seen.insert(&t.uri, first);
            push(
                format!("{at}.uri"),
                format!(
                    "{:?} is already listed in policy.migration.targets[{first}]; the room left on a target is counted by its URI, so list each once",
                    t.uri
                ),
            );
        }
        if t.name.as_deref() == Some("") {
            push(
                format!("{at}.name"),
                "must not be empty (leave the key out to show the URI)".into(),
            );
        }
        if t.free_vcpus.is_none() {
            push(
                format!("{at}.free_vcpus"),
                "is required: the vCPUs free on this target for the VMs this agent migrates there (a VM only goes where it fits)"
                    .into(),
            );
        }
        if t.free_memory_mib.is_none() {
            push(
                format!("{at}.free_memory_mib"),
                "is required: the memory (MiB) free on this target for the VMs this agent migrates there (a VM only goes where it fits)"
                    .into(),
            );
        }
    }
}

pub fn rung_name(r: Rung) -> &'static str {
    match r {
        Rung::Weight => "weight",
        Rung::Pin => "pin",
        Rung::Balloon => "balloon",
        Rung::Migrate => "migrate",
    }
}

fn check_threshold(field: &str, value: f32, push: &mut impl FnMut(String, String)) {
    if !(0.0..=100.0).contains(&value) {
        push(
            field.to_owned(),
            format!("{value} is outside the Contention Score range 0..100"),
        );
    }
}

/// Checks an override's own values and the pair it makes with `base` (the values it
/// falls back to). Returns true when it reported something.
fn check_override(
    at: &str,
    on: Option<f32>,
    off: Option<f32>,
    base: (f32, f32),
    push: &mut impl FnMut(String, String),
) -> bool {
    let mut reported = false;
    let mut report = |field: String, message: String| {
        reported = true;
        push(field, message);
    };
    if let Some(v) = on {
        check_threshold(&format!("{at}.on_threshold"), v, &mut report);
    }
    if let Some(v) = off {
        check_threshold(&format!("{at}.off_threshold"), v, &mut report);
    }
    let (eff_on, eff_off) = (on.unwrap_or(base.0), off.unwrap_or(base.1));
    if eff_off >= eff_on {
        let (field, message) = match (on, off) {
            (Some(_), Some(_)) => (
                format!("{at}.off_threshold"),
                format!("{eff_off} must be below on_threshold ({eff_on})"),
            ),
            (Some(_), None) => (
                format!("{at}.on_threshold"),
                format!("{eff_on} must be above the off threshold it falls back to ({eff_off}); set off_threshold here too"),
            ),
            _ => (
                format!("{at}.off_threshold"),
                format!("{eff_off} must be below the on threshold it falls back to ({eff_on}); set on_threshold here too"),
            ),
        };
        report(field, message);
    }
    reported
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PolicyConfig, toml::de::Error> {
        toml::from_str(text)
    }

    fn fields(c: &PolicyConfig) -> Vec<String> {
        c.check().into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn empty_table_is_the_default_and_valid() {
        let c = parse("").expect("empty table");
        assert_eq!(c, PolicyConfig::default());
        assert!(c.check().is_empty(), "{:?}", c.check());
        assert_eq!(c.ladder(), vec![Rung::Weight, Rung::Pin, Rung::Balloon]);
        assert_eq!(c.cooldown, Duration::from_secs(30));
    }

    #[test]
    fn default_round_trips_through_toml() {
        let c = PolicyConfig::default();
        let text = toml::to_string(&c).expect("serialise");
        assert!(text.contains("cooldown = \"30s\""), "{text}");
        assert_eq!(parse(&text).expect("parse back"), c);
    }

    #[test]
    fn full_table_parses() {
        let c = parse(
            r#"
            on_threshold = 50
            off_threshold = 30.5
            priority_tiers = ["gold", "platinum"]
            cooldown = "1m"
            max_actions_per_tick = 8
            rollback_after_quiet_ticks = 3
            quiet_demand_ratio = 0.25
            escalate_after_ticks = 1
            rungs = ["pin", "weight"]
            boost_weight = 500
            cut_weight = 50
            protect_cpus = 3
            balloon_step = 0.5
            balloon_floor_mib = 1024
            dry_run = true
            [tiers.gold]
            on_threshold = 30
            off_threshold = 20
            [[pairs]]
            vms = ["web-1", "db-1"]
            on_threshold = 20
            off_threshold = 10
            [migration]
            enabled = true
            [[migration.targets]]
            uri = "tcp:10.0.0.7:4444"
            free_vcpus = 8
            free_memory_mib = 16384
            "#,
        )
        .expect("full table");
        assert!(c.check().is_empty(), "{:?}", c.check());
        assert_eq!(c.ladder(), vec![Rung::Weight, Rung::Pin, Rung::Migrate]);
        assert_eq!(c.cooldown, Duration::from_secs(60));
        assert_eq!(c.off_threshold, 30.5);
        assert_eq!(c.quiet_demand_ratio, 0.25);
        assert!(c.dry_run);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_serde() {
        let e = parse("on_treshold = 3").expect_err("typo");
        assert!(e.to_string().contains("on_treshold"), "{e}");
        let e = parse("cooldown = \"soon\"").expect_err("bad duration");
        assert!(e.to_string().contains("invalid duration"), "{e}");
        let e = parse("rungs = [\"nice\"]").expect_err("unknown rung");
        assert!(e.to_string().contains("nice"), "{e}");
        let e = parse("[tiers.gold]\non = 3").expect_err("unknown tier key");
        assert!(e.to_string().contains("on"), "{e}");
    }

    #[test]
    fn off_must_be_below_on() {
        let c = PolicyConfig {
            on_threshold: 30.0,
            off_threshold: 30.0,
            ..Default::default()
        };
        let problems = c.check();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "policy.off_threshold");
        assert!(
            problems[0].1.contains("must be below on_threshold (30)"),
            "{problems:?}"
        );
    }

    #[test]
    fn thresholds_outside_the_score_range() {
        let c = PolicyConfig {
            on_threshold: 140.0,
            off_threshold: -1.0,
            ..Default::default()
        };
        assert_eq!(
            fields(&c),
            vec!["policy.on_threshold", "policy.off_threshold"]
        );
        let c = PolicyConfig {
            on_threshold: f32::NAN,
            ..Default::default()
        };
        assert!(fields(&c).contains(&"policy.on_threshold".to_owned()));
    }

    #[test]
    fn tier_override_checked_against_what_it_falls_back_to() {
        let mut c = PolicyConfig {
            on_threshold: 40.0,
            off_threshold: 25.0,
            ..PolicyConfig::default()
        };
        c.tiers.insert(
            "gold".into(),
            TierThresholds {
                on_threshold: Some(20.0),
                off_threshold: None,
            },
        );
        let problems = c.check();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "policy.tiers.gold.on_threshold");
        assert!(problems[0].1.contains("falls back to (25)"), "{problems:?}");
        c.tiers.get_mut("gold").expect("gold").off_threshold = Some(10.0);
        assert!(c.check().is_empty(), "{:?}", c.check());
    }

    #[test]
    fn pair_entries_are_checked() {
        let c = PolicyConfig {
            pairs: vec![
                PairThresholds {
                    vms: vec!["a".into()],
                    on_threshold: Some(50.0),
                    off_threshold: None,
                },
                PairThresholds {
                    vms: vec!["a".into(), "a".into()],
                    on_threshold: Some(50.0),
                    off_threshold: None,
                },
                PairThresholds {
                    vms: vec!["a".into(), "b".into()],
                    on_threshold: None,
                    off_threshold: None,
                },
                PairThresholds {
                    vms: vec!["b".into(), "a".into()],
                    on_threshold: None,
                    off_threshold: Some(60.0),
                },
            ],
            ..Default::default()
        };
        let problems = c.check();
        let got: Vec<(&str, &str)> = problems
            .iter()
            .map(|(f, m)| (f.as_str(), m.split(' ').next().unwrap_or("")))
            .collect();
        assert_eq!(
            got,
            vec![
                ("policy.pairs[0].vms", "must"),
                ("policy.pairs[1].vms", "names"),
                ("policy.pairs[2]", "sets"),
                ("policy.pairs[3].vms", "the"),
                ("policy.pairs[3].off_threshold", "60"),
            ],
            "{problems:?}"
        );
        assert!(problems[3].1.contains("policy.pairs[2]"), "{problems:?}");
    }

    #[test]
    fn limits_rungs_weights_balloon_and_migration() {
        let c = PolicyConfig {
            max_actions_per_tick: 0,
            rollback_after_quiet_ticks: 0,
            escalate_after_ticks: 0,
            rungs: vec![Rung::Pin, Rung::Pin, Rung::Migrate],
            boost_weight: 20_000,
            cut_weight: 0,
            protect_cpus: Some(0),
            balloon_step: 1.0,
            balloon_floor_mib: 0,
            ..Default::default()
        };
        assert_eq!(
            fields(&c),
            vec![
                "policy.max_actions_per_tick",
                "policy.rollback_after_quiet_ticks",
                "policy.escalate_after_ticks",
                "policy.rungs[1]",
                "policy.rungs[2]",
                "policy.boost_weight",
                "policy.cut_weight",
                "policy.protect_cpus",
                "policy.balloon_step",
                "policy.balloon_floor_mib",
            ]
        );
        let c = PolicyConfig {
            cut_weight: 1000,
            ..Default::default()
        };
        assert_eq!(fields(&c), vec!["policy.cut_weight"]);
        let c = PolicyConfig {
            rungs: vec![],
            ..Default::default()
        };
        assert_eq!(fields(&c), vec!["policy.rungs"]);
    }

    fn target(uri: &str) -> MigrationTarget {
        MigrationTarget {
            name: None,
            uri: uri.into(),
            free_vcpus: Some(8),
            free_memory_mib: Some(16384),
        }
    }

    fn problems(c: &PolicyConfig) -> Vec<(String, String)> {
        c.check()
    }

    #[test]
    fn migration_targets_parse_as_a_table_array_in_order() {
        let c = parse(
            r#"
            [migration]
            enabled = true
            [[migration.targets]]
            name = "host-7"
            uri = "tcp:10.0.0.7:4444"
            free_vcpus = 16
            free_memory_mib = 65536
            [[migration.targets]]
            uri = "unix:/run/lab/incoming.sock"
            free_vcpus = 2
            free_memory_mib = 1024
            "#,
        )
        .expect("targets");
        assert!(c.check().is_empty(), "{:?}", c.check());
        assert_eq!(
            c.migration_targets(),
            &[
                MigrationTarget {
                    name: Some("host-7".into()),
                    uri: "tcp:10.0.0.7:4444".into(),
                    free_vcpus: Some(16),
                    free_memory_mib: Some(65536),
                },
                MigrationTarget {
                    name: None,
                    uri: "unix:/run/lab/incoming.sock".into(),
                    free_vcpus: Some(2),
                    free_memory_mib: Some(1024),
                },
            ]
        );
        assert_eq!(
            c.migration_targets()[0].label(),
            "host-7 (tcp:10.0.0.7:4444)"
        );
        assert_eq!(c.ladder().last(), Some(&Rung::Migrate));
        // Back through TOML unchanged.
        let text = toml::to_string(&c).expect("serialise");
        assert_eq!(parse(&text).expect("parse back"), c, "{text}");
        // Unknown keys in an entry are refused like everywhere else.
        let e = parse("[[migration.targets]]\nuri = \"tcp:a:1\"\nfree_cpus = 2").expect_err("typo");
        assert!(e.to_string().contains("free_cpus"), "{e}");
    }

    #[test]
    fn migration_enabled_without_targets_is_refused() {
        let mut c = PolicyConfig::default();
        c.migration.enabled = true;
        let p = problems(&c);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "policy.migration.targets");
        assert!(
            p[0].1.starts_with("migration is enabled but no target is declared: add [[policy.migration.targets]] with uri"),
            "{p:?}"
        );
        assert!(p[0].1.contains("free_vcpus and free_memory_mib"), "{p:?}");
        assert_eq!(c.ladder(), vec![Rung::Weight, Rung::Pin, Rung::Balloon]);
        // Listing the rung does not help.
        c.rungs.push(Rung::Migrate);
        assert_eq!(
            fields(&c),
            vec!["policy.rungs[3]", "policy.migration.targets"]
        );
        assert!(
            problems(&c)[0]
                .1
                .contains("[[policy.migration.targets]] entry"),
            "{:?}",
            problems(&c)
        );
    }

    #[test]
    fn legacy_single_target_no_longer_enables_migration() {
        let c = parse("[migration]\nenabled = true\ntarget = \"tcp:10.0.0.7:4444\"")
            .expect("still parses");
        let p = problems(&c);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "policy.migration.target");
        assert!(
            p[0].1.starts_with("no longer enables migration on its own"),
            "{p:?}"
        );
        assert!(
            p[0].1.contains(
                "Declare the destination as [[policy.migration.targets]] with uri = \"tcp:10.0.0.7:4444\", free_vcpus and free_memory_mib, and remove target"
            ),
            "{p:?}"
        );
        // Alongside targets it is refused as unused.
        let mut c = c;
        c.migration.targets.push(target("tcp:10.0.0.7:4444"));
        let p = problems(&c);
        assert_eq!(fields(&c), vec!["policy.migration.target"]);
        assert!(p[0].1.contains("deprecated and not used"), "{p:?}");
        // With migration off, an old config loads as before (its URI still checked).
        let mut c = parse("[migration]\ntarget = \"tcp:10.0.0.7:4444\"").expect("parses");
        assert!(c.check().is_empty(), "{:?}", c.check());
        assert!(c.migration_targets().is_empty());
        c.migration.target = Some("10.0.0.7:4444".into());
        assert!(problems(&c)[0].1.contains("not a QEMU migration URI"));
    }

    #[test]
    fn migration_targets_need_a_uri_and_their_capacity() {
        let mut c = PolicyConfig::default();
        c.migration.enabled = true;
        c.migration.targets = vec![
            MigrationTarget {
                name: Some(String::new()),
                uri: "10.0.0.7:4444".into(),
                free_vcpus: None,
                free_memory_mib: Some(1024),
            },
            MigrationTarget {
                uri: String::new(),
                free_memory_mib: None,
                ..target("")
            },
            target("tcp:10.0.0.8:4444"),
            target("tcp:10.0.0.8:4444"),
        ];
        let p = problems(&c);
        let got: Vec<&str> = p.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            got,
            vec![
                "policy.migration.targets[0].uri",
                "policy.migration.targets[0].name",
                "policy.migration.targets[0].free_vcpus",
                "policy.migration.targets[1].uri",
                "policy.migration.targets[1].free_memory_mib",
                "policy.migration.targets[3].uri",
            ],
            "{p:?}"
        );
        assert!(p[0].1.contains("not a QEMU migration URI"), "{p:?}");
        assert!(
            p[2].1
                .starts_with("is required: the vCPUs free on this target"),
            "{p:?}"
        );
        assert!(p[3].1.starts_with("must not be empty"), "{p:?}");
        assert!(
            p[4].1
                .starts_with("is required: the memory (MiB) free on this target"),
            "{p:?}"
        );
        assert!(
            p[5].1
                .contains("already listed in policy.migration.targets[2]"),
            "{p:?}"
        );
        // A missing capacity in the file is reported by check, not serde.
        let c = parse(
            "[migration]\nenabled = true\n[[migration.targets]]\nuri = \"tcp:a:1\"\nfree_memory_mib = 512",
        )
        .expect("parses");
        assert_eq!(fields(&c), vec!["policy.migration.targets[0].free_vcpus"]);
        // Disabled: the targets are checked but unused.
        let mut c = PolicyConfig::default();
        c.migration.targets.push(target("tcp:10.0.0.7:4444"));
        assert!(c.check().is_empty());
        assert!(c.migration_targets().is_empty());
        assert_eq!(c.ladder(), vec![Rung::Weight, Rung::Pin, Rung::Balloon]);
        c.migration.enabled = true;
        assert_eq!(c.ladder().last(), Some(&Rung::Migrate));
    }

    #[test]
    fn threshold_resolution_pair_then_tier_then_default() {
        let mut c = PolicyConfig {
            on_threshold: 40.0,
            off_threshold: 25.0,
            ..PolicyConfig::default()
        };
        c.tiers.insert(
            "gold".into(),
            TierThresholds {
                on_threshold: Some(30.0),
                off_threshold: Some(15.0),
            },
        );
        c.pairs.push(PairThresholds {
            vms: vec!["b".into(), "a".into()],
            on_threshold: Some(20.0),
            off_threshold: None,
        });
        assert_eq!(
            c.thresholds("x", "y", None),
            Thresholds {
                on: 40.0,
                off: 25.0
            }
        );
        assert_eq!(
            c.thresholds("x", "y", Some("gold")),
            Thresholds {
                on: 30.0,
                off: 15.0
            }
        );
        assert_eq!(
            c.thresholds("x", "y", Some("silver")),
            Thresholds {
                on: 40.0,
                off: 25.0
            }
        );
        // The pair's own on, the tier's off.
        assert_eq!(
            c.thresholds("a", "b", Some("gold")),
            Thresholds {
                on: 20.0,
                off: 15.0
            }
        );
        assert_eq!(
            c.thresholds("a", "b", None),
            Thresholds {
                on: 20.0,
                off: 25.0
            }
        );
    }
}
