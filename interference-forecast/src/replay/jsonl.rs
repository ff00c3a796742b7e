//! The replay's JSONL lines, byte for byte as the Python reference prints them
//! (`json.dumps` of `{"vm", "minute", "horizon_min", "forecast"}` with the forecast
//! rounded to 4 decimals), so the two outputs can be compared with `diff`.

use std::fmt::Write;

/// Appends one line (with its `\n`) to `out`. `forecast` `None` prints `null`.
pub fn push_line(out: &mut String, vm: &str, minute: i64, horizon_min: i64, forecast: Option<f64>) {
    out.push_str("{\"vm\": ");
    push_json_string(out, vm);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        ", \"minute\": {minute}, \"horizon_min\": {horizon_min}, \"forecast\": "
    );
    match forecast {
        Some(f) => push_4_decimals(out, f),
        None => out.push_str("null"),
    }
    out.push_str("}\n");
}

/// Python's `repr(round(x, 4))` for the forecasts' range (finite, below 1e16): the
/// value correctly rounded to 4 decimals, trailing zeros dropped but one kept after
/// the point (`12.0`).
pub fn push_4_decimals(out: &mut String, x: f64) {
    let x = if x == 0.0 { 0.0 } else { x };
    let start = out.len();
    let _ = write!(out, "{x:.4}");
    let trimmed = out[start..].trim_end_matches('0').len();
    out.truncate(start + trimmed);
    if out.ends_with('.') {
        out.push('0');
    }
    if &out[start..] == "-0.0" {
        out.truncate(start);
        out.push_str("0.0");
    }
}

/// A JSON string as Python's `json.dumps` writes it (`ensure_ascii`: every non-ASCII
/// character as `\uXXXX`, astral ones as surrogate pairs).
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn four(x: f64) -> String {
        let mut s = String::new();
        push_4_decimals(&mut s, x);
        s
    }

    #[test]
    fn four_decimals_like_python_round_then_repr() {
        assert_eq!(four(8.69549999), "8.6955");
        assert_eq!(four(12.0), "12.0");
        assert_eq!(four(0.0), "0.0");
        assert_eq!(four(-0.0), "0.0");
        assert_eq!(four(3.1), "3.1");
        assert_eq!(four(100.00004), "100.0");
        assert_eq!(four(0.00005001), "0.0001");
        // Exact binary ties round half to even, as Python's round() does.
        assert_eq!(four(0.03125), "0.0312");
        assert_eq!(four(0.09375), "0.0938");
    }

    #[test]
    fn strings_like_json_dumps() {
        let mut s = String::new();
        push_json_string(&mut s, "vm\"1\\ü\u{1F600}\u{7f}");
        assert_eq!(s, r#""vm\"1\\\u00fc\ud83d\ude00\u007f""#);
    }

    #[test]
    fn a_whole_line() {
        let mut s = String::new();
        push_line(&mut s, "vm1633748", 10085, 5, Some(12.34561));
        push_line(&mut s, "x", 60, 60, None);
        assert_eq!(
            s,
            "{\"vm\": \"vm1633748\", \"minute\": 10085, \"horizon_min\": 5, \"forecast\": 12.3456}\n\
             {\"vm\": \"x\", \"minute\": 60, \"horizon_min\": 60, \"forecast\": null}\n"
        );
    }
}
