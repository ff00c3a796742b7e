//! Lines out of the store, redacted for the customer reading them: parsed, their other
//! sides looked up (one query per page), every id and alias replaced.

use std::collections::HashMap;

use interference_core::billing::explain::other_side_id;
use interference_core::billing::period::{parse_rfc3339, rfc3339};
use interference_core::billing::LedgerRecord;

use crate::domain::redact::{redact_other, redact_own, OtherSide};
use crate::middleware::error::ApiError;
use crate::state::AppState;
use crate::store::customer::{self, LineRow};

/// A stored line that does not parse is the controller's fault (ingest checked it):
/// an internal error naming the line's public id, never its text.
fn parse(row: &LineRow) -> Result<LedgerRecord, ApiError> {
    serde_json::from_str(&row.line).map_err(|e| {
        tracing::error!(public_id = %row.public_id, error = %e, "a stored ledger line does not parse");
        ApiError::Internal(format!("ledger line {} cannot be read", row.public_id))
    })
}

/// The other sides of `records`' actions, by record id, with their parsed text.
pub async fn other_sides(
    state: &AppState,
    records: &[&LedgerRecord],
) -> Result<HashMap<String, (OtherSide, LedgerRecord)>, ApiError> {
    let ids: Vec<String> = records
        .iter()
        .filter(|r| r.action_id.is_some())
        .filter_map(|r| other_side_id(r))
        .collect();
    let mut out = HashMap::new();
    for (side, line) in customer::other_sides(&state.db, &ids).await? {
        if let Ok(parsed) = serde_json::from_str::<LedgerRecord>(&line) {
            out.insert(side.record_id.clone(), (side, parsed));
        }
    }
    Ok(out)
}

/// `rows` (the viewer's own) as the viewer may read them, in order.
pub async fn redact_rows(
    state: &AppState,
    viewer: &str,
    rows: &[LineRow],
) -> Result<Vec<LedgerRecord>, ApiError> {
    let parsed: Vec<LedgerRecord> = rows.iter().map(parse).collect::<Result<_, _>>()?;
    let sides = other_sides(state, &parsed.iter().collect::<Vec<_>>()).await?;
    Ok(rows
        .iter()
        .zip(parsed)
        .map(|(row, r)| {
            let other = other_side_id(&r)
                .and_then(|id| sides.get(&id))
                .map(|(s, _)| s);
            redact_own(&state.ids, viewer, &row.stored, r, other)
        })
        .collect())
}

/// One line and its other side, redacted (for explanations).
pub async fn redact_with_other(
    state: &AppState,
    viewer: &str,
    row: &LineRow,
) -> Result<(LedgerRecord, Option<(LedgerRecord, bool)>), ApiError> {
    let r = parse(row)?;
    let sides = other_sides(state, &[&r]).await?;
    let side = other_side_id(&r).and_then(|id| sides.get(&id));
    let other = side.map(|(s, text)| {
        (
            redact_other(&state.ids, viewer, s, text.clone()),
            s.customer == viewer,
        )
    });
    let own = redact_own(&state.ids, viewer, &row.stored, r, side.map(|(s, _)| s));
    Ok((own, other))
}

/// Milliseconds since the epoch, as the API writes instants.
pub fn instant(ms: i64) -> String {
    rfc3339(u64::try_from(ms).unwrap_or(0))
}

/// An RFC 3339 instant with `Z` or a numeric offset, in ms since the epoch (from 1970).
pub fn parse_instant(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(utc) = s.strip_suffix(['Z', 'z']) {
        return parse_rfc3339(&format!("{utc}Z")).and_then(|ms| i64::try_from(ms).ok());
    }
    // `+hh:mm` / `-hh:mm` at the end.
    let (local, offset) = s.split_at_checked(s.len().checked_sub(6)?)?;
    let sign = match offset.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = offset[1..].split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    let local_ms = i64::try_from(parse_rfc3339(&format!("{local}Z"))?).ok()?;
    let utc = local_ms - sign * (h * 3_600_000 + m * 60_000);
    (utc >= 0).then_some(utc)
}

/// A `from`/`to` pair of RFC 3339 instants (default: the 24 hours before now).
pub fn range(from: Option<&str>, to: Option<&str>) -> Result<(i64, i64), ApiError> {
    let parse_one = |name: &str, v: &str| -> Result<i64, ApiError> {
        parse_instant(v).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name}: {v:?} is not an RFC 3339 instant like 2026-12-01T00:00:00Z"
            ))
        })
    };
    let now = crate::db::sql::now_ms();
    let to_ms = to.map(|v| parse_one("to", v)).transpose()?.unwrap_or(now);
    let from_ms = from
        .map(|v| parse_one("from", v))
        .transpose()?
        .unwrap_or(to_ms - 86_400_000);
    if from_ms >= to_ms {
        return Err(ApiError::BadRequest(format!(
            "from ({}) must be before to ({})",
            instant(from_ms),
            instant(to_ms)
        )));
    }
    if to_ms - from_ms > 92 * 86_400_000 {
        return Err(ApiError::BadRequest(
            "a range spans at most 92 days".to_owned(),
        ));
    }
    Ok((from_ms, to_ms))
}

#[cfg(test)]
mod tests {
    use super::parse_instant;

    #[test]
    fn instants_with_z_or_an_offset() {
        let z = parse_instant("2026-12-01T10:00:00Z").expect("Z");
        assert_eq!(parse_instant("2026-12-01T12:30:00+02:30"), Some(z));
        assert_eq!(parse_instant("2026-12-01T05:00:00-05:00"), Some(z));
        assert_eq!(parse_instant("2026-12-01T10:00:00.250Z"), Some(z + 250));
        for bad in [
            "",
            "yesterday",
            "2026-12-01T10:00:00+25:00",
            "2026-13-01T00:00:00Z",
            "1969-12-31T23:00:00Z",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
    }
}
