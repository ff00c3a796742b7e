//! `interference explain`: the full derivation of one ledger line, recomputed from its
//! own fields so a customer (or an auditor) can check it by hand.

use std::fmt::Write as _;

use super::describe;
use super::money::Money;
use super::period::parse_rfc3339;
use super::record::{LedgerRecord, LineKind, Role};
use crate::action::Trigger;

/// Whether the line's amount follows from its own fields (to rounding).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    pub recomputed: Money,
    pub reconciles: bool,
}

/// Recompute the amount from quantity, unit price, impact multiplier and ratio.
pub fn check(r: &LedgerRecord) -> Check {
    let list = r.pricing_quantity * r.list_unit_price.units();
    let recomputed = match r.kind {
        LineKind::Base => Money::from_units(list),
        LineKind::Charge => Money::from_units(list * r.impact_multiplier.unwrap_or(1.0)),
        LineKind::Credit => r.imc.map(|imc| -imc.scale(r.credit_ratio.unwrap_or(0.0))),
    }
    .unwrap_or(Money::ZERO);
    // The unit price is stored rounded to the nano: allow that rounding times the
    // quantity, plus the line's own rounding.
    let tolerance =
        (r.pricing_quantity.abs() * 1.0e-9 * r.impact_multiplier.unwrap_or(1.0) + 2.0e-9) * 1.0e9;
    let reconciles = (recomputed.nanos() - r.billed_cost.nanos()).abs() as f64 <= tolerance;
    Check {
        recomputed,
        reconciles,
    }
}

/// The derivation of `r`; `other_side` is the same action's line on the other side
/// for the same segment, when found (its customer is never named).
pub fn explain(r: &LedgerRecord, other_side: Option<&LedgerRecord>) -> String {
    let mut s = String::new();
    let cur = &r.billing_currency;
    let w = &mut s;
    let _ = writeln!(w, "Record      {}", r.record_id);
    let _ = writeln!(
        w,
        "Customer    {}   VM {} ({})   billing period {}",
        r.billing_account_id, r.resource_name, r.resource_id, r.period
    );
    let _ = writeln!(
        w,
        "Line        {} ({:?}, SKU {}, {})",
        r.kind.as_str(),
        r.charge_category,
        r.sku_id,
        r.charge_frequency
    );
    let secs = match (
        parse_rfc3339(&r.charge_period_start),
        parse_rfc3339(&r.charge_period_end),
    ) {
        (Some(a), Some(b)) => (b.saturating_sub(a)) as f64 / 1000.0,
        _ => r.duration_seconds,
    };
    let _ = writeln!(
        w,
        "When        {} → {} ({})",
        r.charge_period_start,
        r.charge_period_end,
        describe::duration(secs)
    );
    if let Some(skipped) = r.clock_skipped_seconds {
        let _ = writeln!(
            w,
            "Clock       set forward by {} inside this period: billed {}",
            describe::duration(skipped),
            describe::duration(r.duration_seconds)
        );
    }
    let _ = writeln!(w, "In words    {}", r.charge_description);
    if let (Some(action_id), Some(action)) = (&r.action_id, &r.action) {
        let _ = writeln!(
            w,
            "Why         {}, contention score {:.1}",
            r.direction.as_deref().unwrap_or("?"),
            r.contention_score.unwrap_or(0.0)
        );
        if r.trigger == Some(Trigger::Forecast) {
            let _ = writeln!(
                w,
                "Trigger     forecast: the contention was expected within the forecast's horizon, \
                 not measured yet; only a cpu.weight change may start on a forecast, and it is \
                 rolled back if the contention does not come"
            );
        }
        if !r.unobservable.is_empty() {
            let _ = writeln!(
                w,
                "Not seen    {}: this host has no hardware counters, so the score measured CPU contention only",
                r.unobservable.join(", ")
            );
        }
        let role = match r.role {
            Some(Role::Protected) => "the protected VM: its customer pays the IMC",
            Some(Role::GoodNeighbour) => "a good neighbour whose resources were used: credited",
            Some(Role::Aggressor) => {
                "the VM causing the slowdown, whose resources were used: aggressor credit ratio"
            }
            None => "?",
        };
        let _ = writeln!(w, "Role        {role}");
        let _ = writeln!(w, "Rule        {}: {}", r.payer.as_str(), r.payer.words());
        let _ = writeln!(
            w,
            "Action      {action_id}: {action} on {}",
            r.changed_vm.as_deref().unwrap_or("?")
        );
        if let Some(d) = &r.resource_delta {
            let _ = writeln!(
                w,
                "Change      {} {} → {}: {}",
                d.what, d.before, d.after, d.basis
            );
        }
    }
    let _ = writeln!(
        w,
        "Quantity    {:.6} {} (consumed {:.6} {})",
        r.pricing_quantity, r.pricing_unit, r.consumed_quantity, r.consumed_unit
    );
    let _ = writeln!(
        w,
        "Price       {} {cur} per {} (list)   list cost {} {cur}",
        r.list_unit_price, r.pricing_unit, r.list_cost
    );
    if let Some(m) = r.impact_multiplier {
        let _ = writeln!(
            w,
            "Impact      × {m:.6} (1 + performance-impact factor × score / 100)"
        );
    }
    if let Some(imc) = r.imc {
        let _ = writeln!(w, "IMC         {imc} {cur} for this segment");
    }
    if let Some(ratio) = r.credit_ratio {
        let _ = writeln!(w, "Ratio       {ratio} of the IMC is credited");
    }
    let _ = writeln!(w, "Formula     {}", r.formula);
    let _ = writeln!(
        w,
        "Amount      {} {cur} (BilledCost = EffectiveCost)",
        r.billed_cost
    );
    let c = check(r);
    let _ = writeln!(
        w,
        "Check       recomputed from the fields above: {} {cur} — {}",
        c.recomputed,
        if c.reconciles {
            "reconciles"
        } else {
            "DOES NOT reconcile"
        }
    );
    if let Some(o) = other_side {
        let whom = if o.billing_account_id == r.billing_account_id {
            format!("your VM {}", o.resource_name)
        } else {
            "another customer".to_owned()
        };
        let _ = writeln!(
            w,
            "Other side  {} of {} {cur} to {whom} (record {})",
            o.kind.as_str(),
            o.billed_cost,
            o.record_id
        );
    }
    s
}

/// The id of the same action's other line for the same segment.
pub fn other_side_id(r: &LedgerRecord) -> Option<String> {
    let (stem, side) = r.record_id.rsplit_once('/')?;
    let other = match side {
        "charge" => "credit",
        "credit" => "charge",
        _ => return None,
    };
    Some(format!("{stem}/{other}"))
}
