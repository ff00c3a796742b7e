//! Billing periods (calendar months, UTC) and the charge segments an interval of use
//! is cut into.
//!
//! Every ledger line covers one segment: the part of a use (an action in effect, a
//! VM observed) inside one charge interval, the intervals aligned on the Unix epoch.
//! The interval divides a day, so segments never straddle a month and a given
//! instant always falls in the same segment: that is what makes line ids stable
//! across restarts.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

const DAY_MS: u64 = 86_400_000;

/// A billing period: one calendar month in UTC, written `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Period {
    year: i32,
    /// 1..=12
    month: u32,
}

impl Period {
    /// The period containing `ms` (milliseconds since the Unix epoch).
    pub fn containing(ms: u64) -> Self {
        let (year, month, _) = civil_from_days((ms / DAY_MS) as i64);
        Self { year, month }
    }

    pub fn start_ms(self) -> u64 {
        days_from_civil(self.year, self.month, 1).max(0) as u64 * DAY_MS
    }

    /// The first millisecond of the next period.
    pub fn end_ms(self) -> u64 {
        self.next().start_ms()
    }

    pub fn previous(self) -> Self {
        if self.month == 1 {
            Self {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Self {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl From<Period> for String {
    fn from(p: Period) -> String {
        p.to_string()
    }
}

impl TryFrom<String> for Period {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a billing period; expected YYYY-MM, e.g. 2026-11");
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Self { year, month })
    }
}

/// RFC 3339 UTC with milliseconds, as FOCUS date columns are written.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Parse what [`rfc3339`] writes back to milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    u64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

/// One piece of a use: `[start_ms, end_ms)` inside the charge interval that begins at
/// `slot_ms`, less `skipped_ms` inside it that did not pass (a forward step of the
/// wall clock, see [`segments_except`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub slot_ms: u64,
    pub start_ms: u64,
    pub end_ms: u64,
    pub skipped_ms: u64,
}

impl Segment {
    /// The time billed: the segment's span less what was skipped.
    pub fn used_ms(&self) -> u64 {
        (self.end_ms.saturating_sub(self.start_ms)).saturating_sub(self.skipped_ms)
    }

    pub fn hours(&self) -> f64 {
        self.used_ms() as f64 / 3_600_000.0
    }

    pub fn seconds(&self) -> f64 {
        self.used_ms() as f64 / 1000.0
    }

    pub fn period(&self) -> Period {
        Period::containing(self.start_ms)
    }
}

/// `[from_ms, to_ms)` cut at every multiple of `interval_ms`; empty when `to <= from`.
pub fn segments(from_ms: u64, to_ms: u64, interval_ms: u64) -> Vec<Segment> {
    let interval_ms = interval_ms.max(1);
    let mut out = Vec::new();
    let mut start = from_ms;
    while start < to_ms {
        let slot_ms = start - start % interval_ms;
        let end = (slot_ms + interval_ms).min(to_ms);
        out.push(Segment {
            slot_ms,
            start_ms: start,
            end_ms: end,
            skipped_ms: 0,
        });
        start = end;
    }
    out
}

/// [`segments`] of `[from_ms, to_ms)` less the `holes` (spans that did not pass: the
/// wall clock stepped over them). A charge interval keeps one segment, so line ids
/// stay one per interval: a hole inside it is its `skipped_ms`, and an interval the
/// holes cover whole has no segment at all.
pub fn segments_except(
    from_ms: u64,
    to_ms: u64,
    interval_ms: u64,
    holes: &[(u64, u64)],
) -> Vec<Segment> {
    let mut pieces = vec![(from_ms, to_ms)];
    for &(h0, h1) in holes {
        pieces = pieces
            .into_iter()
            .flat_map(|(a, b)| {
                if h1 <= a || h0 >= b {
                    vec![(a, b)]
                } else {
                    [(a, h0.max(a)), (h1.min(b), b)]
                        .into_iter()
                        .filter(|(x, y)| x < y)
                        .collect()
                }
            })
            .collect();
    }
    pieces.sort_unstable();
    let mut out: Vec<Segment> = Vec::new();
    for (a, b) in pieces {
        for s in segments(a, b, interval_ms) {
            match out.last_mut() {
                Some(last) if last.slot_ms == s.slot_ms => {
                    last.skipped_ms += s.start_ms.saturating_sub(last.end_ms) + s.skipped_ms;
                    last.end_ms = s.end_ms;
                }
                _ => out.push(s),
            }
        }
    }
    out
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_calendar_months() {
        let p: Period = "2026-11".parse().unwrap();
        assert_eq!(rfc3339(p.start_ms()), "2026-11-01T00:00:00.000Z");
        assert_eq!(rfc3339(p.end_ms()), "2026-12-01T00:00:00.000Z");
        assert_eq!(
            rfc3339("2026-12".parse::<Period>().unwrap().end_ms()),
            "2027-01-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339("2028-02".parse::<Period>().unwrap().end_ms()),
            "2028-03-01T00:00:00.000Z"
        );
        assert_eq!(Period::containing(p.end_ms() - 1), p);
        assert_eq!(Period::containing(p.end_ms()).to_string(), "2026-12");
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "", "2026-00"] {
            let e = bad.parse::<Period>().unwrap_err();
            assert!(e.contains("YYYY-MM"), "{e}");
        }
    }

    #[test]
    fn every_day_maps_back() {
        for d in (0..200_000).step_by(7) {
            let (y, m, day) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, day), d);
        }
    }

    #[test]
    fn segments_cover_the_use_exactly_and_split_at_month_ends() {
        let nov: Period = "2026-11".parse().unwrap();
        let from = nov.end_ms() - 5_400_000; // 1h30 before December
        let to = nov.end_ms() + 600_000;
        let s = segments(from + 17, to, 3_600_000);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].start_ms, from + 17);
        assert_eq!(s[2].end_ms, to);
        assert!(s.windows(2).all(|w| w[0].end_ms == w[1].start_ms));
        assert_eq!(s[1].period(), nov);
        assert_eq!(s[2].period(), nov.next());
        assert!(segments(5, 5, 1000).is_empty());
        assert_eq!(parse_rfc3339(&rfc3339(from + 17)), Some(from + 17));
    }

    #[test]
    fn holes_are_left_out_and_each_interval_keeps_one_segment() {
        // Minutes from 0 to 5, a hole from 1:30 to 3:20.
        let s = segments_except(0, 300_000, 60_000, &[(90_000, 200_000)]);
        let got: Vec<(u64, u64, u64, u64)> = s
            .iter()
            .map(|s| (s.slot_ms, s.start_ms, s.end_ms, s.skipped_ms))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 0, 60_000, 0),
                (60_000, 60_000, 90_000, 0),
                // 2:00-3:00 is inside the hole: no segment.
                (180_000, 200_000, 240_000, 0),
                (240_000, 240_000, 300_000, 0),
            ]
        );
        // A hole inside one interval: one segment with its skipped time.
        let s = segments_except(0, 60_000, 60_000, &[(10_000, 25_000)]);
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].start_ms, s[0].end_ms, s[0].skipped_ms),
            (0, 60_000, 15_000)
        );
        assert_eq!(s[0].used_ms(), 45_000);
        assert!((s[0].seconds() - 45.0).abs() < 1e-9);
        // Two holes in one interval, one outside the range, one covering all.
        let s = segments_except(
            0,
            60_000,
            60_000,
            &[(5_000, 10_000), (20_000, 30_000), (90_000, 99_000)],
        );
        assert_eq!(s[0].skipped_ms, 15_000);
        assert!(segments_except(0, 60_000, 60_000, &[(0, 60_000)]).is_empty());
        assert_eq!(
            segments_except(0, 60_000, 60_000, &[]),
            segments(0, 60_000, 60_000)
        );
    }
}
