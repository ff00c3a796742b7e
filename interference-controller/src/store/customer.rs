//! The customer API's reads. Every statement filters by the customer a token names:
//! no query here can return another customer's VM, line or score except as the other
//! side of the caller's own lines, which the API redacts before anything is sent.

use sqlx::Row;

use crate::db::sql::list;
use crate::db::{Db, DbError};
use crate::domain::redact::{OtherSide, StoredLine};

/// One of the customer's VMs, over every host it was seen on.
#[derive(Debug, Clone, PartialEq)]
pub struct VmRow {
    pub vm_id: String,
    pub uuid: Option<String>,
    pub name: String,
    pub first_ms: i64,
    pub last_ms: i64,
}

pub async fn vms(db: &Db, customer: &str) -> Result<Vec<VmRow>, DbError> {
    let rows = sqlx::query(
        "SELECT vm_id, MAX(vm_uuid), MIN(name), MIN(first_ms), MAX(last_ms) FROM vm_directory \
         WHERE customer = $1 GROUP BY vm_id ORDER BY MIN(name), vm_id",
    )
    .bind(customer)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| VmRow {
            vm_id: r.get(0),
            uuid: r.get(1),
            name: r.get(2),
            first_ms: r.get(3),
            last_ms: r.get(4),
        })
        .collect())
}

/// Where one of the customer's VMs ran: (host, name there). Empty when `vm_id` is not
/// the customer's, exactly as when it does not exist.
pub async fn places(
    db: &Db,
    customer: &str,
    vm_id: &str,
) -> Result<Vec<(String, String)>, DbError> {
    let rows = sqlx::query(
        "SELECT host_id, name FROM vm_directory WHERE customer = $1 AND vm_id = $2 \
         ORDER BY first_ms",
    )
    .bind(customer)
    .bind(vm_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A five-minute rollup of one VM.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    pub window_start_ms: i64,
    pub window_ms: i64,
    pub max_score: f64,
    pub cpu_usage_cores: f64,
    pub run_queue_wait_ms: f64,
    pub actions: i64,
}

pub async fn rollups(
    db: &Db,
    places: &[(String, String)],
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<RollupRow>, DbError> {
    let mut out = Vec::new();
    for (host, name) in places {
        let rows = sqlx::query(
            "SELECT window_start_ms, window_ms, max_score, cpu_usage_cores, run_queue_wait_ms, actions \
             FROM rollups WHERE host_id = $1 AND vm = $2 AND window_start_ms >= $3 AND window_start_ms < $4 \
             ORDER BY window_start_ms LIMIT 10000",
        )
        .bind(host)
        .bind(name)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(db.pool())
        .await?;
        out.extend(rows.iter().map(|r| RollupRow {
            window_start_ms: r.get(0),
            window_ms: r.get(1),
            max_score: r.get(2),
            cpu_usage_cores: r.get(3),
            run_queue_wait_ms: r.get(4),
            actions: r.get(5),
        }));
    }
    out.sort_by_key(|r| r.window_start_ms);
    Ok(out)
}

/// A pair score involving one of the customer's VMs, with who the other VM is.
#[derive(Debug, Clone, PartialEq)]
pub struct PairScoreRow {
    pub at_ms: i64,
    pub score: f64,
    /// True when the customer's VM was the one slowed down.
    pub as_victim: bool,
    pub host_id: String,
    /// The other VM's name on that host, and what the directory knows of it.
    pub other_name: String,
    pub other_vm_id: Option<String>,
    pub other_customer: Option<String>,
}

/// Most pair scores one request returns (the newest are kept).
pub const MAX_PAIR_SCORES: i64 = 20_000;

pub async fn pair_scores(
    db: &Db,
    places: &[(String, String)],
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<PairScoreRow>, DbError> {
    let mut out = Vec::new();
    for (host, name) in places {
        for (as_victim, mine, other) in [
            (true, "victim", "aggressor"),
            (false, "aggressor", "victim"),
        ] {
            let sql = format!(
                "SELECT se.at_ms, se.score, se.{other}, d.vm_id, d.customer FROM score_events se \
                 LEFT JOIN vm_directory d ON d.host_id = se.host_id AND d.name = se.{other} \
                   AND se.at_ms >= d.first_ms - 600000 AND se.at_ms <= d.last_ms + 600000 \
                 WHERE se.host_id = $1 AND se.{mine} = $2 AND se.shadow = 0 \
                   AND se.at_ms >= $3 AND se.at_ms < $4 \
                 ORDER BY se.at_ms DESC LIMIT {MAX_PAIR_SCORES}"
            );
            let rows = sqlx::query(&sql)
                .bind(host)
                .bind(name)
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all(db.pool())
                .await?;
            out.extend(rows.iter().map(|r| PairScoreRow {
                at_ms: r.get(0),
                score: r.get(1),
                as_victim,
                host_id: host.clone(),
                other_name: r.get(2),
                other_vm_id: r.get(3),
                other_customer: r.get(4),
            }));
        }
    }
    out.sort_by(|a, b| a.at_ms.cmp(&b.at_ms).then(a.other_name.cmp(&b.other_name)));
    out.dedup_by(|a, b| {
        a.at_ms == b.at_ms
            && a.other_name == b.other_name
            && a.as_victim == b.as_victim
            && a.host_id == b.host_id
    });
    Ok(out)
}

/// A stored ledger line of the customer's, with its text.
#[derive(Debug, Clone)]
pub struct LineRow {
    pub stored: StoredLine,
    pub public_id: String,
    pub charge_start_ms: i64,
    pub line: String,
}

const LINE_COLUMNS: &str =
    "record_id, host_id, customer, vm_uuid, public_id, charge_start_ms, line";

fn line_row(r: &sqlx::any::AnyRow) -> LineRow {
    LineRow {
        stored: StoredLine {
            record_id: r.get(0),
            host_id: r.get(1),
            customer: r.get(2),
            vm_uuid: r.get(3),
        },
        public_id: r.get::<Option<String>, _>(4).unwrap_or_default(),
        charge_start_ms: r.get(5),
        line: r.get(6),
    }
}

/// Which of the customer's lines a page reads.
#[derive(Debug, Clone, Default)]
pub struct LineFilter {
    pub period: Option<String>,
    pub kind: Option<String>,
    /// The VM's places (from [`places`]); `Some(empty)` matches nothing.
    pub places: Option<Vec<(String, String)>>,
    /// Start after this (charge start, public id).
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

/// One page of the customer's lines, in (charge start, public id) order.
pub async fn lines(db: &Db, customer: &str, f: &LineFilter) -> Result<Vec<LineRow>, DbError> {
    let mut sql = format!("SELECT {LINE_COLUMNS} FROM ledger_lines WHERE customer = $1");
    let mut n = 1;
    let mut next = |sql: &mut String, clause: &str| {
        n += 1;
        sql.push_str(&clause.replace('?', &format!("${n}")));
    };
    if f.period.is_some() {
        next(&mut sql, " AND period = ?");
    }
    if f.kind.is_some() {
        next(&mut sql, " AND kind = ?");
    }
    let resources: Option<Vec<String>> = f.places.as_ref().map(|p| {
        p.iter()
            .map(|(host, name)| format!("{host}/{name}"))
            .collect()
    });
    if let Some(r) = &resources {
        if r.is_empty() {
            return Ok(Vec::new());
        }
        let first = n + 1;
        let marks: Vec<String> = (first..first + r.len()).map(|i| format!("${i}")).collect();
        n += r.len();
        sql.push_str(&format!(" AND resource_id IN ({})", marks.join(",")));
    }
    if f.after.is_some() {
        let (a, b) = (n + 1, n + 2);
        // A row comparison: both databases read it off the page index in order.
        sql.push_str(&format!(" AND (charge_start_ms, public_id) > (${a}, ${b})"));
    }
    sql.push_str(&format!(
        " ORDER BY charge_start_ms, public_id LIMIT {}",
        f.limit.max(1)
    ));
    let mut q = sqlx::query(&sql).bind(customer);
    if let Some(p) = &f.period {
        q = q.bind(p.as_str());
    }
    if let Some(k) = &f.kind {
        q = q.bind(k.as_str());
    }
    for r in resources.iter().flatten() {
        q = q.bind(r.as_str());
    }
    if let Some((start, id)) = &f.after {
        q = q.bind(*start).bind(id.as_str());
    }
    Ok(q.fetch_all(db.pool()).await?.iter().map(line_row).collect())
}

/// One of the customer's lines by its public id.
pub async fn line_by_public_id(
    db: &Db,
    customer: &str,
    public_id: &str,
) -> Result<Option<LineRow>, DbError> {
    let row = sqlx::query(&format!(
        "SELECT {LINE_COLUMNS} FROM ledger_lines WHERE customer = $1 AND public_id = $2"
    ))
    .bind(customer)
    .bind(public_id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.as_ref().map(line_row))
}

/// The lines with these record ids (the other sides of a page's actions), by id.
pub async fn other_sides(
    db: &Db,
    record_ids: &[String],
) -> Result<Vec<(OtherSide, String)>, DbError> {
    let mut out = Vec::new();
    for chunk in record_ids.chunks(500) {
        let sql = format!(
            "SELECT record_id, customer, vm_uuid, resource_id, host_id, line FROM ledger_lines \
             WHERE record_id IN ({})",
            list(db.backend(), chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id.as_str());
        }
        for r in q.fetch_all(db.pool()).await? {
            let resource: String = r.get(3);
            let host: String = r.get(4);
            out.push((
                OtherSide {
                    record_id: r.get(0),
                    customer: r.get(1),
                    vm_uuid: r.get(2),
                    name: crate::domain::redact::vm_name(&resource, &host).to_owned(),
                },
                r.get(5),
            ));
        }
    }
    Ok(out)
}

/// Money per (kind, day, VM) of a customer's period, for cost summaries.
#[derive(Debug, Clone, PartialEq)]
pub struct CostRow {
    pub kind: String,
    pub day: i64,
    pub vm_uuid: Option<String>,
    pub host_id: String,
    pub resource_id: String,
    pub nanos: i64,
    pub lines: i64,
}

pub async fn costs(db: &Db, customer: &str, period: &str) -> Result<Vec<CostRow>, DbError> {
    let rows = sqlx::query(
        "SELECT kind, charge_start_ms / 86400000, vm_uuid, host_id, resource_id, \
                CAST(SUM(billed_cost_nanos) AS BIGINT), COUNT(*) \
         FROM ledger_lines WHERE customer = $1 AND period = $2 \
         GROUP BY kind, charge_start_ms / 86400000, vm_uuid, host_id, resource_id",
    )
    .bind(customer)
    .bind(period)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| CostRow {
            kind: r.get(0),
            day: r.get(1),
            vm_uuid: r.get(2),
            host_id: r.get(3),
            resource_id: r.get(4),
            nanos: r.get(5),
            lines: r.get(6),
        })
        .collect())
}

/// The periods a customer has lines in, oldest first.
pub async fn periods(db: &Db, customer: &str) -> Result<Vec<String>, DbError> {
    let rows =
        sqlx::query("SELECT DISTINCT period FROM ledger_lines WHERE customer = $1 ORDER BY period")
            .bind(customer)
            .fetch_all(db.pool())
            .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// An action that touched the customer's VMs, from the customer's own lines of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRow {
    pub host_id: String,
    pub action_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub nanos: i64,
    /// One of the customer's lines of the action (its words, role, rung, score).
    pub sample_record: String,
    /// The action's journal phases on its host: (phase, at).
    pub phases: Vec<(String, i64)>,
}

/// Actions with lines of the customer's starting in [from, to), newest first.
pub async fn actions(
    db: &Db,
    customer: &str,
    from_ms: i64,
    to_ms: i64,
    limit: i64,
) -> Result<Vec<ActionRow>, DbError> {
    let rows = sqlx::query(&format!(
        "SELECT host_id, action_id, MIN(charge_start_ms), MAX(charge_end_ms), \
                CAST(SUM(billed_cost_nanos) AS BIGINT), MIN(record_id) \
         FROM ledger_lines WHERE customer = $1 AND action_id IS NOT NULL \
           AND charge_start_ms >= $2 AND charge_start_ms < $3 \
         GROUP BY host_id, action_id ORDER BY MIN(charge_start_ms) DESC, action_id LIMIT {}",
        limit.max(1)
    ))
    .bind(customer)
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(db.pool())
    .await?;
    let mut out: Vec<ActionRow> = rows
        .iter()
        .map(|r| ActionRow {
            host_id: r.get(0),
            action_id: r.get(1),
            start_ms: r.get(2),
            end_ms: r.get(3),
            nanos: r.get(4),
            sample_record: r.get(5),
            phases: Vec::new(),
        })
        .collect();
    for a in &mut out {
        let rows = sqlx::query(
            "SELECT phase, at_ms FROM action_phases WHERE host_id = $1 AND action_id = $2 \
             ORDER BY at_ms, id",
        )
        .bind(&a.host_id)
        .bind(&a.action_id)
        .fetch_all(db.pool())
        .await?;
        a.phases = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    }
    Ok(out)
}

/// The text of lines by record id (the sample lines of [`actions`]).
pub async fn lines_by_record(
    db: &Db,
    customer: &str,
    record_ids: &[String],
) -> Result<Vec<LineRow>, DbError> {
    let mut out = Vec::new();
    for chunk in record_ids.chunks(500) {
        let marks: Vec<String> = (2..2 + chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {LINE_COLUMNS} FROM ledger_lines WHERE customer = $1 AND record_id IN ({})",
            marks.join(",")
        );
        let mut q = sqlx::query(&sql).bind(customer);
        for id in chunk {
            q = q.bind(id.as_str());
        }
        out.extend(q.fetch_all(db.pool()).await?.iter().map(line_row));
    }
    Ok(out)
}
