//! `/v1/invoices/{period}` (the numbers of `interference bill`) and
//! `/v1/lines/{id}/explain` (the derivation of `interference explain`), both computed
//! by the same code as the agent's commands, over the customer's redacted lines.

use std::path::Path;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use interference_core::billing::explain::{check, explain as derivation};
use interference_core::billing::invoice::render_csv;
use interference_core::billing::{invoice as build_invoice, LedgerRecord};

use super::charges::period_param;
use super::extract::{ApiPath, ApiQuery};
use super::redacted::{redact_rows, redact_with_other};
use super::schema::{
    Error, Explanation, Format, FormatQuery, Invoice, InvoiceLine, OtherSide, PeriodPath,
};
use crate::middleware::auth::CustomerAuth;
use crate::middleware::error::ApiError;
use crate::state::AppState;
use crate::store::customer::{self, LineFilter};

/// Lines read per query while building an invoice.
const CHUNK: i64 = 5000;

/// Every line of the customer's period, redacted.
async fn period_lines(
    state: &AppState,
    customer: &str,
    period: &str,
) -> Result<Vec<LedgerRecord>, ApiError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let filter = LineFilter {
            period: Some(period.to_owned()),
            after: after.clone(),
            limit: CHUNK,
            ..LineFilter::default()
        };
        let rows = customer::lines(&state.db, customer, &filter).await?;
        let Some(last) = rows.last() else { break };
        after = Some((last.charge_start_ms, last.public_id.clone()));
        let full = rows.len() as i64 == CHUNK;
        out.extend(redact_rows(state, customer, &rows).await?);
        if !full {
            break;
        }
    }
    Ok(out)
}

/// The invoice of one period.
#[utoipa::path(get, path = "/v1/invoices/{period}", operation_id = "invoice", tag = "billing",
    security(("bearer" = [])),
    params(PeriodPath, FormatQuery),
    responses(
        (status = 200,
         description = "The invoice; `format=csv` answers the CSV of `interference bill --csv`",
         content((Invoice = "application/json"), (String = "text/csv"))),
        (status = 400, body = Error), (status = 401, body = Error),
        (status = 404, body = Error), (status = 429, body = Error),
    ))]
pub async fn invoice(
    State(state): State<AppState>,
    CustomerAuth(who): CustomerAuth,
    ApiPath(PeriodPath { period }): ApiPath<PeriodPath>,
    ApiQuery(q): ApiQuery<FormatQuery>,
) -> Result<Response, ApiError> {
    let csv = q.format.unwrap_or_default() == Format::Csv;
    let Some(period) = period_param(Some(&period))? else {
        return Err(ApiError::BadRequest("period is required".to_owned()));
    };
    let records = period_lines(&state, &who.customer, &period.to_string()).await?;
    if records.is_empty() {
        return Err(ApiError::NotFound(format!("no lines in period {period}")));
    }
    let inv = build_invoice(
        Path::new("controller"),
        &records,
        &who.customer,
        Some(period),
    )
    .map_err(|_| ApiError::NotFound(format!("no lines in period {period}")))?;
    if csv {
        let body =
            render_csv(&inv).map_err(|e| ApiError::Internal(format!("cannot write CSV: {e}")))?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response());
    }
    Ok(Json(Invoice {
        customer: inv.customer,
        period: inv.period.to_string(),
        currency: inv.currency,
        base: inv.base.to_string(),
        interference_charges: inv.interference_charges.to_string(),
        credits: inv.credits.to_string(),
        total: inv.total.to_string(),
        lines: inv
            .lines
            .into_iter()
            .map(|l| InvoiceLine {
                kind: l.kind.as_str().to_owned(),
                vm: l.vm,
                start: l.start,
                end: l.end,
                quantity: l.quantity,
                unit: l.unit,
                amount: l.amount.to_string(),
                description: l.description,
                action_id: l.action_id,
                records: l.records,
                payer_rule: l.payer.as_str().to_owned(),
            })
            .collect(),
    })
    .into_response())
}

/// How one of the customer's lines was priced, step by step.
#[utoipa::path(get, path = "/v1/lines/{id}/explain", operation_id = "explain_line", tag = "billing",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A line's id (x_RecordId in /v1/charges)")),
    responses(
        (status = 200, body = Explanation),
        (status = 400, body = Error), (status = 401, body = Error),
        (status = 404, body = Error), (status = 429, body = Error),
    ))]
pub async fn explain(
    State(state): State<AppState>,
    CustomerAuth(who): CustomerAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Explanation>, ApiError> {
    let Some(row) = customer::line_by_public_id(&state.db, &who.customer, &id).await? else {
        return Err(ApiError::NotFound("no such line".to_owned()));
    };
    let (own, other) = redact_with_other(&state, &who.customer, &row).await?;
    let c = check(&own);
    Ok(Json(Explanation {
        id: own.record_id.clone(),
        text: derivation(&own, other.as_ref().map(|(o, _)| o)),
        amount: own.billed_cost.to_string(),
        recomputed: c.recomputed.to_string(),
        reconciles: c.reconciles,
        other_side: other.map(|(o, yours)| OtherSide {
            id: o.record_id,
            kind: o.kind.as_str().to_owned(),
            amount: o.billed_cost.to_string(),
            yours,
        }),
    }))
}
