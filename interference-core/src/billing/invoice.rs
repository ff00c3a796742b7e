//! Invoices: one customer's ledger lines of one period, summed per reason.
//!
//! An action's segments become one line per side (its whole time in effect); a VM's
//! base segments one line per VM and resource. Totals are sums of the lines, which are
//! sums of ledger amounts: an invoice reconciles with its ledger to the nano.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use super::config::Payer;
use super::describe::{self, Subject};
use super::money::Money;
use super::period::Period;
use super::record::{LedgerRecord, LineKind, Role};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum InvoiceError {
    #[error("no customer {customer:?} in the ledger {dir} (customers with records: {known})")]
    UnknownCustomer {
        customer: String,
        dir: PathBuf,
        known: String,
    },
    #[error("customer {customer:?} has no records for period {period} in {dir} (periods with records for them: {periods})")]
    NoData {
        customer: String,
        period: Period,
        dir: PathBuf,
        periods: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Invoice {
    pub customer: String,
    pub period: Period,
    pub currency: String,
    /// Allocation: vCPU-hours and GiB-hours.
    pub base: Money,
    /// Interference Mitigation Cost of protecting the customer's VMs.
    pub interference_charges: Money,
    /// Good-neighbour credits (negative).
    pub credits: Money,
    pub total: Money,
    pub lines: Vec<InvoiceLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvoiceLine {
    pub kind: LineKind,
    pub vm: String,
    pub start: String,
    pub end: String,
    pub quantity: f64,
    pub unit: String,
    pub amount: Money,
    pub description: String,
    /// The action, for `interference explain` on any of `records`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    pub records: Vec<String>,
    /// Who pays a mitigation's line (`protected` or `reduced`); base lines: protected.
    pub payer: Payer,
}

/// The invoice of `customer` for `period` (default: the latest period with records for
/// them) from `records` (all of a ledger's, as [`super::ledger::read`] returns them).
pub fn invoice(
    dir: &Path,
    records: &[LedgerRecord],
    customer: &str,
    period: Option<Period>,
) -> Result<Invoice, InvoiceError> {
    let mine: Vec<&LedgerRecord> = records
        .iter()
        .filter(|r| r.billing_account_id == customer)
        .collect();
    if mine.is_empty() {
        let mut known: Vec<&str> = records
            .iter()
            .map(|r| r.billing_account_id.as_str())
            .collect();
        known.sort_unstable();
        known.dedup();
        return Err(InvoiceError::UnknownCustomer {
            customer: customer.to_owned(),
            dir: dir.to_path_buf(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    }
    let mut periods: Vec<Period> = mine.iter().map(|r| r.period).collect();
    periods.sort_unstable();
    periods.dedup();
    let period = match period {
        Some(p) => p,
        None => *periods.last().expect("mine is not empty"),
    };
    let lines: Vec<&LedgerRecord> = mine.into_iter().filter(|r| r.period == period).collect();
    if lines.is_empty() {
        return Err(InvoiceError::NoData {
            customer: customer.to_owned(),
            period,
            dir: dir.to_path_buf(),
            periods: periods
                .iter()
                .map(Period::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let currency = lines[0].billing_currency.clone();
    // Group: (kind, action or vm+sku) in first-seen order, segments in time order.
    let mut groups: BTreeMap<(LineKind, String), Vec<&LedgerRecord>> = BTreeMap::new();
    for r in &lines {
        let key = match (&r.kind, &r.action_id) {
            (LineKind::Base, _) | (_, None) => format!("{}/{}", r.resource_name, r.sku_id),
            (_, Some(a)) => a.clone(),
        };
        groups.entry((r.kind, key)).or_default().push(r);
    }
    let mut out: Vec<InvoiceLine> = groups.into_values().map(|g| line(&g)).collect();
    out.sort_by(|a, b| {
        (a.kind, &a.vm, &a.start)
            .partial_cmp(&(b.kind, &b.vm, &b.start))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let sum = |k: LineKind| -> Money { out.iter().filter(|l| l.kind == k).map(|l| l.amount).sum() };
    let (base, charges, credits) = (
        sum(LineKind::Base),
        sum(LineKind::Charge),
        sum(LineKind::Credit),
    );
    Ok(Invoice {
        customer: customer.to_owned(),
        period,
        currency,
        base,
        interference_charges: charges,
        credits,
        total: base + charges + credits,
        lines: out,
    })
}

fn line(g: &[&LedgerRecord]) -> InvoiceLine {
    let mut g: Vec<&LedgerRecord> = g.to_vec();
    g.sort_by(|a, b| a.charge_period_start.cmp(&b.charge_period_start));
    let first = g[0];
    let last = g[g.len() - 1];
    let seconds: f64 = g.iter().map(|r| r.duration_seconds).sum();
    let quantity: f64 = g.iter().map(|r| r.pricing_quantity).sum();
    let amount: Money = g.iter().map(|r| r.billed_cost).sum();
    let description = match first.kind {
        LineKind::Base => {
            let hours = seconds / 3600.0;
            let per_hour = if hours > 0.0 { quantity / hours } else { 0.0 };
            let what = if first.pricing_unit == "GiB-Hours" {
                format!("{per_hour:.2} GiB of memory")
            } else {
                format!("{per_hour:.0} vCPU")
            };
            format!(
                "Your VM {} ran with {what} for {}.",
                first.resource_name,
                describe::duration(seconds)
            )
        }
        // An adjustment (a controller's credit, no action): its own words.
        _ if first.action_id.is_none() => first.charge_description.clone(),
        kind => {
            let neighbour = first.neighbor.clone().unwrap_or_else(|| "?".into());
            let changed = first.changed_vm.clone().unwrap_or_default();
            let subject = if changed == first.resource_name {
                Subject::Own
            } else {
                Subject::Neighbour(&changed)
            };
            let action = first.action.as_deref().unwrap_or("?");
            if first.payer == Payer::Reduced {
                if kind == LineKind::Charge {
                    describe::charge_reduced(
                        &first.resource_name,
                        &neighbour,
                        subject,
                        action,
                        first.resource_delta.as_ref(),
                        seconds,
                        first.contention_score.unwrap_or(0.0),
                    )
                } else {
                    describe::protected_free(
                        &first.resource_name,
                        &neighbour,
                        subject,
                        action,
                        first.resource_delta.as_ref(),
                        seconds,
                    )
                }
            } else if kind == LineKind::Charge {
                describe::charge(
                    &first.resource_name,
                    &neighbour,
                    subject,
                    action,
                    first.resource_delta.as_ref(),
                    seconds,
                    first.contention_score.unwrap_or(0.0),
                )
            } else {
                describe::credit(
                    &first.resource_name,
                    &neighbour,
                    subject,
                    action,
                    first.resource_delta.as_ref(),
                    seconds,
                    first.role.unwrap_or(Role::GoodNeighbour),
                    first.credit_ratio.unwrap_or(0.0),
                )
            }
        }
    };
    InvoiceLine {
        kind: first.kind,
        vm: first.resource_name.clone(),
        start: first.charge_period_start.clone(),
        end: last.charge_period_end.clone(),
        quantity,
        unit: first.pricing_unit.clone(),
        amount,
        description,
        action_id: first.action_id.clone(),
        records: g.iter().map(|r| r.record_id.clone()).collect(),
        payer: first.payer,
    }
}

/// A fixed-width table for a terminal.
pub fn render_table(inv: &Invoice) -> String {
    use std::fmt::Write as _;
    let cur = &inv.currency;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Invoice for customer {}, period {} (amounts in {cur})\n",
        inv.customer, inv.period
    );
    let _ = writeln!(
        s,
        "{:<7} {:<14} {:>14} {:<10} {:>13}  DESCRIPTION",
        "KIND", "VM", "QUANTITY", "UNIT", "AMOUNT"
    );
    for l in &inv.lines {
        let _ = writeln!(
            s,
            "{:<7} {:<14} {:>14.4} {:<10} {:>13.6}  {}",
            l.kind.as_str(),
            l.vm,
            l.quantity,
            l.unit,
            l.amount,
            l.description
        );
    }
    let _ = writeln!(s);
    let mut rules: Vec<Payer> = inv
        .lines
        .iter()
        .filter(|l| l.action_id.is_some())
        .map(|l| l.payer)
        .collect();
    rules.sort_by_key(|p| p.as_str());
    rules.dedup();
    for rule in rules {
        let _ = writeln!(s, "Billing rule ({}): {}.", rule.as_str(), rule.words());
    }
    for (label, m) in [
        ("Base price", inv.base),
        ("Interference charges", inv.interference_charges),
        ("Good-neighbour credits", inv.credits),
        ("Total", inv.total),
    ] {
        let _ = writeln!(s, "{label:<24} {m:>13.6} {cur}");
    }
    s
}

/// One CSV row per invoice line, then one per total.
pub fn render_csv(inv: &Invoice) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "customer",
        "period",
        "kind",
        "vm",
        "start",
        "end",
        "quantity",
        "unit",
        "amount",
        "currency",
        "description",
        "action_id",
        "records",
    ])?;
    let period = inv.period.to_string();
    for l in &inv.lines {
        w.write_record([
            inv.customer.as_str(),
            &period,
            l.kind.as_str(),
            &l.vm,
            &l.start,
            &l.end,
            &format!("{:.6}", l.quantity),
            &l.unit,
            &l.amount.to_string(),
            &inv.currency,
            &l.description,
            l.action_id.as_deref().unwrap_or(""),
            &l.records.join(" "),
        ])?;
    }
    for (kind, m) in [
        ("total_base", inv.base),
        ("total_charges", inv.interference_charges),
        ("total_credits", inv.credits),
        ("total", inv.total),
    ] {
        w.write_record([
            inv.customer.as_str(),
            &period,
            kind,
            "",
            "",
            "",
            "",
            "",
            &m.to_string(),
            &inv.currency,
            "",
            "",
            "",
        ])?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
