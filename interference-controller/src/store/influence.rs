//! Customers' influence: tiers and preferences, priority grants, the audit log, the
//! monthly charge caps and the credit that gives back what reporting lag let past a
//! cap. Every statement names its customer.

use rand::RngCore;
use sqlx::Row;

use crate::db::sql::now_ms;
use crate::db::{Db, DbError};
use crate::store::tokens::bump_generation;
use interference_fleet::wire::{Influence, PriorityGrant, VmRef};

fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    let mut out = String::from(prefix);
    for x in b {
        out.push_str(&format!("{x:02x}"));
    }
    out
}

/// A customer's own settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerRow {
    pub tier: Option<String>,
    pub charge_cap_nanos: Option<i64>,
    pub no_donor: bool,
}

pub async fn customer(db: &Db, customer: &str) -> Result<CustomerRow, DbError> {
    let row = sqlx::query("SELECT tier, charge_cap_nanos, no_donor FROM customers WHERE id = $1")
        .bind(customer)
        .fetch_optional(db.pool())
        .await?;
    Ok(row
        .map(|r| CustomerRow {
            tier: r.get(0),
            charge_cap_nanos: r.get(1),
            no_donor: r.get::<i64, _>(2) != 0,
        })
        .unwrap_or_default())
}

/// Writes a customer's settings (the operator's tier, the customer's preferences) and
/// tells every replica to reload.
pub async fn set_customer(db: &Db, customer: &str, row: &CustomerRow) -> Result<(), DbError> {
    let _gate = db.write_gate().await;
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO customers (id, tier, charge_cap_nanos, no_donor, updated_ms) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET tier = excluded.tier, charge_cap_nanos = excluded.charge_cap_nanos, \
         no_donor = excluded.no_donor, updated_ms = excluded.updated_ms",
    )
    .bind(customer)
    .bind(row.tier.as_deref())
    .bind(row.charge_cap_nanos)
    .bind(i64::from(row.no_donor))
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    bump_generation(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// One VM's preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPref {
    pub vm_id: String,
    pub uuid: Option<String>,
    pub name: String,
    pub no_donor: bool,
}

pub async fn vm_prefs(db: &Db, customer: &str) -> Result<Vec<VmPref>, DbError> {
    let rows = sqlx::query(
        "SELECT vm_id, vm_uuid, vm_name, no_donor FROM vm_prefs WHERE customer = $1 ORDER BY vm_name, vm_id",
    )
    .bind(customer)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| VmPref {
            vm_id: r.get(0),
            uuid: r.get(1),
            name: r.get(2),
            no_donor: r.get::<i64, _>(3) != 0,
        })
        .collect())
}

pub async fn set_vm_pref(db: &Db, customer: &str, pref: &VmPref) -> Result<(), DbError> {
    let _gate = db.write_gate().await;
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO vm_prefs (customer, vm_id, vm_uuid, vm_name, no_donor, updated_ms) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (customer, vm_id) DO UPDATE SET no_donor = excluded.no_donor, vm_uuid = excluded.vm_uuid, \
         vm_name = excluded.vm_name, updated_ms = excluded.updated_ms",
    )
    .bind(customer)
    .bind(&pref.vm_id)
    .bind(pref.uuid.as_deref())
    .bind(&pref.name)
    .bind(i64::from(pref.no_donor))
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    bump_generation(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// A priority grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub id: String,
    pub customer: String,
    pub vm_id: String,
    pub uuid: Option<String>,
    pub name: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub cancelled_ms: Option<i64>,
}

impl GrantRow {
    /// When it stops (or stopped) counting.
    pub fn effective_end_ms(&self) -> i64 {
        self.cancelled_ms
            .map_or(self.end_ms, |c| c.min(self.end_ms))
    }
}

const GRANT_COLUMNS: &str = "id, customer, vm_id, vm_uuid, vm_name, start_ms, end_ms, cancelled_ms";

fn grant_row(r: &sqlx::any::AnyRow) -> GrantRow {
    GrantRow {
        id: r.get(0),
        customer: r.get(1),
        vm_id: r.get(2),
        uuid: r.get(3),
        name: r.get(4),
        start_ms: r.get(5),
        end_ms: r.get(6),
        cancelled_ms: r.get(7),
    }
}

/// The customer's grants that end after `since_ms`, oldest first.
pub async fn grants(db: &Db, customer: &str, since_ms: i64) -> Result<Vec<GrantRow>, DbError> {
    let rows = sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS} FROM priority_grants WHERE customer = $1 AND end_ms > $2 ORDER BY start_ms, id"
    ))
    .bind(customer)
    .bind(since_ms)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(grant_row).collect())
}

/// Every grant in force at `at_ms`, fleet-wide.
pub async fn active_grants(db: &Db, at_ms: i64) -> Result<Vec<GrantRow>, DbError> {
    let rows = sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS} FROM priority_grants \
         WHERE start_ms <= $1 AND end_ms > $1 AND (cancelled_ms IS NULL OR cancelled_ms > $1) ORDER BY id"
    ))
    .bind(at_ms)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(grant_row).collect())
}

pub async fn insert_grant(db: &Db, g: &GrantRow, token_id: &str) -> Result<(), DbError> {
    let _gate = db.write_gate().await;
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO priority_grants (id, customer, vm_id, vm_uuid, vm_name, start_ms, end_ms, token_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&g.id)
    .bind(&g.customer)
    .bind(&g.vm_id)
    .bind(g.uuid.as_deref())
    .bind(&g.name)
    .bind(g.start_ms)
    .bind(g.end_ms)
    .bind(token_id)
    .execute(&mut *tx)
    .await?;
    bump_generation(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Ends the VM's grant in force now; returns whether there was one.
pub async fn cancel_grant(db: &Db, customer: &str, vm_id: &str) -> Result<bool, DbError> {
    let now = now_ms();
    let _gate = db.write_gate().await;
    let mut tx = db.pool().begin().await?;
    let n = sqlx::query(
        "UPDATE priority_grants SET cancelled_ms = $1 WHERE customer = $2 AND vm_id = $3 \
         AND start_ms <= $1 AND end_ms > $1 AND cancelled_ms IS NULL",
    )
    .bind(now)
    .bind(customer)
    .bind(vm_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n > 0 {
        bump_generation(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(n > 0)
}

pub fn new_grant_id() -> String {
    random_id("pg_")
}

/// One line of a customer's audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: String,
    pub at_ms: i64,
    pub token_id: String,
    pub request: String,
    pub target: String,
    pub accepted: bool,
    pub reason: String,
}

pub async fn audit(
    db: &Db,
    customer: &str,
    token_id: &str,
    request: &str,
    target: &str,
    accepted: bool,
    reason: &str,
) -> Result<(), DbError> {
    let _gate = db.write_gate().await;
    sqlx::query(
        "INSERT INTO customer_audit (id, customer, at_ms, token_id, request, target, accepted, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(random_id("au_"))
    .bind(customer)
    .bind(now_ms())
    .bind(token_id)
    .bind(request)
    .bind(target)
    .bind(i64::from(accepted))
    .bind(reason)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn audit_log(db: &Db, customer: &str, limit: i64) -> Result<Vec<AuditRow>, DbError> {
    let rows = sqlx::query(&format!(
        "SELECT id, at_ms, token_id, request, target, accepted, reason FROM customer_audit \
         WHERE customer = $1 ORDER BY at_ms DESC, id LIMIT {}",
        limit.max(1)
    ))
    .bind(customer)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| AuditRow {
            id: r.get(0),
            at_ms: r.get(1),
            token_id: r.get(2),
            request: r.get(3),
            target: r.get(4),
            accepted: r.get::<i64, _>(5) != 0,
            reason: r.get(6),
        })
        .collect())
}

/// VMs last seen on the host where `vm_id` was last seen, and how many of them hold a
/// priority grant at `at_ms`: (host VMs, priority VMs). A VM counts on a host while it
/// was named there in the last `fresh_ms`.
pub async fn host_priority_load(
    db: &Db,
    customer: &str,
    vm_id: &str,
    at_ms: i64,
    fresh_ms: i64,
) -> Result<(i64, i64), DbError> {
    let Some(host) = sqlx::query(
        "SELECT host_id FROM vm_directory WHERE customer = $1 AND vm_id = $2 ORDER BY last_ms DESC LIMIT 1",
    )
    .bind(customer)
    .bind(vm_id)
    .fetch_optional(db.pool())
    .await?
    .map(|r| r.get::<String, _>(0)) else {
        return Ok((0, 0));
    };
    let vms: i64 = sqlx::query(
        "SELECT COUNT(DISTINCT vm_id) FROM vm_directory WHERE host_id = $1 AND last_ms >= $2",
    )
    .bind(&host)
    .bind(at_ms - fresh_ms)
    .fetch_one(db.pool())
    .await?
    .get(0);
    let priority: i64 = sqlx::query(
        "SELECT COUNT(DISTINCT g.vm_id) FROM priority_grants g JOIN vm_directory d \
           ON d.customer = g.customer AND d.vm_id = g.vm_id AND d.host_id = $1 AND d.last_ms >= $2 \
         WHERE g.start_ms <= $3 AND g.end_ms > $3 AND (g.cancelled_ms IS NULL OR g.cancelled_ms > $3)",
    )
    .bind(&host)
    .bind(at_ms - fresh_ms)
    .bind(at_ms)
    .fetch_one(db.pool())
    .await?
    .get(0);
    Ok((vms.max(1), priority))
}

/// Interference charges of a customer's period, in nanos.
pub async fn charges_in_period(db: &Db, customer: &str, period: &str) -> Result<i64, DbError> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(billed_cost_nanos), 0) AS BIGINT) FROM ledger_lines \
         WHERE customer = $1 AND period = $2 AND kind = 'charge'",
    )
    .bind(customer)
    .bind(period)
    .fetch_one(db.pool())
    .await?;
    Ok(row.get(0))
}

/// Everything the agents apply of customers' requests now (`period`: the current one).
pub async fn influence(db: &Db, now: i64, period: &str) -> Result<Influence, DbError> {
    let mut out = Influence::default();
    let rows = sqlx::query("SELECT id, charge_cap_nanos, no_donor FROM customers ORDER BY id")
        .fetch_all(db.pool())
        .await?;
    for r in &rows {
        let id: String = r.get(0);
        let cap: Option<i64> = r.get(1);
        if r.get::<i64, _>(2) != 0 {
            out.no_donor_customers.push(id.clone());
        }
        if let Some(cap) = cap {
            if charges_in_period(db, &id, period).await? >= cap {
                out.capped_customers.push(id);
            }
        }
    }
    let prefs = sqlx::query(
        "SELECT customer, vm_uuid, vm_name FROM vm_prefs WHERE no_donor <> 0 ORDER BY customer, vm_name",
    )
    .fetch_all(db.pool())
    .await?;
    out.no_donor_vms = prefs
        .iter()
        .map(|r| VmRef {
            customer: r.get(0),
            uuid: r.get(1),
            name: Some(r.get(2)),
        })
        .collect();
    out.priority = active_grants(db, now)
        .await?
        .into_iter()
        .map(|g| PriorityGrant {
            vm: VmRef {
                customer: g.customer.clone(),
                uuid: g.uuid.clone(),
                name: Some(g.name.clone()),
            },
            start_ms: u64::try_from(g.start_ms).unwrap_or(0),
            until_ms: u64::try_from(g.effective_end_ms()).unwrap_or(0),
            id: g.id,
        })
        .collect();
    Ok(out)
}

/// Credits back what each capped customer's charges of the closed `period` exceed its
/// cap by (beyond earlier credits): one adjustment line per customer per pass, stored
/// like an agent's line. Returns the lines written.
pub async fn credit_cap_overshoot(
    db: &Db,
    ids: &crate::domain::public_ids::PublicIds,
    period: interference_core::billing::Period,
) -> Result<u64, DbError> {
    use interference_core::billing::Money;
    let p = period.to_string();
    let capped = sqlx::query(
        "SELECT id, charge_cap_nanos FROM customers WHERE charge_cap_nanos IS NOT NULL",
    )
    .fetch_all(db.pool())
    .await?;
    let mut written = 0;
    for r in &capped {
        let (customer, cap): (String, i64) = (r.get(0), r.get(1));
        let charges = charges_in_period(db, &customer, &p).await?;
        if charges <= cap {
            continue;
        }
        let earlier = sqlx::query(
            "SELECT CAST(COALESCE(SUM(billed_cost_nanos), 0) AS BIGINT), COUNT(*) FROM ledger_lines \
             WHERE customer = $1 AND period = $2 AND host_id = 'controller' AND record_id LIKE 'controller/charge-cap/%'",
        )
        .bind(&customer)
        .bind(&p)
        .fetch_one(db.pool())
        .await?;
        let (credited, n): (i64, i64) = (earlier.get(0), earlier.get(1));
        let currency: Option<String> = sqlx::query(
            "SELECT line FROM ledger_lines WHERE customer = $1 AND period = $2 AND kind = 'charge' LIMIT 1",
        )
        .bind(&customer)
        .bind(&p)
        .fetch_optional(db.pool())
        .await?
        .and_then(|row| {
            serde_json::from_str::<interference_core::billing::LedgerRecord>(&row.get::<String, _>(0))
                .ok()
                .map(|l| l.billing_currency)
        });
        let Some(line) = crate::domain::cap_credit::cap_credit_line(
            &customer,
            period,
            currency.as_deref().unwrap_or("USD"),
            Money::from_nanos(charges),
            Money::from_nanos(cap),
            Money::from_nanos(-credited),
            u32::try_from(n + 1).unwrap_or(u32::MAX),
        ) else {
            continue;
        };
        let text = serde_json::to_string(&line).map_err(|e| DbError::Corrupt(e.to_string()))?;
        let (start, end) = (
            i64::try_from(period.start_ms()).unwrap_or(0),
            i64::try_from(period.end_ms()).unwrap_or(0),
        );
        let _gate = db.write_gate().await;
        written += sqlx::query(
            "INSERT INTO ledger_lines (record_id, host_id, customer, resource_id, vm_uuid, period, kind, action_id, \
             billed_cost_nanos, charge_start_ms, charge_end_ms, line, received_ms, public_id) \
             VALUES ($1, 'controller', $2, 'account', NULL, $3, 'credit', NULL, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&line.record_id)
        .bind(&customer)
        .bind(&p)
        .bind(line.billed_cost.nanos())
        .bind(start)
        .bind(end)
        .bind(&text)
        .bind(now_ms())
        .bind(ids.record(&customer, &line.record_id))
        .execute(db.pool())
        .await?
        .rows_affected();
    }
    Ok(written)
}
