//! Pure decoding of cgroup interface files. Nothing here touches the filesystem.
//!
//! The kernel's formats (Documentation/admin-guide/cgroup-v2.rst, "Interface Files";
//! cgroup-v1/blkio-controller.rst): single values, flat keyed ("key value" per line),
//! nested keyed ("8:0 rbytes=1 wbytes=2"), PSI ("some avg10=0.00 ... total=0") and v1
//! blkio ("8:0 Read 4096"). Unknown keys are ignored so that newer kernels still parse;
//! a malformed line of a known shape is an error, because it means we read the wrong
//! file or the format changed.

use std::collections::HashMap;

use thiserror::Error;

use super::PsiTotals;

/// v1 reports "no limit" as the page counter's maximum rounded to pages
/// (9223372036854771712 with 4 KiB pages); anything this large is no limit in practice.
const V1_UNLIMITED: u64 = 1 << 62;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {reason}: {text:?}")]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    pub text: String,
    pub reason: &'static str,
}

impl ParseError {
    fn new(line: usize, text: &str, reason: &'static str) -> Self {
        ParseError {
            line,
            text: text.to_string(),
            reason,
        }
    }
}

/// A file holding one unsigned integer (memory.current, cpuacct.usage, ...).
pub fn parse_u64(text: &str) -> Result<u64, ParseError> {
    let t = text.trim();
    t.parse()
        .map_err(|_| ParseError::new(1, t, "not an unsigned integer"))
}

/// A limit file: v2 `memory.max` ("max" or bytes) or v1 `memory.limit_in_bytes`.
/// Returns None when unlimited.
pub fn parse_limit(text: &str) -> Result<Option<u64>, ParseError> {
    if text.trim() == "max" {
        return Ok(None);
    }
    let v = parse_u64(text)?;
    Ok((v < V1_UNLIMITED).then_some(v))
}

/// A CPU list (`0-3,8`), ascending: the one parser, `CpuList`'s, with this module's
/// error type.
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>, ParseError> {
    text.parse::<crate::host::CpuList>()
        .map(|l| l.to_vec())
        .map_err(|e| ParseError::new(1, text.trim(), e.why))
}

/// A flat keyed file ("key value" per line): cpu.stat, memory.stat, cpuacct.stat.
pub fn parse_flat_keyed(text: &str) -> Result<HashMap<&str, u64>, ParseError> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut it = line.split_whitespace();
        let (Some(key), Some(value), None) = (it.next(), it.next(), it.next()) else {
            return Err(ParseError::new(i + 1, line, "expected `key value`"));
        };
        let value = value
            .parse()
            .map_err(|_| ParseError::new(i + 1, line, "value is not an unsigned integer"))?;
        out.insert(key, value);
    }
    Ok(out)
}

/// A `*.pressure` file. The "some" line is required; "full" is optional (cpu.pressure
/// has it only since Linux 5.13).
pub fn parse_psi(text: &str) -> Result<PsiTotals, ParseError> {
    let mut some = None;
    let mut full = None;
    for (i, line) in text.lines().enumerate() {
        let mut it = line.split_whitespace();
        let Some(kind) = it.next() else { continue };
        let mut avg10 = None;
        let mut total = None;
        for field in it {
            let Some((k, v)) = field.split_once('=') else {
                return Err(ParseError::new(i + 1, line, "expected `key=value`"));
            };
            match k {
                "avg10" => {
                    avg10 = Some(
                        v.parse::<f64>()
                            .map_err(|_| ParseError::new(i + 1, line, "avg10 is not a number"))?,
                    )
                }
                "total" => {
                    total = Some(v.parse::<u64>().map_err(|_| {
                        ParseError::new(i + 1, line, "total is not an unsigned integer")
                    })?)
                }
                _ => {}
            }
        }
        let (Some(avg10), Some(total)) = (avg10, total) else {
            return Err(ParseError::new(i + 1, line, "missing avg10 or total"));
        };
        match kind {
            "some" => some = Some((avg10, total)),
            "full" => full = Some((avg10, total)),
            _ => {}
        }
    }
    let Some((some_avg10, some_total_us)) = some else {
        return Err(ParseError::new(1, text, "no `some` line"));
    };
    Ok(PsiTotals {
        some_total_us,
        some_avg10,
        full_total_us: full.map(|f| f.1),
        full_avg10: full.map(|f| f.0),
    })
}

/// Totals of v2 `io.stat`, summed over devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStatTotals {
    pub rbytes: u64,
    pub wbytes: u64,
    pub rios: u64,
    pub wios: u64,
    pub dbytes: u64,
    pub dios: u64,
}

/// v2 `io.stat`: "MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=..", one
/// line per device. Other keys (io.latency's `depth=max`, iocost's `cost.*`) are ignored.
pub fn parse_io_stat(text: &str) -> Result<IoStatTotals, ParseError> {
    let mut t = IoStatTotals::default();
    for (i, line) in text.lines().enumerate() {
        let mut it = line.split_whitespace();
        let Some(dev) = it.next() else { continue };
        if !is_device(dev) {
            return Err(ParseError::new(i + 1, line, "expected a MAJ:MIN device"));
        }
        for field in it {
            let Some((k, v)) = field.split_once('=') else {
                return Err(ParseError::new(i + 1, line, "expected `key=value`"));
            };
            let slot = match k {
                "rbytes" => &mut t.rbytes,
                "wbytes" => &mut t.wbytes,
                "rios" => &mut t.rios,
                "wios" => &mut t.wios,
                "dbytes" => &mut t.dbytes,
                "dios" => &mut t.dios,
                _ => continue,
            };
            let v: u64 = v
                .parse()
                .map_err(|_| ParseError::new(i + 1, line, "value is not an unsigned integer"))?;
            *slot = slot.saturating_add(v);
        }
    }
    Ok(t)
}

/// Totals of a v1 `blkio.throttle.io_service_bytes` or `blkio.throttle.io_serviced`
/// file (bytes or operations), summed over devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlkioTotals {
    pub read: u64,
    pub write: u64,
    pub discard: u64,
}

/// v1 blkio throttle statistics: "8:0 Read 4096" lines per device and operation, and a
/// closing "Total N". Sync/Async split the same I/O a second way and "Total" lines add
/// it up again, so both are skipped.
pub fn parse_blkio_throttle(text: &str) -> Result<BlkioTotals, ParseError> {
    let mut t = BlkioTotals::default();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (op, value) = match fields[..] {
            [] => continue,
            ["Total", v] => ("Total", v),
            [dev, op, v] if is_device(dev) => (op, v),
            _ => return Err(ParseError::new(i + 1, line, "expected `MAJ:MIN Op value`")),
        };
        let v: u64 = value
            .parse()
            .map_err(|_| ParseError::new(i + 1, line, "value is not an unsigned integer"))?;
        let slot = match op {
            "Read" => &mut t.read,
            "Write" => &mut t.write,
            "Discard" => &mut t.discard,
            _ => continue,
        };
        *slot = slot.saturating_add(v);
    }
    Ok(t)
}

fn is_device(s: &str) -> bool {
    s.split_once(':').is_some_and(|(maj, min)| {
        !maj.is_empty()
            && !min.is_empty()
            && maj.bytes().all(|b| b.is_ascii_digit())
            && min.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_values_and_limits() {
        assert_eq!(parse_u64("1417895936\n"), Ok(1417895936));
        assert!(parse_u64("max\n").is_err());
        assert_eq!(parse_limit("max\n"), Ok(None));
        assert_eq!(parse_limit("1073741824\n"), Ok(Some(1 << 30)));
        assert_eq!(
            parse_limit("9223372036854771712\n"),
            Ok(None),
            "v1 page counter max"
        );
        assert!(parse_limit("-1\n").is_err());
    }

    #[test]
    fn flat_keyed_v2_cpu_stat() {
        let m = parse_flat_keyed(
            "usage_usec 461611161\nuser_usec 377269238\nsystem_usec 84341922\nnice_usec 0\n\
             nr_periods 10\nnr_throttled 2\nthrottled_usec 3000\n",
        )
        .unwrap();
        assert_eq!(m["usage_usec"], 461611161);
        assert_eq!(m["nr_throttled"], 2);
        assert_eq!(m.len(), 7);
    }

    #[test]
    fn flat_keyed_rejects_malformed_lines() {
        let e = parse_flat_keyed("user 1\nsystem\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse_flat_keyed("user x\n").is_err());
        assert!(parse_flat_keyed("user 1 2\n").is_err());
        assert!(parse_flat_keyed("").unwrap().is_empty());
    }

    #[test]
    fn psi_with_and_without_full() {
        let p = parse_psi(
            "some avg10=0.06 avg60=0.65 avg300=2.21 total=32450187\n\
             full avg10=1.50 avg60=0.00 avg300=0.00 total=7\n",
        )
        .unwrap();
        assert_eq!(p.some_total_us, 32450187);
        assert_eq!(p.some_avg10, 0.06);
        assert_eq!(p.full_total_us, Some(7));
        assert_eq!(p.full_avg10, Some(1.5));

        // cpu.pressure before Linux 5.13.
        let p = parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=12\n").unwrap();
        assert_eq!(p.some_total_us, 12);
        assert_eq!(p.full_total_us, None);
        assert_eq!(p.full_avg10, None);
    }

    #[test]
    fn psi_errors() {
        assert!(parse_psi("").is_err());
        assert!(
            parse_psi("full avg10=0.00 total=1\n").is_err(),
            "no some line"
        );
        assert!(parse_psi("some avg10=x total=1\n").is_err());
        assert!(parse_psi("some avg10=0.00\n").is_err());
        assert!(parse_psi("some avg10\n").is_err());
    }

    #[test]
    fn io_stat_sums_devices_and_ignores_other_keys() {
        let t = parse_io_stat(
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
             253:1 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6 depth=max avg_lat=12 \
             cost.vrate=100.00\n",
        )
        .unwrap();
        assert_eq!(
            t,
            IoStatTotals {
                rbytes: 4097,
                wbytes: 8194,
                rios: 4,
                wios: 6,
                dbytes: 5,
                dios: 6,
            }
        );
        assert_eq!(parse_io_stat("").unwrap(), IoStatTotals::default());
        assert!(parse_io_stat("sda rbytes=1\n").is_err());
        assert!(parse_io_stat("8:0 rbytes=x\n").is_err());
        assert!(parse_io_stat("8:0 rbytes\n").is_err());
    }

    #[test]
    fn blkio_throttle_excludes_totals_and_sync_async() {
        let t = parse_blkio_throttle(
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 12288\n8:0 Async 0\n8:0 Discard 512\n\
             8:0 Total 12800\n8:16 Read 1\n8:16 Write 2\n8:16 Total 3\nTotal 12803\n",
        )
        .unwrap();
        assert_eq!(
            t,
            BlkioTotals {
                read: 4097,
                write: 8194,
                discard: 512,
            }
        );
        assert_eq!(
            parse_blkio_throttle("Total 0\n").unwrap(),
            BlkioTotals::default()
        );
        assert!(parse_blkio_throttle("8:0 Read\n").is_err());
        assert!(parse_blkio_throttle("8:0 Read x\n").is_err());
        assert!(parse_blkio_throttle("sda Read 1\n").is_err());
    }
}
