//! Building the few statements whose shape depends on the data: multi-row
//! `INSERT ... VALUES`.
//!
//! Every fixed statement uses numbered placeholders (`$1`), which both SQLite and
//! PostgreSQL read. Multi-row inserts are the one exception: SQLite looks a numbered
//! parameter up by walking its list of names, so binding n of them costs O(n^2)
//! (sqlx asks for every parameter's name): 5,000 parameters took half a second. Plain
//! `?` parameters have no name and bind in O(n), so on SQLite these statements use
//! `?`; PostgreSQL only reads `$n`.

use super::Backend;

/// `($1,$2,$3),($4,$5,$6)` (PostgreSQL) or `(?,?,?),(?,?,?)` (SQLite) for `rows` rows
/// of `cols` columns.
pub fn values(backend: Backend, rows: usize, cols: usize) -> String {
    let mut out = String::with_capacity(rows * cols * 5);
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            out.push(',');
        }
        out.push('(');
        for c in 0..cols {
            if c > 0 {
                out.push(',');
            }
            n += 1;
            match backend {
                Backend::Sqlite => out.push('?'),
                Backend::Postgres => {
                    out.push('$');
                    out.push_str(&n.to_string());
                }
            }
        }
        out.push(')');
    }
    out
}

/// `$1,$2,...,$n` or `?,?,...` (for `IN (...)`), as [`values`].
pub fn list(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => vec!["?"; n].join(","),
        Backend::Postgres => (1..=n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Rows per statement: under SQLite's 32766 and PostgreSQL's 65535 bound parameters.
pub fn rows_per_statement(cols: usize) -> usize {
    (30_000 / cols.max(1)).clamp(1, 1000)
}

/// Milliseconds since the Unix epoch, as stored.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// u64 counts and instants from the wire, as BIGINT (saturating: nothing real is
/// beyond i64).
pub fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::Backend;

    #[test]
    fn placeholders() {
        assert_eq!(
            super::values(Backend::Postgres, 2, 3),
            "($1,$2,$3),($4,$5,$6)"
        );
        assert_eq!(super::values(Backend::Sqlite, 2, 2), "(?,?),(?,?)");
        assert_eq!(super::list(Backend::Postgres, 3), "$1,$2,$3");
        assert_eq!(super::list(Backend::Sqlite, 2), "?,?");
    }
}
