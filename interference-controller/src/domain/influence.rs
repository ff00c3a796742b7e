//! Whether a customer's priority request fits its SLA tier: pure, so every refusal
//! has one sentence that says which limit and by how much.

use super::fleet_settings::TierLimits;

pub const HOUR_MS: i64 = 3_600_000;
/// The longest one request may ask for.
pub const MAX_REQUEST_HOURS: f64 = 7.0 * 24.0;

/// What the decision looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorityContext<'a> {
    /// The customer's tier and its limits, if the operator gave it one.
    pub tier: Option<(&'a str, &'a TierLimits)>,
    /// Hours of grants already counted against this month.
    pub used_hours: f64,
    /// The VM's grant in force, if any (its end, ms).
    pub active_until_ms: Option<i64>,
    /// VMs on the VM's host, and how many of them are priority VMs by request now.
    pub host_vms: i64,
    pub host_priority_vms: i64,
}

/// The reason, when refused; the grant's `[start, end)` when accepted.
pub fn decide(hours: f64, now_ms: i64, c: &PriorityContext<'_>) -> Result<(i64, i64), String> {
    if !(hours.is_finite() && hours > 0.0 && hours <= MAX_REQUEST_HOURS) {
        return Err(format!(
            "hours {hours}: a request is for more than 0 and at most {MAX_REQUEST_HOURS} hours"
        ));
    }
    let Some((tier, limits)) = c.tier else {
        return Err(
            "your account has no SLA tier that allows priority requests; ask your operator".into(),
        );
    };
    if let Some(until) = c.active_until_ms {
        return Err(format!(
            "this VM is already a priority VM by request until {} (cancel it first to ask again)",
            interference_core::billing::period::rfc3339(u64::try_from(until).unwrap_or(0))
        ));
    }
    let budget = limits.priority_hours_per_month;
    if c.used_hours + hours > budget + 1e-9 {
        return Err(format!(
            "tier {tier} allows {budget} hours of priority requests per month; {:.2} are used, {hours} more would exceed it",
            c.used_hours
        ));
    }
    let share = (c.host_priority_vms + 1) as f64 / c.host_vms.max(1) as f64;
    if share > limits.max_priority_share + 1e-9 {
        return Err(format!(
            "tier {tier} allows priority VMs by request on at most {:.0}% of a host's VMs; this VM's host has {} of {} already",
            limits.max_priority_share * 100.0,
            c.host_priority_vms,
            c.host_vms
        ));
    }
    let end = now_ms + (hours * HOUR_MS as f64).round() as i64;
    Ok((now_ms, end))
}

/// Hours of `[start, end)` intervals inside `[month_start, month_end)`.
pub fn hours_in(month_start: i64, month_end: i64, grants: &[(i64, i64)]) -> f64 {
    grants
        .iter()
        .map(|&(s, e)| (e.min(month_end) - s.max(month_start)).max(0) as f64 / HOUR_MS as f64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gold() -> TierLimits {
        TierLimits {
            priority_hours_per_month: 10.0,
            max_priority_share: 0.5,
        }
    }

    fn ctx(limits: &TierLimits) -> PriorityContext<'_> {
        PriorityContext {
            tier: Some(("gold", limits)),
            used_hours: 0.0,
            active_until_ms: None,
            host_vms: 4,
            host_priority_vms: 0,
        }
    }

    #[test]
    fn a_request_within_the_tier_is_granted_for_its_hours() {
        let g = gold();
        assert_eq!(decide(2.0, 1000, &ctx(&g)), Ok((1000, 1000 + 2 * HOUR_MS)));
    }

    #[test]
    fn each_limit_refuses_with_its_reason() {
        let g = gold();
        let no_tier = PriorityContext {
            tier: None,
            ..ctx(&g)
        };
        assert!(decide(1.0, 0, &no_tier)
            .unwrap_err()
            .contains("no SLA tier"));
        let used = PriorityContext {
            used_hours: 9.5,
            ..ctx(&g)
        };
        let e = decide(1.0, 0, &used).unwrap_err();
        assert!(e.contains("10 hours") && e.contains("9.50"), "{e}");
        let crowded = PriorityContext {
            host_priority_vms: 2,
            ..ctx(&g)
        };
        let e = decide(1.0, 0, &crowded).unwrap_err();
        assert!(e.contains("50%") && e.contains("2 of 4"), "{e}");
        let active = PriorityContext {
            active_until_ms: Some(5),
            ..ctx(&g)
        };
        assert!(decide(1.0, 0, &active).unwrap_err().contains("already"));
        assert!(decide(0.0, 0, &ctx(&g)).unwrap_err().contains("hours 0"));
        assert!(decide(f64::NAN, 0, &ctx(&g)).is_err());
    }

    #[test]
    fn only_the_part_inside_the_month_counts() {
        let m = (10 * HOUR_MS, 20 * HOUR_MS);
        let h = hours_in(
            m.0,
            m.1,
            &[(9 * HOUR_MS, 11 * HOUR_MS), (19 * HOUR_MS, 30 * HOUR_MS)],
        );
        assert!((h - 2.0).abs() < 1e-9, "{h}");
    }
}
