//! The fleet's secret for public ids and aliases: created by the first controller that
//! starts on a database, read by every replica, never sent anywhere.

use rand::RngCore;
use sqlx::Row;

use crate::db::sql::now_ms;
use crate::db::{Db, DbError};
use crate::domain::public_ids::{PublicIds, SECRET_LEN};

const PUBLIC_IDS: &str = "public_ids";

/// The fleet's [`PublicIds`], its secret created on first use. Racing replicas agree:
/// the first insert wins and everyone reads it back.
pub async fn public_ids(db: &Db) -> Result<PublicIds, DbError> {
    let mut fresh = [0u8; SECRET_LEN];
    rand::rng().fill_bytes(&mut fresh);
    {
        let _gate = db.write_gate().await;
        sqlx::query(
            "INSERT INTO fleet_secrets (name, secret, created_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(PUBLIC_IDS)
        .bind(fresh.to_vec())
        .bind(now_ms())
        .execute(db.pool())
        .await?;
    }
    let row = sqlx::query("SELECT secret FROM fleet_secrets WHERE name = $1")
        .bind(PUBLIC_IDS)
        .fetch_one(db.pool())
        .await?;
    let bytes: Vec<u8> = row.get(0);
    let secret: [u8; SECRET_LEN] = bytes.as_slice().try_into().map_err(|_| {
        DbError::Corrupt(format!(
            "fleet_secrets.{PUBLIC_IDS} holds {} bytes, not {SECRET_LEN}",
            bytes.len()
        ))
    })?;
    Ok(PublicIds::from_secret(secret))
}

/// Gives every ledger line stored without one (lines from before the customer API) its
/// public id; returns how many. Bounded batches, so it can run on a live database.
pub async fn backfill_public_ids(db: &Db, ids: &PublicIds) -> Result<u64, DbError> {
    let mut done = 0;
    loop {
        let rows = sqlx::query(
            "SELECT record_id, customer FROM ledger_lines WHERE public_id IS NULL LIMIT 1000",
        )
        .fetch_all(db.pool())
        .await?;
        if rows.is_empty() {
            return Ok(done);
        }
        let _gate = db.write_gate().await;
        let mut tx = db.pool().begin().await?;
        for r in &rows {
            let (record, customer): (String, String) = (r.get(0), r.get(1));
            sqlx::query("UPDATE ledger_lines SET public_id = $1 WHERE record_id = $2")
                .bind(ids.record(&customer, &record))
                .bind(&record)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        done += rows.len() as u64;
    }
}
