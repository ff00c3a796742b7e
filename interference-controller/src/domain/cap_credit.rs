//! The credit that keeps a customer's interference charges within its monthly cap.
//!
//! Agents stop charged mitigations for a customer once the controller tells them its
//! cap is reached, but lines already owed (reporting lag, mitigations in force) still
//! arrive. When the period has closed, whatever its charges exceed the cap by is
//! credited back in one adjustment line per pass (a later pass credits what arrived
//! late), each line explaining its own arithmetic.

use interference_core::billing::period::rfc3339;
use interference_core::billing::{ChargeCategory, LedgerRecord, LineKind, Money, Period};

/// The adjustment line crediting `amount` (positive) back to `customer` for `period`.
pub fn cap_credit_line(
    customer: &str,
    period: Period,
    currency: &str,
    charges: Money,
    cap: Money,
    already: Money,
    seq: u32,
) -> Option<LedgerRecord> {
    let over = charges - cap;
    let amount = over - already;
    if amount.nanos() <= 0 {
        return None;
    }
    let start = rfc3339(period.start_ms());
    let end = rfc3339(period.end_ms());
    let credit = -amount;
    let earlier = if already.is_zero() {
        String::new()
    } else {
        format!(", less {already} {currency} credited earlier")
    };
    Some(LedgerRecord {
        payer: Default::default(),
        record_id: format!("controller/charge-cap/{customer}/{period}/{seq}"),
        billing_account_id: customer.to_owned(),
        billing_currency: currency.to_owned(),
        billing_period_start: start.clone(),
        billing_period_end: end.clone(),
        charge_period_start: start,
        charge_period_end: end,
        charge_category: ChargeCategory::Adjustment,
        charge_frequency: "One-Time".into(),
        charge_description: format!(
            "Your interference charges for {period} came to {charges} {currency}, over your monthly cap of {cap} {currency}: \
             mitigations already under way when the cap was reached were still billed, so {amount} {currency} is credited back."
        ),
        service_name: "Interference Mitigation".into(),
        service_category: "Compute".into(),
        provider_name: "interference".into(),
        resource_id: "account".into(),
        resource_name: "account".into(),
        resource_type: "Billing Account".into(),
        sku_id: "imc-charge-cap-credit".into(),
        pricing_unit: "Credit".into(),
        pricing_quantity: 1.0,
        consumed_unit: "Credit".into(),
        consumed_quantity: 1.0,
        list_unit_price: credit,
        list_cost: credit,
        billed_cost: credit,
        effective_cost: credit,
        contracted_cost: credit,
        host: "controller".into(),
        period,
        kind: LineKind::Credit,
        action_id: None,
        action: None,
        role: None,
        neighbor: None,
        changed_vm: None,
        direction: None,
        contention_score: None,
        trigger: None,
        unobservable: Vec::new(),
        resource_delta: None,
        duration_seconds: 0.0,
        clock_skipped_seconds: None,
        impact_multiplier: None,
        imc: Some(amount),
        credit_ratio: Some(1.0),
        formula: format!(
            "credit = −(charges − cap){} = −({charges} − {cap}{}) = {credit} {currency}",
            if already.is_zero() { "" } else { " + earlier credits" },
            if already.is_zero() { String::new() } else { format!(" − {already}") }
        ) + &earlier,
        last_segment: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use interference_core::billing::explain::check;

    #[test]
    fn the_overshoot_is_credited_once_and_late_lines_again() {
        let p: Period = "2026-11".parse().expect("period");
        let m = Money::from_nanos;
        assert!(cap_credit_line("acme", p, "USD", m(900), m(1000), m(0), 1).is_none());
        let l = cap_credit_line("acme", p, "USD", m(1_500), m(1_000), m(0), 1).expect("over");
        assert_eq!(l.billed_cost, m(-500));
        assert!(check(&l).reconciles, "{l:?}");
        assert!(l.charge_description.contains("over your monthly cap"));
        assert!(cap_credit_line("acme", p, "USD", m(1_500), m(1_000), m(500), 2).is_none());
        let late = cap_credit_line("acme", p, "USD", m(1_700), m(1_000), m(500), 2).expect("late");
        assert_eq!(late.billed_cost, m(-200));
        assert_ne!(late.record_id, l.record_id);
    }
}
