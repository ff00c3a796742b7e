//! `/v1/charges` (the customer's FOCUS lines, paged, JSON or CSV) and `/v1/costs`
//! (sums by day, VM or kind).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use interference_core::billing::{LedgerRecord, Money, Period};

use super::extract::ApiQuery;
use super::redacted::redact_rows;
use super::schema::{
    ChargesPage, ChargesQuery, CostGroup, CostSummary, CostsQuery, Error, Format, GroupBy,
};
use super::vms::no_such_vm;
use crate::domain::public_ids::vm_id;
use crate::domain::redact::vm_name;
use crate::middleware::auth::CustomerAuth;
use crate::middleware::error::ApiError;
use crate::state::AppState;
use crate::store::customer::{self, LineFilter};

const DEFAULT_PAGE: i64 = 200;
const MAX_PAGE: i64 = 1000;

pub fn period_param(p: Option<&str>) -> Result<Option<Period>, ApiError> {
    p.map(|s| {
        s.parse::<Period>()
            .map_err(|e| ApiError::BadRequest(format!("period: {e}")))
    })
    .transpose()
}

fn cursor(c: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::BadRequest(format!("cursor {c:?} is not a next_cursor of this API"));
    let (start, id) = c.split_once('.').ok_or_else(bad)?;
    let start: i64 = start.parse().map_err(|_| bad())?;
    if !id.starts_with("ln_") || id.len() > 64 {
        return Err(bad());
    }
    Ok((start, id.to_owned()))
}

/// The FOCUS columns of a CSV page, in this order.
const CSV_COLUMNS: &[&str] = &[
    "x_RecordId",
    "BillingAccountId",
    "BillingCurrency",
    "x_Period",
    "x_Kind",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ResourceId",
    "ResourceName",
    "SkuId",
    "PricingQuantity",
    "PricingUnit",
    "ListUnitPrice",
    "BilledCost",
    "x_ActionId",
    "x_Action",
    "x_Role",
    "x_Neighbor",
    "x_ContentionScore",
    "ChargeDescription",
];

fn csv_cell(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn csv_page(lines: &[serde_json::Value], next: Option<&str>) -> Result<Response, ApiError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let internal = |e: csv::Error| ApiError::Internal(format!("cannot write CSV: {e}"));
    w.write_record(CSV_COLUMNS).map_err(internal)?;
    for l in lines {
        w.write_record(CSV_COLUMNS.iter().map(|c| csv_cell(l.get(*c))))
            .map_err(internal)?;
    }
    let body = w
        .into_inner()
        .map_err(|e| ApiError::Internal(format!("cannot write CSV: {e}")))?;
    let mut response = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response();
    if let Some(n) = next.and_then(|n| n.parse().ok()) {
        response.headers_mut().insert("x-next-cursor", n);
    }
    Ok(response)
}

/// The customer's ledger lines, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/charges", operation_id = "list_charges", tag = "billing",
    security(("bearer" = [])),
    params(ChargesQuery),
    responses(
        (status = 200,
         description = "A page of lines; `format=csv` answers text/csv with the next cursor in `X-Next-Cursor`",
         content((ChargesPage = "application/json"), (String = "text/csv"))),
        (status = 400, body = Error), (status = 401, body = Error),
        (status = 404, body = Error), (status = 429, body = Error),
    ))]
pub async fn charges(
    State(state): State<AppState>,
    CustomerAuth(who): CustomerAuth,
    ApiQuery(q): ApiQuery<ChargesQuery>,
) -> Result<Response, ApiError> {
    let csv = q.format.unwrap_or_default() == Format::Csv;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit {limit}: from 1 to {MAX_PAGE}"
        )));
    }
    let period = period_param(q.period.as_deref())?;
    let places = match q.vm.as_deref() {
        Some(vm) => {
            let p = customer::places(&state.db, &who.customer, vm).await?;
            if p.is_empty() {
                return Err(no_such_vm());
            }
            Some(p)
        }
        None => None,
    };
    let filter = LineFilter {
        period: period.map(|p| p.to_string()),
        kind: q.kind.map(|k| k.as_str().to_owned()),
        places,
        after: q.cursor.as_deref().map(cursor).transpose()?,
        limit: limit + 1,
    };
    let mut rows = customer::lines(&state.db, &who.customer, &filter).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more
        .then(|| {
            rows.last()
                .map(|r| format!("{}.{}", r.charge_start_ms, r.public_id))
        })
        .flatten();
    let records = redact_rows(&state, &who.customer, &rows).await?;
    let lines: Vec<serde_json::Value> = records
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()
        .map_err(|e| ApiError::Internal(format!("cannot write a line: {e}")))?;
    if csv {
        return csv_page(&lines, next.as_deref());
    }
    Ok(Json(ChargesPage {
        lines,
        next_cursor: next,
    })
    .into_response())
}

#[derive(Default)]
struct Sums {
    base: i64,
    charges: i64,
    credits: i64,
    lines: i64,
}

impl Sums {
    fn add(&mut self, kind: &str, nanos: i64, lines: i64) {
        match kind {
            "base" => self.base += nanos,
            "charge" => self.charges += nanos,
            _ => self.credits += nanos,
        }
        self.lines += lines;
    }

    fn group(&self, key: String) -> CostGroup {
        let m = |n: i64| Money::from_nanos(n).to_string();
        CostGroup {
            key,
            base: m(self.base),
            charges: m(self.charges),
            credits: m(self.credits),
            total: m(self.base + self.charges + self.credits),
            lines: self.lines,
        }
    }
}

/// The latest period the customer has lines in, or `period`.
pub async fn chosen_period(
    state: &AppState,
    customer: &str,
    period: Option<Period>,
) -> Result<Period, ApiError> {
    if let Some(p) = period {
        return Ok(p);
    }
    customer::periods(&state.db, customer)
        .await?
        .last()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| ApiError::NotFound("no billing period has lines yet".to_owned()))
}

/// Money of a period summed by day, VM or kind.
#[utoipa::path(get, path = "/v1/costs", operation_id = "cost_summary", tag = "billing",
    security(("bearer" = [])),
    params(CostsQuery),
    responses(
        (status = 200, body = CostSummary),
        (status = 400, body = Error), (status = 401, body = Error),
        (status = 404, body = Error), (status = 429, body = Error),
    ))]
pub async fn costs(
    State(state): State<AppState>,
    CustomerAuth(who): CustomerAuth,
    ApiQuery(q): ApiQuery<CostsQuery>,
) -> Result<Json<CostSummary>, ApiError> {
    let by = q.by.unwrap_or_default();
    let period = chosen_period(&state, &who.customer, period_param(q.period.as_deref())?).await?;
    let rows = customer::costs(&state.db, &who.customer, &period.to_string()).await?;
    let currency = currency(&state, &who.customer, &period).await?;
    let mut groups: BTreeMap<String, Sums> = BTreeMap::new();
    let mut total = Sums::default();
    for r in &rows {
        let key = match by {
            GroupBy::Day => super::redacted::instant(r.day * 86_400_000)[..10].to_owned(),
            GroupBy::Vm => {
                let name = vm_name(&r.resource_id, &r.host_id);
                // Two VMs of one name (on two hosts, different uuids) stay apart.
                let id = vm_id(r.vm_uuid.as_deref(), &who.customer, name);
                format!("{name} ({id})")
            }
            GroupBy::Kind => r.kind.clone(),
        };
        groups
            .entry(key)
            .or_default()
            .add(&r.kind, r.nanos, r.lines);
        total.add(&r.kind, r.nanos, r.lines);
    }
    let t = total.group(String::new());
    Ok(Json(CostSummary {
        period: period.to_string(),
        by: by.as_str().to_owned(),
        currency,
        groups: groups.into_iter().map(|(k, s)| s.group(k)).collect(),
        base: t.base,
        charges: t.charges,
        credits: t.credits,
        total: t.total,
    }))
}

/// The currency of the customer's lines of a period (one line read).
async fn currency(state: &AppState, customer: &str, period: &Period) -> Result<String, ApiError> {
    let filter = LineFilter {
        period: Some(period.to_string()),
        limit: 1,
        ..LineFilter::default()
    };
    let rows = customer::lines(&state.db, customer, &filter).await?;
    let Some(row) = rows.first() else {
        return Err(ApiError::NotFound(format!("no lines in period {period}")));
    };
    let r: LedgerRecord = serde_json::from_str(&row.line).map_err(|e| {
        ApiError::Internal(format!("ledger line {} cannot be read: {e}", row.public_id))
    })?;
    Ok(r.billing_currency)
}
