//! Ingest: one transaction per batch, insert-or-ignore by each item's id, so a batch
//! sent twice, overlapping another or out of order stores every item exactly once. The
//! caller acknowledges only after [`ingest`] returned, i.e. after the commit.

use std::collections::HashMap;

use crate::domain::public_ids::{vm_id, PublicIds};
use crate::domain::redact::vm_name;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};

use crate::db::sql::{big, list, now_ms, rows_per_statement, values};
use crate::db::{Backend, Db, DbError};
use interference_fleet::wire::{IngestAck, IngestBatch, Item, ItemKind, LedgerColumns, Rejected};

/// A value bound into a multi-row insert.
#[derive(Debug, Clone)]
enum Val {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Real(f64),
    OptReal(Option<f64>),
}

fn bind<'q>(q: Query<'q, Any, AnyArguments<'q>>, v: Val) -> Query<'q, Any, AnyArguments<'q>> {
    match v {
        Val::Text(s) => q.bind(s),
        Val::OptText(s) => q.bind(s),
        Val::Int(i) => q.bind(i),
        Val::Real(f) => q.bind(f),
        Val::OptReal(f) => q.bind(f),
    }
}

struct Table {
    name: &'static str,
    columns: &'static [&'static str],
    rows: Vec<Vec<Val>>,
}

impl Table {
    fn new(name: &'static str, columns: &'static [&'static str]) -> Self {
        Self {
            name,
            columns,
            rows: Vec::new(),
        }
    }

    /// Inserts every row not already there; returns how many were new.
    async fn insert_or_ignore(
        self,
        backend: Backend,
        conn: &mut AnyConnection,
    ) -> Result<u64, sqlx::Error> {
        let mut inserted = 0;
        let per = rows_per_statement(self.columns.len());
        let mut rows = self.rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<Vec<Val>> = rows.by_ref().take(per).collect();
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {} ON CONFLICT DO NOTHING",
                self.name,
                self.columns.join(", "),
                values(backend, chunk.len(), self.columns.len())
            );
            let mut q = sqlx::query(&sql);
            for row in chunk {
                for v in row {
                    q = bind(q, v);
                }
            }
            inserted += q.execute(&mut *conn).await?.rows_affected();
        }
        Ok(inserted)
    }
}

const LEDGER: &[&str] = &[
    "record_id",
    "host_id",
    "customer",
    "resource_id",
    "vm_uuid",
    "period",
    "kind",
    "action_id",
    "billed_cost_nanos",
    "charge_start_ms",
    "charge_end_ms",
    "line",
    "received_ms",
    "public_id",
];
const PHASES: &[&str] = &[
    "host_id",
    "id",
    "action_id",
    "phase",
    "at_ms",
    "rung",
    "vm",
    "vm_uuid",
    "customer",
    "model_sha",
    "victim_wait_after_ms",
    "detail",
    "received_ms",
];
const ROLLUPS: &[&str] = &[
    "host_id",
    "id",
    "vm",
    "vm_uuid",
    "customer",
    "window_start_ms",
    "window_ms",
    "cpu_usage_cores",
    "run_queue_wait_ms",
    "preempted_ms",
    "io_ops",
    "io_bytes",
    "memory_mib",
    "max_score",
    "actions",
    "model_sha",
    "forecast_abs_error",
    "received_ms",
];
const SCORES: &[&str] = &[
    "host_id",
    "id",
    "victim",
    "aggressor",
    "at_ms",
    "score",
    "model_sha",
    "shadow",
    "received_ms",
];
const CAPACITY: &[&str] = &[
    "host_id",
    "at_ms",
    "total_vcpus",
    "total_memory_mib",
    "free_vcpus",
    "free_memory_mib",
    "vms",
    "received_ms",
];
const QUARANTINE: &[&str] = &["host_id", "seq", "idx", "reason", "item", "received_ms"];

/// Counts per item kind, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindCounts {
    pub sent: HashMap<ItemKind, u64>,
    pub inserted: HashMap<ItemKind, u64>,
}

/// A batch decoded into rows, ready to store (no database work yet).
pub struct Prepared {
    host: String,
    seq: i64,
    wire_seq: u64,
    items: usize,
    now: i64,
    ledger: Table,
    ledger_sent: Vec<(String, String)>,
    phases: Table,
    rollups: Table,
    scores: Table,
    capacity: Table,
    quarantine: Table,
    directory: Directory,
    rejected: Vec<Rejected>,
    counts: KindCounts,
}

/// What a batch says of one VM: its uuid, customer, first and last instant named.
struct Named {
    uuid: Option<String>,
    customer: String,
    first_ms: i64,
    last_ms: i64,
}

/// The VMs a batch names, for `vm_directory`, by (name, vm id).
#[derive(Default)]
struct Directory(HashMap<(String, String), Named>);

impl Directory {
    fn saw(&mut self, name: &str, uuid: Option<&str>, customer: Option<&str>, at_ms: i64) {
        let Some(customer) = customer.filter(|c| !c.is_empty()) else {
            return;
        };
        let id = vm_id(uuid, customer, name);
        let e = self
            .0
            .entry((name.to_owned(), id))
            .or_insert_with(|| Named {
                uuid: uuid.map(str::to_owned),
                customer: customer.to_owned(),
                first_ms: at_ms,
                last_ms: at_ms,
            });
        e.first_ms = e.first_ms.min(at_ms);
        e.last_ms = e.last_ms.max(at_ms);
    }

    /// Inserts new names, widens the seen interval of known ones.
    async fn upsert(
        self,
        backend: Backend,
        host: &str,
        conn: &mut AnyConnection,
    ) -> Result<(), sqlx::Error> {
        const COLS: usize = 7;
        let rows: Vec<_> = self.0.into_iter().collect();
        for chunk in rows.chunks(rows_per_statement(COLS)) {
            let sql = format!(
                "INSERT INTO vm_directory (host_id, name, vm_id, vm_uuid, customer, first_ms, last_ms) \
                 VALUES {} ON CONFLICT (host_id, name, vm_id) DO UPDATE SET \
                 first_ms = CASE WHEN excluded.first_ms < vm_directory.first_ms THEN excluded.first_ms ELSE vm_directory.first_ms END, \
                 last_ms = CASE WHEN excluded.last_ms > vm_directory.last_ms THEN excluded.last_ms ELSE vm_directory.last_ms END",
                values(backend, chunk.len(), COLS)
            );
            let mut q = sqlx::query(&sql);
            for ((name, id), n) in chunk {
                q = q
                    .bind(host)
                    .bind(name.as_str())
                    .bind(id.as_str())
                    .bind(n.uuid.clone())
                    .bind(n.customer.as_str())
                    .bind(n.first_ms)
                    .bind(n.last_ms);
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// Decodes a batch into rows (ledger columns extracted, each line's public id derived,
/// the VMs it names listed, unreadable items set aside).
pub fn prepare(host: &str, batch: &IngestBatch, ids: &PublicIds) -> Prepared {
    let now = now_ms();
    let seq = big(batch.seq);
    let mut ledger = Table::new("ledger_lines", LEDGER);
    let mut ledger_sent: Vec<(String, String)> = Vec::new();
    let mut phases = Table::new("action_phases", PHASES);
    let mut rollups = Table::new("rollups", ROLLUPS);
    let mut scores = Table::new("score_events", SCORES);
    let mut capacity = Table::new("capacity_samples", CAPACITY);
    let mut quarantine = Table::new("quarantine", QUARANTINE);
    let mut directory = Directory::default();
    let mut rejected = Vec::new();
    let mut counts = KindCounts::default();
    let h = || Val::Text(host.to_owned());

    for (index, item) in batch.items.iter().enumerate() {
        *counts.sent.entry(item.kind()).or_default() += 1;
        match item {
            Item::Ledger { line, vm_uuid } => match LedgerColumns::extract(line) {
                Ok(c) => {
                    ledger_sent.push((c.record_id.clone(), line.as_str().to_owned()));
                    directory.saw(
                        vm_name(&c.resource_id, &c.host),
                        vm_uuid.as_deref(),
                        Some(&c.customer),
                        c.charge_start_ms,
                    );
                    let public_id = ids.record(&c.customer, &c.record_id);
                    ledger.rows.push(vec![
                        Val::Text(c.record_id),
                        h(),
                        Val::Text(c.customer),
                        Val::Text(c.resource_id),
                        Val::OptText(vm_uuid.clone()),
                        Val::Text(c.period),
                        Val::Text(c.kind),
                        Val::OptText(c.action_id),
                        Val::Int(c.billed_cost_nanos),
                        Val::Int(c.charge_start_ms),
                        Val::Int(c.charge_end_ms),
                        Val::Text(line.as_str().to_owned()),
                        Val::Int(now),
                        Val::Text(public_id),
                    ]);
                }
                Err(e) => {
                    let reason = e.to_string();
                    quarantine.rows.push(vec![
                        h(),
                        Val::Int(seq),
                        Val::Int(index as i64),
                        Val::Text(reason.clone()),
                        Val::Text(serde_json::to_string(item).unwrap_or_default()),
                        Val::Int(now),
                    ]);
                    rejected.push(Rejected {
                        index: index as u32,
                        reason,
                    });
                }
            },
            Item::ActionPhase(p) => {
                if let Some(vm) = &p.vm {
                    directory.saw(
                        vm,
                        p.vm_uuid.as_deref(),
                        p.customer.as_deref(),
                        big(p.at_ms),
                    );
                }
                phases.rows.push(vec![
                    h(),
                    Val::Text(p.id.clone()),
                    Val::Text(p.action_id.clone()),
                    Val::Text(p.phase.as_str().to_owned()),
                    Val::Int(big(p.at_ms)),
                    Val::OptText(p.rung.clone()),
                    Val::OptText(p.vm.clone()),
                    Val::OptText(p.vm_uuid.clone()),
                    Val::OptText(p.customer.clone()),
                    Val::OptText(p.model_sha.clone()),
                    Val::OptReal(p.victim_wait_after_ms),
                    Val::OptText((!p.detail.is_null()).then(|| p.detail.to_string())),
                    Val::Int(now),
                ]);
            }
            Item::Rollup(r) => {
                directory.saw(
                    &r.vm,
                    r.vm_uuid.as_deref(),
                    r.customer.as_deref(),
                    big(r.window_start_ms),
                );
                rollups.rows.push(vec![
                    h(),
                    Val::Text(r.id()),
                    Val::Text(r.vm.clone()),
                    Val::OptText(r.vm_uuid.clone()),
                    Val::OptText(r.customer.clone()),
                    Val::Int(big(r.window_start_ms)),
                    Val::Int(big(r.window_ms)),
                    Val::Real(r.cpu_usage_cores),
                    Val::Real(r.run_queue_wait_ms),
                    Val::Real(r.preempted_ms),
                    Val::Int(big(r.io_ops)),
                    Val::Int(big(r.io_bytes)),
                    Val::Int(big(r.memory_mib)),
                    Val::Real(f64::from(r.max_score)),
                    Val::Int(i64::from(r.actions)),
                    Val::OptText(r.model_sha.clone()),
                    Val::OptReal(r.forecast_abs_error),
                    Val::Int(now),
                ]);
            }
            Item::Score(s) => scores.rows.push(vec![
                h(),
                Val::Text(s.id()),
                Val::Text(s.victim.clone()),
                Val::Text(s.aggressor.clone()),
                Val::Int(big(s.at_ms)),
                Val::Real(f64::from(s.score)),
                Val::OptText(s.model_sha.clone()),
                Val::Int(i64::from(s.shadow)),
                Val::Int(now),
            ]),
            Item::Capacity(c) => capacity.rows.push(vec![
                h(),
                Val::Int(big(c.at_ms)),
                Val::Int(i64::from(c.capacity.total_vcpus)),
                Val::Int(big(c.capacity.total_memory_mib)),
                Val::Int(i64::from(c.capacity.free_vcpus)),
                Val::Int(big(c.capacity.free_memory_mib)),
                Val::Int(i64::from(c.capacity.vms)),
                Val::Int(now),
            ]),
        }
    }
    Prepared {
        host: host.to_owned(),
        seq,
        wire_seq: batch.seq,
        items: batch.items.len(),
        now,
        ledger,
        ledger_sent,
        phases,
        rollups,
        scores,
        capacity,
        quarantine,
        directory,
        rejected,
        counts,
    }
}

/// Stores one batch in one transaction and says what was new.
pub async fn ingest(
    db: &Db,
    host: &str,
    batch: &IngestBatch,
    ids: &PublicIds,
) -> Result<(IngestAck, KindCounts), DbError> {
    let prepared = prepare(host, batch, ids);
    let _gate = db.write_gate().await;
    let mut tx = db.pool().begin().await?;
    let out = store(db.backend(), &mut tx, prepared).await?;
    tx.commit().await?;
    Ok(out)
}

/// Inserts a prepared batch inside the caller's transaction (which the caller
/// commits before anyone is told).
pub async fn store(
    backend: Backend,
    tx: &mut AnyConnection,
    p: Prepared,
) -> Result<(IngestAck, KindCounts), sqlx::Error> {
    let Prepared {
        host,
        seq,
        wire_seq,
        items,
        now,
        ledger,
        ledger_sent,
        phases,
        rollups,
        scores,
        capacity,
        quarantine,
        directory,
        rejected,
        mut counts,
    } = p;
    let host = host.as_str();
    let ledger_rows = ledger.rows.len() as u64;
    let first_time = sqlx::query(
        "INSERT INTO ingest_batches (host_id, seq, items, inserted, received_ms) \
         VALUES ($1, $2, $3, 0, $4) ON CONFLICT DO NOTHING",
    )
    .bind(host)
    .bind(seq)
    .bind(items as i64)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;

    let mut inserted_by_kind = HashMap::new();
    let ledger_inserted = ledger.insert_or_ignore(backend, &mut *tx).await?;
    inserted_by_kind.insert(ItemKind::Ledger, ledger_inserted);
    inserted_by_kind.insert(
        ItemKind::ActionPhase,
        phases.insert_or_ignore(backend, &mut *tx).await?,
    );
    inserted_by_kind.insert(
        ItemKind::Rollup,
        rollups.insert_or_ignore(backend, &mut *tx).await?,
    );
    inserted_by_kind.insert(
        ItemKind::Score,
        scores.insert_or_ignore(backend, &mut *tx).await?,
    );
    inserted_by_kind.insert(
        ItemKind::Capacity,
        capacity.insert_or_ignore(backend, &mut *tx).await?,
    );
    quarantine.insert_or_ignore(backend, &mut *tx).await?;
    directory.upsert(backend, host, &mut *tx).await?;

    let conflicts = if ledger_inserted < ledger_rows {
        conflicting_lines(backend, &mut *tx, &ledger_sent).await?
    } else {
        Vec::new()
    };
    let inserted: u64 = inserted_by_kind.values().sum();
    if first_time {
        sqlx::query("UPDATE ingest_batches SET inserted = $1 WHERE host_id = $2 AND seq = $3")
            .bind(big(inserted))
            .bind(host)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "UPDATE hosts SET last_seq = CASE WHEN last_seq < $1 THEN $1 ELSE last_seq END, \
         last_ingest_ms = $2 WHERE id = $3",
    )
    .bind(seq)
    .bind(now)
    .bind(host)
    .execute(&mut *tx)
    .await?;

    let accepted = items as u64 - rejected.len() as u64;
    counts.inserted = inserted_by_kind;
    Ok((
        IngestAck {
            seq: wire_seq,
            items: items as u32,
            inserted: inserted as u32,
            duplicates: accepted.saturating_sub(inserted) as u32,
            replayed_batch: !first_time,
            conflicts,
            rejected,
        },
        counts,
    ))
}

/// Record ids of `sent` stored with other content than sent (a second host using the
/// same id): the stored line stays, the conflict is reported.
async fn conflicting_lines(
    backend: Backend,
    conn: &mut AnyConnection,
    sent: &[(String, String)],
) -> Result<Vec<String>, sqlx::Error> {
    let mut conflicts = Vec::new();
    for chunk in sent.chunks(500) {
        let sql = format!(
            "SELECT record_id, line FROM ledger_lines WHERE record_id IN ({})",
            list(backend, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for (id, _) in chunk {
            q = q.bind(id.as_str());
        }
        let stored: HashMap<String, String> = q
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
            .collect();
        for (id, line) in chunk {
            if stored.get(id).is_some_and(|s| s != line) {
                conflicts.push(id.clone());
            }
        }
    }
    Ok(conflicts)
}

/// Every stored ledger line, ordered by record id (tests, exports).
pub async fn ledger_lines(db: &Db) -> Result<Vec<(String, String)>, DbError> {
    let rows = sqlx::query("SELECT record_id, line FROM ledger_lines ORDER BY record_id")
        .fetch_all(db.pool())
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect())
}

/// Count of rows of each ingest table (status, tests).
pub async fn table_counts(db: &Db) -> Result<Vec<(&'static str, i64)>, DbError> {
    let mut out = Vec::new();
    for table in [
        "ledger_lines",
        "action_phases",
        "rollups",
        "score_events",
        "capacity_samples",
        "quarantine",
        "ingest_batches",
    ] {
        let n: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(db.pool())
            .await?
            .get(0);
        out.push((table, n));
    }
    Ok(out)
}

/// Seconds of one VM billed twice: base lines of the same VM uuid from different
/// hosts whose charge periods overlap (a migration billed on both sides). Should be
/// empty; the proof of "billed once" after a migration checks it.
pub async fn double_billed_vms(db: &Db) -> Result<Vec<(String, i64)>, DbError> {
    let rows = sqlx::query(
        "SELECT a.vm_uuid, CAST(SUM( \
             CASE WHEN a.charge_end_ms < b.charge_end_ms THEN a.charge_end_ms ELSE b.charge_end_ms END \
           - CASE WHEN a.charge_start_ms > b.charge_start_ms THEN a.charge_start_ms ELSE b.charge_start_ms END \
         ) AS BIGINT) \
         FROM ledger_lines a JOIN ledger_lines b \
           ON a.vm_uuid = b.vm_uuid AND a.kind = 'base' AND b.kind = 'base' \
          AND a.host_id < b.host_id \
          AND a.charge_start_ms < b.charge_end_ms AND b.charge_start_ms < a.charge_end_ms \
          AND substr(a.record_id, length(a.record_id) - 4) = substr(b.record_id, length(b.record_id) - 4) \
         WHERE a.vm_uuid IS NOT NULL GROUP BY a.vm_uuid ORDER BY a.vm_uuid",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1) / 1000))
        .collect())
}

/// Drops the per-batch bookkeeping older than `keep_ms` (never items).
pub async fn prune_batches(db: &Db, keep_ms: i64) -> Result<u64, DbError> {
    let _gate = db.write_gate().await;
    let r = sqlx::query("DELETE FROM ingest_batches WHERE received_ms < $1")
        .bind(now_ms() - keep_ms)
        .execute(db.pool())
        .await?;
    Ok(r.rows_affected())
}
