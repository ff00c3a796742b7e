//! Model rollouts: a bundle goes shadow -> canary -> fleet, each step by hand or
//! automatically when its measured outcomes are no worse than the baseline's, and back
//! (rolled_back) as soon as they are clearly worse.
//!
//! - **shadow**: the canary share of hosts scores with the candidate beside the acting
//!   model and reports its score events (`shadow = true`); nothing is acted on. Compared:
//!   the candidate's events per VM-hour against the acting model's on the same hosts
//!   (a model that would act far more often than the current one is stopped here).
//! - **canary**: the same share of hosts (a stable hash of host and rollout) acts with
//!   the candidate; the others are the baseline. Compared per VM-hour: actions applied,
//!   flaps (an action rolled back within the flap window), the protected VM's run-queue
//!   wait after an action, and forecast error where a forecast runs.
//! - **fleet**: every host acts with it; the rollout is complete and the previous fleet
//!   model stays on record for a manual rollback.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::fleet_settings::RolloutRules;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Shadow,
    Canary,
    Fleet,
    RolledBack,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shadow => "shadow",
            Self::Canary => "canary",
            Self::Fleet => "fleet",
            Self::RolledBack => "rolled_back",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "shadow" => Self::Shadow,
            "canary" => Self::Canary,
            "fleet" => Self::Fleet,
            "rolled_back" => Self::RolledBack,
            _ => return None,
        })
    }

    /// The stage a promotion moves to.
    pub fn next(self) -> Option<Self> {
        match self {
            Self::Shadow => Some(Self::Canary),
            Self::Canary => Some(Self::Fleet),
            Self::Fleet | Self::RolledBack => None,
        }
    }

    /// Still rolling out (not complete, not rolled back).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Shadow | Self::Canary)
    }
}

/// Whether `host` is in the rollout's share (stable for the rollout's whole life, and
/// different from one rollout to the next, so no host is always first).
pub fn in_share(rollout_id: &str, host: &str, share_pct: u32) -> bool {
    let digest = Sha256::digest(format!("{rollout_id}/{host}").as_bytes());
    let n = u64::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ]);
    n % 100 < u64::from(share_pct.min(100))
}

/// What one side of the comparison did over the stage so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outcomes {
    pub vm_hours: f64,
    /// Actions applied (canary) or score events (shadow).
    pub actions: f64,
    pub flaps: f64,
    pub victim_wait_ms: Option<f64>,
    pub forecast_abs_error: Option<f64>,
}

impl Outcomes {
    fn per_vm_hour(&self, count: f64) -> f64 {
        if self.vm_hours > 0.0 {
            count / self.vm_hours
        } else {
            0.0
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Keep going; why not promoted yet.
    Hold(String),
    Promote(Stage),
    Rollback(String),
}

/// The rules applied to one stage's outcomes.
pub fn evaluate(
    stage: Stage,
    candidate: &Outcomes,
    baseline: &Outcomes,
    rules: &RolloutRules,
    stage_age: Duration,
) -> Decision {
    if !stage.is_active() {
        return Decision::Hold(format!("{} is not rolling out", stage.as_str()));
    }
    // Too little evidence to judge anything either way.
    let enough_to_judge = candidate.vm_hours >= (rules.min_vm_hours / 4.0).max(0.01);
    if enough_to_judge {
        let (c, b) = (
            candidate.per_vm_hour(candidate.actions),
            baseline.per_vm_hour(baseline.actions),
        );
        let what = if stage == Stage::Shadow {
            "score events"
        } else {
            "actions"
        };
        if worse(c, b, rules.max_actions_ratio, rules.min_excess_per_vm_hour) {
            return Decision::Rollback(format!(
                "{what} per VM-hour {c:.3} against the baseline's {b:.3} (more than {}x)",
                rules.max_actions_ratio
            ));
        }
        if stage == Stage::Canary {
            let (c, b) = (
                candidate.per_vm_hour(candidate.flaps),
                baseline.per_vm_hour(baseline.flaps),
            );
            if worse(c, b, rules.max_flap_ratio, rules.min_excess_per_vm_hour) {
                return Decision::Rollback(format!(
                    "flaps per VM-hour {c:.3} against the baseline's {b:.3} (more than {}x)",
                    rules.max_flap_ratio
                ));
            }
            if let (Some(c), Some(b)) = (candidate.victim_wait_ms, baseline.victim_wait_ms) {
                if worse(c, b, rules.max_victim_wait_ratio, 0.0) {
                    return Decision::Rollback(format!(
                        "victim run-queue wait after an action {c:.2} ms/s against the baseline's {b:.2} (more than {}x)",
                        rules.max_victim_wait_ratio
                    ));
                }
            }
            if let (Some(c), Some(b)) = (candidate.forecast_abs_error, baseline.forecast_abs_error)
            {
                if worse(c, b, rules.max_forecast_error_ratio, 0.0) {
                    return Decision::Rollback(format!(
                        "forecast error {c:.3} against the baseline's {b:.3} (more than {}x)",
                        rules.max_forecast_error_ratio
                    ));
                }
            }
        }
    }
    if !rules.auto_promote {
        return Decision::Hold("automatic promotion is off ([fleet.rollout] auto_promote)".into());
    }
    if stage_age < rules.min_stage_duration {
        return Decision::Hold(format!(
            "in {} for {}s of at least {}s",
            stage.as_str(),
            stage_age.as_secs(),
            rules.min_stage_duration.as_secs()
        ));
    }
    if candidate.vm_hours < rules.min_vm_hours {
        return Decision::Hold(format!(
            "{:.2} VM-hours observed on the candidate of at least {}",
            candidate.vm_hours, rules.min_vm_hours
        ));
    }
    match stage.next() {
        Some(next) => Decision::Promote(next),
        None => Decision::Hold("complete".into()),
    }
}

/// `c` exceeds `b` by more than `ratio` times and by more than `min_excess`.
fn worse(c: f64, b: f64, ratio: f64, min_excess: f64) -> bool {
    c > b * ratio && c - b > min_excess
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RolloutRules {
        RolloutRules {
            min_stage_duration: Duration::from_secs(600),
            min_vm_hours: 4.0,
            ..RolloutRules::default()
        }
    }

    fn o(vm_hours: f64, actions: f64, flaps: f64) -> Outcomes {
        Outcomes {
            vm_hours,
            actions,
            flaps,
            ..Outcomes::default()
        }
    }

    #[test]
    fn promotes_after_time_and_evidence_when_no_worse() {
        let old = Duration::from_secs(900);
        let young = Duration::from_secs(60);
        let base = o(40.0, 8.0, 1.0);
        assert_eq!(
            evaluate(Stage::Shadow, &o(10.0, 2.0, 0.0), &base, &rules(), old),
            Decision::Promote(Stage::Canary)
        );
        assert_eq!(
            evaluate(Stage::Canary, &o(10.0, 2.0, 0.0), &base, &rules(), old),
            Decision::Promote(Stage::Fleet)
        );
        assert!(matches!(
            evaluate(Stage::Canary, &o(10.0, 2.0, 0.0), &base, &rules(), young),
            Decision::Hold(_)
        ));
        assert!(
            matches!(evaluate(Stage::Canary, &o(2.0, 0.0, 0.0), &base, &rules(), old), Decision::Hold(m) if m.contains("VM-hours"))
        );
        let manual = RolloutRules {
            auto_promote: false,
            ..rules()
        };
        assert!(matches!(
            evaluate(Stage::Canary, &o(10.0, 2.0, 0.0), &base, &manual, old),
            Decision::Hold(_)
        ));
    }

    #[test]
    fn rolls_back_on_clearly_worse_outcomes() {
        let base = o(40.0, 8.0, 1.0); // 0.2 actions and 0.025 flaps per VM-hour
        let d = evaluate(
            Stage::Canary,
            &o(10.0, 5.0, 0.0),
            &base,
            &rules(),
            Duration::ZERO,
        );
        assert!(
            matches!(&d, Decision::Rollback(m) if m.starts_with("actions per VM-hour 0.500")),
            "{d:?}"
        );
        let d = evaluate(
            Stage::Canary,
            &o(10.0, 2.0, 3.0),
            &base,
            &rules(),
            Duration::ZERO,
        );
        assert!(
            matches!(&d, Decision::Rollback(m) if m.starts_with("flaps")),
            "{d:?}"
        );
        let mut c = o(10.0, 2.0, 0.0);
        c.victim_wait_ms = Some(30.0);
        let mut b = base;
        b.victim_wait_ms = Some(20.0);
        let d = evaluate(Stage::Canary, &c, &b, &rules(), Duration::ZERO);
        assert!(
            matches!(&d, Decision::Rollback(m) if m.starts_with("victim")),
            "{d:?}"
        );
        // Shadow compares score events only.
        let d = evaluate(
            Stage::Shadow,
            &o(10.0, 2.0, 9.0),
            &base,
            &rules(),
            Duration::ZERO,
        );
        assert!(matches!(d, Decision::Hold(_)), "{d:?}");
        // Too little evidence: neither.
        let d = evaluate(
            Stage::Canary,
            &o(0.5, 50.0, 0.0),
            &base,
            &rules(),
            Duration::ZERO,
        );
        assert!(matches!(d, Decision::Hold(_)), "{d:?}");
    }

    #[test]
    fn share_is_stable_and_about_right() {
        let hosts: Vec<String> = (0..2000).map(|i| format!("h{i}")).collect();
        let picked = hosts.iter().filter(|h| in_share("r1", h, 10)).count();
        assert!((150..250).contains(&picked), "{picked}");
        assert!(hosts
            .iter()
            .all(|h| in_share("r1", h, 10) == in_share("r1", h, 10)));
        assert!(hosts.iter().all(|h| in_share("r1", h, 100)));
        let other = hosts
            .iter()
            .filter(|h| in_share("r2", h, 10) != in_share("r1", h, 10))
            .count();
        assert!(other > 100, "a new rollout picks other hosts: {other}");
    }
}
