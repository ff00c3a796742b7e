//! Customer API tokens: 32 random bytes, shown once, stored as their sha256, scoped
//! `read` or `write`, expiring, revocable by their public id. The customer a request
//! acts for is the token's, never a parameter's.

use rand::RngCore;
use serde::Serialize;
use sqlx::Row;
use thiserror::Error;

use crate::db::sql::now_ms;
use crate::db::{Db, DbError};
use interference_fleet::wire::sha256_hex;

const PREFIX: &str = "ifc_";

/// What a token may do: `read` everything of its customer; `write` also change its
/// preferences and requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            _ => None,
        }
    }
}

/// A valid token's holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The token's public id (for rate limits and audit).
    pub token_id: String,
    pub customer: String,
    pub scope: Scope,
}

/// A token as an operator lists it (never the token itself).
#[derive(Debug, Clone, Serialize)]
pub struct TokenRow {
    pub id: String,
    pub customer: String,
    pub scope: Scope,
    pub label: Option<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
}

#[derive(Debug, Error)]
pub enum TokenError {
    #[error(
        "customer {0:?}: a customer id is 1 to 128 letters, digits, '-', '_', '.', '@' or ':'"
    )]
    BadCustomer(String),
    #[error("token lifetime {0} s: a token lives from one minute to two years")]
    BadLifetime(i64),
    #[error("no customer token with id {0:?}")]
    Unknown(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for TokenError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `c` can be a customer id (what agents write as BillingAccountId).
pub fn valid_customer(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 128
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
}

/// A new token for `customer`: (its public id, the token, shown once).
pub async fn create(
    db: &Db,
    customer: &str,
    scope: Scope,
    lifetime_s: i64,
    label: Option<&str>,
) -> Result<(String, String), TokenError> {
    if !valid_customer(customer) {
        return Err(TokenError::BadCustomer(customer.to_owned()));
    }
    if !(60..=2 * 366 * 86_400).contains(&lifetime_s) {
        return Err(TokenError::BadLifetime(lifetime_s));
    }
    let token = format!("{PREFIX}{}", random_hex(32));
    let id = format!("tok_{}", random_hex(8));
    let now = now_ms();
    let _gate = db.write_gate().await;
    sqlx::query(
        "INSERT INTO customer_tokens (token_sha256, id, customer, scope, label, created_ms, expires_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(sha256_hex(token.as_bytes()))
    .bind(&id)
    .bind(customer)
    .bind(scope.as_str())
    .bind(label)
    .bind(now)
    .bind(now + lifetime_s * 1000)
    .execute(db.pool())
    .await?;
    Ok((id, token))
}

/// Revokes one token by its public id.
pub async fn revoke(db: &Db, id: &str) -> Result<(), TokenError> {
    let _gate = db.write_gate().await;
    let r = sqlx::query(
        "UPDATE customer_tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
    )
    .bind(now_ms())
    .bind(id)
    .execute(db.pool())
    .await?;
    if r.rows_affected() == 0 {
        return Err(TokenError::Unknown(id.to_owned()));
    }
    Ok(())
}

/// Every token (of one customer, if given), newest first.
pub async fn list(db: &Db, customer: Option<&str>) -> Result<Vec<TokenRow>, DbError> {
    const COLUMNS: &str = "id, customer, scope, label, created_ms, expires_ms, revoked_ms";
    let rows = match customer {
        Some(c) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM customer_tokens WHERE customer = $1 \
                 ORDER BY created_ms DESC, id"
            ))
            .bind(c)
            .fetch_all(db.pool())
            .await?
        }
        None => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM customer_tokens ORDER BY created_ms DESC, id"
            ))
            .fetch_all(db.pool())
            .await?
        }
    };
    Ok(rows
        .iter()
        .map(|r| TokenRow {
            id: r.get(0),
            customer: r.get(1),
            scope: Scope::parse(&r.get::<String, _>(2)).unwrap_or(Scope::Read),
            label: r.get(3),
            created_ms: r.get(4),
            expires_ms: r.get(5),
            revoked_ms: r.get(6),
        })
        .collect())
}

/// The holder of `token`, if it is known, not revoked and not expired.
pub async fn holder(db: &Db, token: &str) -> Result<Option<Holder>, DbError> {
    let row = sqlx::query(
        "SELECT id, customer, scope FROM customer_tokens \
         WHERE token_sha256 = $1 AND revoked_ms IS NULL AND expires_ms > $2",
    )
    .bind(sha256_hex(token.as_bytes()))
    .bind(now_ms())
    .fetch_optional(db.pool())
    .await?;
    Ok(row.and_then(|r| {
        Some(Holder {
            token_id: r.get(0),
            customer: r.get(1),
            scope: Scope::parse(&r.get::<String, _>(2))?,
        })
    }))
}
