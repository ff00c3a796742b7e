//! Ledger lines and invoice lines in words a customer understands.

use super::record::{ResourceDelta, Role};

/// Who a sentence talks about: the customer's own VM (`it`) or a neighbour.
pub enum Subject<'a> {
    Own,
    Neighbour(&'a str),
}

/// What the action did, as a clause: "raising its CPU weight 100 → 1000",
/// "pinning neighbour #3f2a9c to CPUs 1". `action` is the `x_Action` value.
fn doing(action: &str, subject: &Subject<'_>, delta: Option<&ResourceDelta>) -> String {
    let (possessive, object) = match subject {
        Subject::Own => ("its".to_owned(), "it".to_owned()),
        Subject::Neighbour(n) => (format!("neighbour {n}'s"), format!("neighbour {n}")),
    };
    let (before, after) = delta.map_or(("?", "?"), |d| (d.before.as_str(), d.after.as_str()));
    match action {
        "cpu_weight" => {
            let verb = if raised(before, after) {
                "raising"
            } else {
                "cutting"
            };
            format!("{verb} {possessive} CPU weight {before} → {after}")
        }
        "cpuset" => format!("pinning {object} to CPUs {after} (was {before})"),
        "balloon" => format!("ballooning {possessive} memory {before} → {after}"),
        "migrate" => format!("live-migrating {object}"),
        other => format!("{other} on {object}"),
    }
}

fn raised(before: &str, after: &str) -> bool {
    match (before.parse::<f64>(), after.parse::<f64>()) {
        (Ok(b), Ok(a)) => a > b,
        _ => false,
    }
}

/// The sentence of a charge: the customer's VM `own` was protected from `neighbour`.
pub fn charge(
    own: &str,
    neighbour: &str,
    changed: Subject<'_>,
    action: &str,
    delta: Option<&ResourceDelta>,
    seconds: f64,
    score: f32,
) -> String {
    let how = doing(action, &changed, delta);
    let time = time_in_effect(action, seconds);
    format!(
        "Your VM {own} was protected from neighbour {neighbour}{time} by {how} (contention score {score:.0})."
    )
}

/// The sentence of a credit: the customer's VM `own` gave way to `neighbour`.
#[allow(clippy::too_many_arguments)]
pub fn credit(
    own: &str,
    neighbour: &str,
    changed: Subject<'_>,
    action: &str,
    delta: Option<&ResourceDelta>,
    seconds: f64,
    role: Role,
    ratio: f64,
) -> String {
    let how = doing(action, &changed, delta);
    let time = time_in_effect(action, seconds);
    let pct = ratio * 100.0;
    match role {
        Role::Aggressor => format!(
            "Your VM {own} was slowing neighbour {neighbour}; to protect it{time}, the agent was {how}. Credit for the VM causing the slowdown: {pct:.0}% of the mitigation cost."
        ),
        _ => format!(
            "Your VM {own} made room for neighbour {neighbour}{time}: the agent was {how}. Good-neighbour credit: {pct:.0}% of the mitigation cost."
        ),
    }
}

/// The charge under the `reduced` rule: the customer's VM `own` was the one reduced
/// (or had its resources used) to protect `neighbour`, and its customer pays.
pub fn charge_reduced(
    own: &str,
    neighbour: &str,
    changed: Subject<'_>,
    action: &str,
    delta: Option<&ResourceDelta>,
    seconds: f64,
    score: f32,
) -> String {
    let how = doing(action, &changed, delta);
    let time = time_in_effect(action, seconds);
    format!(
        "Your VM {own} gave way to neighbour {neighbour}{time}: the agent was {how} (contention score {score:.0}). Under this provider's billing rule the VM that was reduced pays."
    )
}

/// The protected side under the `reduced` rule: protected, at no charge.
pub fn protected_free(
    own: &str,
    neighbour: &str,
    changed: Subject<'_>,
    action: &str,
    delta: Option<&ResourceDelta>,
    seconds: f64,
) -> String {
    let how = doing(action, &changed, delta);
    let time = time_in_effect(action, seconds);
    format!(
        "Your VM {own} was protected from neighbour {neighbour}{time} by {how}, at no charge: under this provider's billing rule the VM that was reduced pays."
    )
}

/// " for 14 min", or nothing for a one-off action (a migration).
fn time_in_effect(action: &str, seconds: f64) -> String {
    if action == "migrate" {
        String::new()
    } else {
        format!(" for {}", duration(seconds))
    }
}

/// "35 s", "14 min", "2 h 5 min", "3 d 4 h".
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=3599 => format!("{} min", (s + 30) / 60),
        3600..=86_399 => {
            let m = (s + 30) / 60;
            match m % 60 {
                0 => format!("{} h", m / 60),
                r => format!("{} h {r} min", m / 60),
            }
        }
        _ => {
            let h = (s + 1800) / 3600;
            match h % 24 {
                0 => format!("{} d", h / 24),
                r => format!("{} d {r} h", h / 24),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(before: &str, after: &str) -> ResourceDelta {
        ResourceDelta {
            what: "CPU weight".into(),
            before: before.into(),
            after: after.into(),
            per_hour: 1.0,
            basis: String::new(),
        }
    }

    #[test]
    fn sentences_read_like_an_invoice() {
        assert_eq!(
            charge(
                "web-1",
                "#3f2a9c",
                Subject::Neighbour("#3f2a9c"),
                "cpu_weight",
                Some(&delta("100", "10")),
                840.0,
                72.4
            ),
            "Your VM web-1 was protected from neighbour #3f2a9c for 14 min by cutting neighbour #3f2a9c's CPU weight 100 → 10 (contention score 72)."
        );
        let c = credit(
            "batch-2",
            "#a1b2c3",
            Subject::Own,
            "cpuset",
            Some(&delta("0-1", "1")),
            7200.0,
            Role::GoodNeighbour,
            0.8,
        );
        assert!(
            c.contains("for 2 h: the agent was pinning it to CPUs 1 (was 0-1)"),
            "{c}"
        );
        assert!(c.ends_with("80% of the mitigation cost."), "{c}");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(35.2), "35 s");
        assert_eq!(duration(3725.0), "1 h 2 min");
        assert_eq!(duration(86_400.0 * 3.0 + 4.0 * 3600.0), "3 d 4 h");
    }
}
