//! A ledger line on the wire, and the columns the controller indexes.
//!
//! This file is the one seam between the agent's ledger and the fleet protocol. A line
//! travels as the agent wrote it to its fsync'd file, byte for byte (a JSON object
//! keyed by its `x_RecordId`), so that the controller's ledger is the union of the
//! agents' files line for line. The controller reads back only the few columns it
//! indexes ([`LedgerColumns`]); when `interference-core` provides the typed
//! `LedgerRecord`, [`LedgerColumns::extract`] becomes a projection of it and nothing
//! else changes.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

/// One ledger line, its JSON text untouched.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LedgerLine(Box<RawValue>);

impl LedgerLine {
    /// A line of a ledger file (without its newline).
    pub fn from_json_line(line: &str) -> Result<Self, LedgerError> {
        let trimmed = line.trim_end_matches(['\n', '\r']);
        if !trimmed.trim_start().starts_with('{') {
            return Err(LedgerError::NotAnObject);
        }
        let raw = RawValue::from_string(trimmed.to_owned()).map_err(LedgerError::Json)?;
        Ok(Self(raw))
    }

    /// The JSON text, exactly as the agent wrote it.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    pub fn record_id(&self) -> Result<String, LedgerError> {
        #[derive(Deserialize)]
        struct Id<'a> {
            #[serde(rename = "x_RecordId", borrow)]
            record_id: Option<Cow<'a, str>>,
        }
        let id: Id<'_> = serde_json::from_str(self.as_str()).map_err(LedgerError::Json)?;
        match id.record_id {
            Some(id) if !id.is_empty() => Ok(id.into_owned()),
            _ => Err(LedgerError::Missing("x_RecordId")),
        }
    }
}

impl fmt::Debug for LedgerLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for LedgerLine {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error("a ledger line is a JSON object")]
    NotAnObject,
    #[error("not a ledger line: {0}")]
    Json(#[source] serde_json::Error),
    #[error("the ledger line has no {0}")]
    Missing(&'static str),
    #[error("{column} {value:?} is not {expected}")]
    Bad {
        column: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// The columns the controller stores beside the line, for invoices, audits and the
/// customer API: who, what, when, how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerColumns {
    pub record_id: String,
    /// `BillingAccountId`: the customer.
    pub customer: String,
    pub resource_id: String,
    /// `x_Host`.
    pub host: String,
    /// `x_Period`, `YYYY-MM`.
    pub period: String,
    /// `x_Kind`: `base`, `charge`, `credit`.
    pub kind: String,
    pub action_id: Option<String>,
    /// `BilledCost` in nano-units of the currency.
    pub billed_cost_nanos: i64,
    pub charge_start_ms: i64,
    pub charge_end_ms: i64,
}

impl LedgerColumns {
    pub fn extract(line: &LedgerLine) -> Result<Self, LedgerError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Indexed<'a> {
            #[serde(rename = "x_RecordId", borrow)]
            record_id: Option<Cow<'a, str>>,
            #[serde(borrow)]
            billing_account_id: Option<Cow<'a, str>>,
            #[serde(borrow)]
            resource_id: Option<Cow<'a, str>>,
            #[serde(rename = "x_Host", borrow)]
            host: Option<Cow<'a, str>>,
            #[serde(rename = "x_Period", borrow)]
            period: Option<Cow<'a, str>>,
            #[serde(rename = "x_Kind", borrow)]
            kind: Option<Cow<'a, str>>,
            #[serde(rename = "x_ActionId", borrow, default)]
            action_id: Option<Cow<'a, str>>,
            billed_cost: Option<f64>,
            #[serde(borrow)]
            charge_period_start: Option<Cow<'a, str>>,
            #[serde(borrow)]
            charge_period_end: Option<Cow<'a, str>>,
        }
        let i: Indexed<'_> = serde_json::from_str(line.as_str()).map_err(LedgerError::Json)?;
        fn need(v: Option<Cow<'_, str>>, column: &'static str) -> Result<String, LedgerError> {
            match v {
                Some(s) if !s.is_empty() => Ok(s.into_owned()),
                _ => Err(LedgerError::Missing(column)),
            }
        }
        let cost = i.billed_cost.ok_or(LedgerError::Missing("BilledCost"))?;
        let billed_cost_nanos = nanos_of_units(cost).ok_or_else(|| LedgerError::Bad {
            column: "BilledCost",
            value: cost.to_string(),
            expected: "an amount within ±9 billion currency units",
        })?;
        let start = need(i.charge_period_start, "ChargePeriodStart")?;
        let end = need(i.charge_period_end, "ChargePeriodEnd")?;
        let period = need(i.period, "x_Period")?;
        if !is_period(&period) {
            return Err(LedgerError::Bad {
                column: "x_Period",
                value: period,
                expected: "a billing period YYYY-MM",
            });
        }
        Ok(Self {
            record_id: need(i.record_id, "x_RecordId")?,
            customer: need(i.billing_account_id, "BillingAccountId")?,
            resource_id: need(i.resource_id, "ResourceId")?,
            host: need(i.host, "x_Host")?,
            kind: need(i.kind, "x_Kind")?,
            action_id: i.action_id.map(Cow::into_owned),
            billed_cost_nanos,
            charge_start_ms: epoch_ms(&start, "ChargePeriodStart")?,
            charge_end_ms: epoch_ms(&end, "ChargePeriodEnd")?,
            period,
        })
    }
}

/// Nano-units of an amount written as a JSON number, rounded half away from zero as
/// the agent's `Money::from_units` does (exact below 2^53 nanos).
fn nanos_of_units(units: f64) -> Option<i64> {
    let nanos = (units * 1e9).round();
    (nanos.is_finite() && nanos.abs() < 9.0e18).then_some(nanos as i64)
}

fn epoch_ms(text: &str, column: &'static str) -> Result<i64, LedgerError> {
    let bad = || LedgerError::Bad {
        column,
        value: text.to_owned(),
        expected: "an RFC 3339 UTC instant",
    };
    let t = humantime::parse_rfc3339_weak(text).map_err(|_| bad())?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| bad())?
        .as_millis();
    i64::try_from(ms).map_err(|_| bad())
}

fn is_period(p: &str) -> bool {
    let b = p.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[5..].iter().all(u8::is_ascii_digit)
        && matches!(
            &p[5..],
            "01" | "02" | "03" | "04" | "05" | "06" | "07" | "08" | "09" | "10" | "11" | "12"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The charge line of docs/billing.md, as the agent writes it (one line).
    pub const DOC_LINE: &str = r#"{"x_RecordId":"vm-5-1/1795658400000/charge","BillingAccountId":"acme","BillingCurrency":"USD","BillingPeriodStart":"2026-11-01T00:00:00.000Z","BillingPeriodEnd":"2026-12-01T00:00:00.000Z","ChargePeriodStart":"2026-11-26T02:02:29.169Z","ChargePeriodEnd":"2026-11-26T02:03:05.156Z","ChargeCategory":"Usage","ResourceId":"vm/prio","PricingQuantity":0.008996750000000001,"BilledCost":9.6942e-05,"x_Host":"vm","x_Period":"2026-11","x_Kind":"charge","x_ActionId":"vm-5-1","x_Action":"cpu_weight","x_ResourceDelta":{"what":"CPU weight","per_hour":0.9},"x_LastSegment":true}"#;

    #[test]
    fn extracts_the_indexed_columns() {
        let line = LedgerLine::from_json_line(DOC_LINE).expect("line");
        let c = LedgerColumns::extract(&line).expect("columns");
        assert_eq!(
            c,
            LedgerColumns {
                record_id: "vm-5-1/1795658400000/charge".into(),
                customer: "acme".into(),
                resource_id: "vm/prio".into(),
                host: "vm".into(),
                period: "2026-11".into(),
                kind: "charge".into(),
                action_id: Some("vm-5-1".into()),
                billed_cost_nanos: 96_942,
                charge_start_ms: 1_795_658_549_169,
                charge_end_ms: 1_795_658_585_156,
            }
        );
        assert_eq!(line.as_str(), DOC_LINE);
    }

    #[test]
    fn negative_credits_round_half_away_from_zero() {
        assert_eq!(nanos_of_units(-7.7554e-05), Some(-77_554));
        assert_eq!(nanos_of_units(0.0000000005), Some(1));
        assert_eq!(nanos_of_units(-0.0000000005), Some(-1));
        assert_eq!(nanos_of_units(f64::NAN), None);
    }

    #[test]
    fn bad_lines_say_what_is_missing() {
        assert!(matches!(
            LedgerLine::from_json_line("[1]"),
            Err(LedgerError::NotAnObject)
        ));
        let line = LedgerLine::from_json_line(r#"{"BilledCost":1}"#).expect("object");
        assert_eq!(
            line.record_id().expect_err("no id").to_string(),
            "the ledger line has no x_RecordId"
        );
        let e = LedgerColumns::extract(&line).expect_err("no columns");
        assert_eq!(e.to_string(), "the ledger line has no ChargePeriodStart");
        let bad = DOC_LINE.replace("2026-11\"", "2026-13\"");
        let e = LedgerColumns::extract(&LedgerLine::from_json_line(&bad).expect("object"))
            .expect_err("bad period");
        assert!(e.to_string().starts_with("x_Period \"2026-13\""), "{e}");
    }
}
