//! What a ledger must look like whatever happened to the agent that wrote it, checked
//! from the ledger files alone (the crash and fault tests' oracle):
//! - no record id twice;
//! - every action's charge lines tile its time: sorted by start, each one starts where
//!   the one before ended, exactly one is marked `x_LastSegment` and it is the latest;
//! - every charge has its credit for the same segment, and no credit is alone;
//! - a VM's base lines of one unit never overlap;
//! - each customer's invoice of each period totals the sum of its lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use interference::billing::period::parse_rfc3339;
use interference::billing::{invoice, ledger, LedgerRecord, LineKind, Money};

/// What the ledger holds, once it passed every check.
#[derive(Debug, Default)]
pub struct LedgerFacts {
    pub records: usize,
    /// Action ids with charge lines.
    pub actions: BTreeSet<String>,
    /// Per action: (first charge start, last charge end), ms.
    pub spans: BTreeMap<String, (u64, u64)>,
}

fn ms(s: &str, what: &str) -> Result<u64, String> {
    parse_rfc3339(s).ok_or_else(|| format!("{what}: {s:?} is not an RFC 3339 instant"))
}

/// Run every check on the ledger in `dir`; the first violation is the error, with the
/// records involved.
pub fn check_ledger(dir: &Path) -> Result<LedgerFacts, String> {
    let contents = ledger::read(dir, None).map_err(|e| e.to_string())?;
    if !contents.bad.is_empty() {
        return Err(format!("unreadable lines: {:?}", contents.bad));
    }
    let records = contents.records;
    let mut ids = BTreeSet::new();
    for r in &records {
        if !ids.insert(r.record_id.as_str()) {
            return Err(format!("record id {} twice", r.record_id));
        }
    }
    let mut facts = LedgerFacts {
        records: records.len(),
        ..LedgerFacts::default()
    };

    // Actions: charges tile, credits pair.
    let mut by_action: BTreeMap<&str, (Vec<&LedgerRecord>, Vec<&LedgerRecord>)> = BTreeMap::new();
    for r in &records {
        let Some(a) = r.action_id.as_deref() else {
            continue;
        };
        let e = by_action.entry(a).or_default();
        match r.kind {
            LineKind::Charge => e.0.push(r),
            LineKind::Credit => e.1.push(r),
            LineKind::Base => return Err(format!("base line {} names an action", r.record_id)),
        }
    }
    for (action, (mut charges, credits)) in by_action {
        if charges.is_empty() {
            return Err(format!("action {action} has credits but no charge"));
        }
        charges.sort_by_key(|c| c.charge_period_start.clone());
        let mut prev_end: Option<u64> = None;
        for c in &charges {
            let (s, e) = (
                ms(&c.charge_period_start, &c.record_id)?,
                ms(&c.charge_period_end, &c.record_id)?,
            );
            if e < s {
                return Err(format!("{} ends before it starts", c.record_id));
            }
            if let Some(p) = prev_end {
                if p != s {
                    return Err(format!(
                        "action {action}: charge {} starts at {} but the previous one ended at {} ({} ms {})",
                        c.record_id,
                        c.charge_period_start,
                        p,
                        s.abs_diff(p),
                        if s > p { "gap" } else { "overlap" }
                    ));
                }
            }
            prev_end = Some(e);
        }
        let last: Vec<usize> = charges
            .iter()
            .enumerate()
            .filter(|(_, c)| c.last_segment)
            .map(|(i, _)| i)
            .collect();
        if last != [charges.len() - 1] {
            return Err(format!(
                "action {action}: x_LastSegment on charges {last:?} of {} (must be exactly the latest): {:?}",
                charges.len(),
                charges.iter().map(|c| &c.record_id).collect::<Vec<_>>()
            ));
        }
        let key = |r: &LedgerRecord| {
            (
                r.charge_period_start.clone(),
                r.charge_period_end.clone(),
                r.last_segment,
            )
        };
        let charge_keys: BTreeSet<_> = charges.iter().map(|c| key(c)).collect();
        let credit_keys: BTreeSet<_> = credits.iter().map(|c| key(c)).collect();
        if charge_keys != credit_keys || credits.len() != charges.len() {
            return Err(format!(
                "action {action}: charges and credits do not pair: charges {charge_keys:?}, credits {credit_keys:?}"
            ));
        }
        let first = ms(&charges[0].charge_period_start, action)?;
        facts
            .spans
            .insert(action.to_owned(), (first, prev_end.unwrap_or(first)));
        facts.actions.insert(action.to_owned());
    }

    // Base lines: per VM and unit, never overlapping.
    // (start, end, record id) per (VM, unit).
    type Spans<'a> = Vec<(u64, u64, &'a str)>;
    let mut base: BTreeMap<(&str, &str), Spans> = BTreeMap::new();
    for r in records.iter().filter(|r| r.kind == LineKind::Base) {
        base.entry((r.resource_id.as_str(), r.pricing_unit.as_str()))
            .or_default()
            .push((
                ms(&r.charge_period_start, &r.record_id)?,
                ms(&r.charge_period_end, &r.record_id)?,
                r.record_id.as_str(),
            ));
    }
    for ((vm, unit), mut spans) in base {
        spans.sort();
        for w in spans.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(format!(
                    "base lines of {vm} ({unit}) overlap: {} and {}",
                    w[0].2, w[1].2
                ));
            }
        }
    }

    // Invoices add up.
    let mut sums: BTreeMap<(&str, interference::billing::Period), Money> = BTreeMap::new();
    for r in &records {
        *sums
            .entry((r.billing_account_id.as_str(), r.period))
            .or_default() += r.billed_cost;
    }
    for ((customer, period), sum) in sums {
        let inv = invoice(dir, &records, customer, Some(period)).map_err(|e| e.to_string())?;
        if inv.total != sum {
            return Err(format!(
                "invoice of {customer} for {period}: total {} but its lines sum to {sum}",
                inv.total
            ));
        }
    }
    Ok(facts)
}
