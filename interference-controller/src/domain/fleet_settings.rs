//! `[fleet]`: the controller's own table, allowed in the fleet-scope document only:
//! fleet-wide caps, placement, and the rollout's rules. Never sent to agents.
//!
//! ```toml
//! [fleet]
//! max_concurrent_migrations = 4
//! max_actions_per_tenant_per_day = 500
//! placement = true
//! reservation_ttl = "2m"
//! [fleet.rollout]
//! canary_share_pct = 10
//! min_stage_duration = "30m"
//! [fleet.tiers.gold]             # customers' SLA tiers (`customers set-tier`)
//! priority_hours_per_month = 48  # priority requests a customer may hold per month
//! max_priority_share = 0.25      # of a host's VMs that may be priority VMs by request
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// Parsed with defaults for every key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetSettings {
    /// Reservations active at once, fleet-wide.
    pub max_concurrent_migrations: u32,
    /// Applied actions per customer per UTC day (None: no cap).
    pub max_actions_per_tenant_per_day: Option<u32>,
    /// Agents ask the controller for migration targets.
    pub placement: bool,
    #[serde(with = "humantime_serde_str")]
    pub reservation_ttl: Duration,
    /// A host is alive for placement if it sent a heartbeat this recently.
    #[serde(with = "humantime_serde_str")]
    pub heartbeat_fresh: Duration,
    pub rollout: RolloutRules,
    /// SLA tiers: what a customer of each may ask for through the customer API.
    pub tiers: BTreeMap<String, TierLimits>,
}

/// What one SLA tier allows its customers to request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierLimits {
    /// Hours of priority requests per customer per calendar month (UTC).
    pub priority_hours_per_month: f64,
    /// Share of a host's VMs (all customers') that may be priority VMs by request at
    /// once, from 0 to 1.
    pub max_priority_share: f64,
}

impl Default for TierLimits {
    fn default() -> Self {
        Self {
            priority_hours_per_month: 0.0,
            max_priority_share: 0.0,
        }
    }
}

/// When a rollout moves on or goes back (see `domain::rollout`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutRules {
    /// Share of hosts (by a stable hash) that act with the candidate in the canary stage.
    pub canary_share_pct: u32,
    /// A stage lasts at least this long before an automatic promotion.
    #[serde(with = "humantime_serde_str")]
    pub min_stage_duration: Duration,
    /// ... and has seen at least this many VM-hours on the candidate.
    pub min_vm_hours: f64,
    /// Promote automatically when the rules hold (else only by hand).
    pub auto_promote: bool,
    /// Roll back when the candidate's figure exceeds the baseline's by this ratio
    /// (each also needs an absolute excess, `min_excess_per_vm_hour`, so that two tiny
    /// numbers do not trigger it).
    pub max_actions_ratio: f64,
    pub max_flap_ratio: f64,
    pub max_victim_wait_ratio: f64,
    pub max_forecast_error_ratio: f64,
    pub min_excess_per_vm_hour: f64,
    /// An action rolled back sooner than this after it was applied counts as a flap.
    #[serde(with = "humantime_serde_str")]
    pub flap_window: Duration,
}

impl Default for FleetSettings {
    fn default() -> Self {
        Self {
            max_concurrent_migrations: 4,
            max_actions_per_tenant_per_day: None,
            placement: true,
            reservation_ttl: Duration::from_secs(120),
            heartbeat_fresh: Duration::from_secs(30),
            rollout: RolloutRules::default(),
            tiers: BTreeMap::new(),
        }
    }
}

impl Default for RolloutRules {
    fn default() -> Self {
        Self {
            canary_share_pct: 10,
            min_stage_duration: Duration::from_secs(30 * 60),
            min_vm_hours: 10.0,
            auto_promote: true,
            max_actions_ratio: 1.5,
            max_flap_ratio: 1.5,
            max_victim_wait_ratio: 1.25,
            max_forecast_error_ratio: 1.2,
            min_excess_per_vm_hour: 0.1,
            flap_window: Duration::from_secs(300),
        }
    }
}

impl FleetSettings {
    /// The `[fleet]` table of a document (defaults when absent), or what is wrong.
    pub fn from_document(text: &str) -> Result<Self, (String, String)> {
        #[derive(Deserialize)]
        struct Outer {
            #[serde(default)]
            fleet: Option<toml::Value>,
        }
        let outer: Outer =
            toml::from_str(text).map_err(|e| (String::new(), e.message().to_owned()))?;
        let Some(value) = outer.fleet else {
            return Ok(Self::default());
        };
        let s: Self = value
            .try_into()
            .map_err(|e: toml::de::Error| ("fleet".to_owned(), e.message().trim().to_owned()))?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), (String, String)> {
        for (name, t) in &self.tiers {
            if !(t.priority_hours_per_month.is_finite() && t.priority_hours_per_month >= 0.0) {
                return Err((
                    format!("fleet.tiers.{name}.priority_hours_per_month"),
                    format!("{} must be 0 or more hours", t.priority_hours_per_month),
                ));
            }
            if !(0.0..=1.0).contains(&t.max_priority_share) {
                return Err((
                    format!("fleet.tiers.{name}.max_priority_share"),
                    format!("{} must be a share from 0 to 1", t.max_priority_share),
                ));
            }
        }
        if self.max_concurrent_migrations == 0 {
            return Err((
                "fleet.max_concurrent_migrations".into(),
                "must be at least 1 (to stop migrations, set placement = false)".into(),
            ));
        }
        if self.rollout.canary_share_pct == 0 || self.rollout.canary_share_pct > 100 {
            return Err((
                "fleet.rollout.canary_share_pct".into(),
                format!(
                    "{} is not a share of hosts in 1..100",
                    self.rollout.canary_share_pct
                ),
            ));
        }
        let r = &self.rollout;
        for (k, v) in [
            ("max_actions_ratio", r.max_actions_ratio),
            ("max_flap_ratio", r.max_flap_ratio),
            ("max_victim_wait_ratio", r.max_victim_wait_ratio),
            ("max_forecast_error_ratio", r.max_forecast_error_ratio),
        ] {
            if !(v.is_finite() && v >= 1.0) {
                return Err((
                    format!("fleet.rollout.{k}"),
                    format!("{v} must be a ratio of at least 1"),
                ));
            }
        }
        if !(r.min_vm_hours.is_finite() && r.min_vm_hours >= 0.0) {
            return Err((
                "fleet.rollout.min_vm_hours".into(),
                "must be 0 or more".into(),
            ));
        }
        Ok(())
    }
}

/// Durations as humantime strings ("2m", "30s").
mod humantime_serde_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(
            FleetSettings::from_document("").expect("empty"),
            FleetSettings::default()
        );
        let s = FleetSettings::from_document(
            "[fleet]\nmax_concurrent_migrations = 2\nreservation_ttl = \"30s\"\n[fleet.rollout]\ncanary_share_pct = 25\n",
        )
        .expect("valid");
        assert_eq!(s.max_concurrent_migrations, 2);
        assert_eq!(s.reservation_ttl, Duration::from_secs(30));
        assert_eq!(s.rollout.canary_share_pct, 25);
        let e =
            FleetSettings::from_document("[fleet]\nmax_migrations = 2\n").expect_err("unknown key");
        assert!(e.1.contains("max_migrations"), "{e:?}");
        let e = FleetSettings::from_document("[fleet.rollout]\ncanary_share_pct = 0\n")
            .expect_err("zero");
        assert_eq!(e.0, "fleet.rollout.canary_share_pct");
    }

    #[test]
    fn tiers_are_read_and_checked() {
        let s = FleetSettings::from_document(
            "[fleet.tiers.gold]\npriority_hours_per_month = 48\nmax_priority_share = 0.25\n",
        )
        .expect("valid");
        assert_eq!(s.tiers["gold"].priority_hours_per_month, 48.0);
        let e = FleetSettings::from_document("[fleet.tiers.gold]\nmax_priority_share = 1.5\n")
            .expect_err("share above 1");
        assert_eq!(e.0, "fleet.tiers.gold.max_priority_share");
    }
}
