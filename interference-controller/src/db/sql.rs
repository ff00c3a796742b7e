//! Building the few statements whose shape depends on the data: multi-row
//! `INSERT ... VALUES` with numbered placeholders (`$1`, which both SQLite and
//! PostgreSQL read).

/// `($1,$2,$3),($4,$5,$6)` for `rows` rows of `cols` columns.
pub fn values(rows: usize, cols: usize) -> String {
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
            out.push('$');
            out.push_str(&n.to_string());
        }
        out.push(')');
    }
    out
}

/// `$1,$2,...,$n` (for `IN (...)`).
pub fn list(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
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
    #[test]
    fn placeholders() {
        assert_eq!(super::values(2, 3), "($1,$2,$3),($4,$5,$6)");
        assert_eq!(super::list(3), "$1,$2,$3");
    }
}
