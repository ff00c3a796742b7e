//! The rollup file's bytes: encoding and decoding, no I/O (see [`super::file`] for
//! how the file is written and read back crash-safe).
//!
//! # Format, version 1 (all integers little-endian)
//!
//! ```text
//! header, 48 bytes:
//!   magic           8  b"IFDEMRL\n"
//!   version         u32  1
//!   history_steps   u32  2040 (values per ring)
//!   step_ns         u64  the step the values are means over
//!   day_steps       u32  288
//!   records         u32  number of VM records that follow
//!   last_closed     i64  last step ended (i64::MIN: none)
//!   reserved        u32  0
//!   header_crc      u32  CRC-32 (gzip's) of the 44 bytes above
//! then per VM:
//!   body_len        u32  bytes of the body
//!   body:
//!     name_len      u16, name (UTF-8, name_len bytes)
//!     newest_step   i64  absolute step of the newest value
//!     last_seen     i64  absolute step of the newest measured (not filled) value
//!     age           u32  1..=history_steps
//!     values        f32 x age, oldest first (the newest is the value of newest_step)
//!   body_crc        u32  CRC-32 of the body
//! ```
//!
//! 8 KiB per VM with a week of history. The CRCs and lengths catch what the crash-safe
//! write cannot (a disk that lies, a copy cut short, a hand edit): a bad record costs
//! only its VM, which starts afresh; a bad header, another version or another step
//! geometry costs the whole file. A new format gets a new version number; this reader
//! refuses it.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::ring::VmRollup;
use crate::clock::Clock;
use crate::contract::HISTORY_STEPS;

/// Something wrong with the rollup file that made VMs start afresh.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}{}: {what}", path.display(), vm.as_ref().map(|v| format!(" (VM {v:?})")).unwrap_or_default())]
pub struct RollupProblem {
    pub path: PathBuf,
    /// The VM whose record is bad, when its name could be read.
    pub vm: Option<String>,
    pub what: String,
}

/// This writer's format version.
pub const FORMAT_VERSION: u32 = 1;

const MAGIC: &[u8; 8] = b"IFDEMRL\n";
const HEADER_LEN: usize = 48;
/// Fixed part of a record body: name_len, newest_step, last_seen, age.
const BODY_FIXED: usize = 2 + 8 + 8 + 4;
const MAX_BODY: usize = BODY_FIXED + u16::MAX as usize + 4 * HISTORY_STEPS;

/// The step geometry the values were recorded with; values of another geometry mean
/// something else and are not reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreGeometry {
    pub step_ns: u64,
    pub day_steps: u32,
}

impl StoreGeometry {
    pub fn of(clock: &Clock) -> Self {
        Self {
            step_ns: clock.step().as_nanos().min(u64::MAX as u128) as u64,
            day_steps: clock.day_steps() as u32,
        }
    }
}

/// What [`decode`] recovered.
#[derive(Debug, Default)]
pub struct Loaded {
    pub rollups: Vec<(String, VmRollup)>,
    pub last_closed: Option<i64>,
    pub problems: Vec<RollupProblem>,
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum()
}

/// Serialises the rollups (format version 1).
pub fn encode<'a>(
    geometry: &StoreGeometry,
    last_closed: Option<i64>,
    rollups: impl Iterator<Item = (&'a str, &'a VmRollup)>,
) -> Vec<u8> {
    let rollups: Vec<(&str, &VmRollup)> = rollups.collect();
    let mut out = Vec::with_capacity(HEADER_LEN + rollups.len() * (4 * HISTORY_STEPS + 64));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(HISTORY_STEPS as u32).to_le_bytes());
    out.extend_from_slice(&geometry.step_ns.to_le_bytes());
    out.extend_from_slice(&geometry.day_steps.to_le_bytes());
    out.extend_from_slice(&(rollups.len() as u32).to_le_bytes());
    out.extend_from_slice(&last_closed.unwrap_or(i64::MIN).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    let mut body = Vec::with_capacity(BODY_FIXED + 4 * HISTORY_STEPS + 64);
    for (name, r) in rollups {
        body.clear();
        // Names longer than a u16 cannot be VM names; cut rather than fail the save.
        let name = &name.as_bytes()[..name.len().min(u16::MAX as usize)];
        body.extend_from_slice(&(name.len() as u16).to_le_bytes());
        body.extend_from_slice(name);
        body.extend_from_slice(&r.newest_step().to_le_bytes());
        body.extend_from_slice(&r.last_seen_step().to_le_bytes());
        body.extend_from_slice(&(r.age() as u32).to_le_bytes());
        for v in r.available() {
            body.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_le_bytes());
    }
    out
}

/// A little-endian cursor that reports how far it got.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }
    fn i64(&mut self) -> Option<i64> {
        self.u64().map(|v| v as i64)
    }
}

/// Parses a rollup file's bytes; `path` only names it in problems.
pub fn decode(bytes: &[u8], path: &Path, geometry: &StoreGeometry) -> Loaded {
    let problem = |vm: Option<String>, what: String| RollupProblem {
        path: path.to_path_buf(),
        vm,
        what,
    };
    let whole = |what: String| Loaded {
        problems: vec![problem(None, format!("{what}: every VM starts afresh"))],
        ..Loaded::default()
    };
    if bytes.len() < HEADER_LEN {
        return whole(format!(
            "{} bytes, shorter than the {HEADER_LEN}-byte header (torn or not a rollup file)",
            bytes.len()
        ));
    }
    let mut c = Cursor { bytes, at: 0 };
    let header = &bytes[..HEADER_LEN];
    let magic = c.take(8).unwrap_or_default();
    if magic != MAGIC {
        return whole("not a demand rollup file (wrong magic)".to_string());
    }
    let stored_crc = u32::from_le_bytes([header[44], header[45], header[46], header[47]]);
    if crc32(&header[..44]) != stored_crc {
        return whole("header checksum mismatch (corrupt)".to_string());
    }
    let (Some(version), Some(history), Some(step_ns), Some(day_steps), Some(records), Some(last)) =
        (c.u32(), c.u32(), c.u64(), c.u32(), c.u32(), c.i64())
    else {
        return whole("header cut short".to_string());
    };
    c.at = HEADER_LEN;
    if version != FORMAT_VERSION {
        return whole(format!(
            "format version {version}, this agent reads version {FORMAT_VERSION}"
        ));
    }
    if history as usize != HISTORY_STEPS {
        return whole(format!(
            "rings of {history} values, this agent keeps {HISTORY_STEPS}"
        ));
    }
    if step_ns != geometry.step_ns || day_steps != geometry.day_steps {
        return whole(format!(
            "recorded with steps of {} s and days of {day_steps} steps, the agent now runs \
             steps of {} s and days of {} steps",
            step_ns as f64 * 1e-9,
            geometry.step_ns as f64 * 1e-9,
            geometry.day_steps
        ));
    }
    let mut loaded = Loaded {
        last_closed: (last != i64::MIN).then_some(last),
        ..Loaded::default()
    };
    for index in 0..records {
        let start = c.at;
        let Some(len) = c.u32().map(|l| l as usize) else {
            loaded.problems.push(problem(
                None,
                format!(
                    "file ends before record {index} of {records} (torn): the VMs of the \
                     missing records start afresh"
                ),
            ));
            return loaded;
        };
        if !(BODY_FIXED..=MAX_BODY).contains(&len) {
            loaded.problems.push(problem(
                None,
                format!(
                    "record {index} at byte {start} claims {len} bytes (corrupt): it and the \
                     {} records after it start afresh",
                    records - index - 1
                ),
            ));
            return loaded;
        }
        let (Some(body), Some(crc)) = (c.take(len), c.u32()) else {
            loaded.problems.push(problem(
                None,
                format!(
                    "file ends inside record {index} of {records} (torn): the VMs of the \
                     missing records start afresh"
                ),
            ));
            return loaded;
        };
        let name = record_name(body);
        if crc32(body) != crc {
            loaded.problems.push(problem(
                name,
                format!("record {index}: checksum mismatch (corrupt): the VM starts afresh"),
            ));
            continue;
        }
        match decode_body(body) {
            Ok((name, rollup)) => loaded.rollups.push((name, rollup)),
            Err(what) => loaded.problems.push(problem(
                name,
                format!("record {index}: {what}: the VM starts afresh"),
            )),
        }
    }
    if c.at != bytes.len() {
        loaded.problems.push(problem(
            None,
            format!(
                "{} bytes after the last record (ignored)",
                bytes.len() - c.at
            ),
        ));
    }
    loaded
}

fn record_name(body: &[u8]) -> Option<String> {
    let mut c = Cursor { bytes: body, at: 0 };
    let n = c.u16()? as usize;
    c.take(n).map(|b| String::from_utf8_lossy(b).into_owned())
}

fn decode_body(body: &[u8]) -> Result<(String, VmRollup), String> {
    let mut c = Cursor { bytes: body, at: 0 };
    let cut = || "record cut short".to_string();
    let n = c.u16().ok_or_else(cut)? as usize;
    let name = std::str::from_utf8(c.take(n).ok_or_else(cut)?)
        .map_err(|_| "VM name is not UTF-8".to_string())?
        .to_string();
    if name.is_empty() {
        return Err("empty VM name".to_string());
    }
    let newest = c.i64().ok_or_else(cut)?;
    let last_seen = c.i64().ok_or_else(cut)?;
    let age = c.u32().ok_or_else(cut)? as usize;
    if !(1..=HISTORY_STEPS).contains(&age) {
        return Err(format!("age {age} outside 1..={HISTORY_STEPS}"));
    }
    if last_seen > newest {
        return Err(format!(
            "last measured step {last_seen} after the newest step {newest}"
        ));
    }
    if c.bytes.len() - c.at != 4 * age {
        return Err(format!(
            "{} bytes of values for an age of {age}",
            c.bytes.len() - c.at
        ));
    }
    let mut values = Vec::with_capacity(age);
    for _ in 0..age {
        let bits = c.u32().ok_or_else(cut)?;
        let v = f32::from_bits(bits);
        if !(v.is_finite() && v >= 0.0) {
            return Err(format!("value {v} is not a demand"));
        }
        values.push(v);
    }
    Ok((name, VmRollup::from_parts(&values, newest, last_seen)))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn geometry() -> StoreGeometry {
        let clock = Clock::new(
            Duration::from_secs(300),
            Duration::from_secs(86_400),
            UNIX_EPOCH,
            288,
        )
        .expect("clock");
        StoreGeometry::of(&clock)
    }

    fn sample() -> Vec<(String, VmRollup)> {
        let mut a = VmRollup::new(10, 1.5);
        a.push_step(11, Some(2.5));
        a.push_step(14, None);
        let mut b = VmRollup::new(0, 0.0);
        for k in 1..2100 {
            b.push_step(k, Some(k as f32 * 0.25));
        }
        vec![("vm-a".to_string(), a), ("vm-ü".to_string(), b)]
    }

    fn encoded() -> Vec<u8> {
        let s = sample();
        encode(
            &geometry(),
            Some(2099),
            s.iter().map(|(n, r)| (n.as_str(), r)),
        )
    }

    #[test]
    fn round_trip() {
        let bytes = encoded();
        let loaded = decode(&bytes, Path::new("x"), &geometry());
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        assert_eq!(loaded.rollups, sample());
        assert_eq!(loaded.last_closed, Some(2099));
        assert_eq!(
            bytes.len(),
            HEADER_LEN + 2 * 8 + 2 * BODY_FIXED + 4 + 5 + 4 * (5 + 2040)
        );
    }

    #[test]
    fn a_corrupt_record_costs_only_its_vm() {
        let mut bytes = encoded();
        // A value of the first record (after header, len, name_len, name, 3 fields).
        bytes[HEADER_LEN + 4 + 2 + 4 + 8 + 8 + 4 + 1] ^= 0x40;
        let loaded = decode(&bytes, Path::new("/state/rollups"), &geometry());
        assert_eq!(loaded.rollups.len(), 1);
        assert_eq!(loaded.rollups[0].0, "vm-ü");
        let p = &loaded.problems[0];
        assert_eq!(p.vm.as_deref(), Some("vm-a"));
        let text = p.to_string();
        assert!(
            text.contains("/state/rollups") && text.contains("checksum") && text.contains("vm-a"),
            "{text}"
        );
    }

    #[test]
    fn a_torn_file_keeps_the_whole_records() {
        let bytes = encoded();
        let cut = &bytes[..bytes.len() - 100];
        let loaded = decode(cut, Path::new("f"), &geometry());
        assert_eq!(loaded.rollups.len(), 1);
        assert!(
            loaded.problems[0].what.contains("torn"),
            "{:?}",
            loaded.problems
        );
        let loaded = decode(&bytes[..20], Path::new("f"), &geometry());
        assert!(loaded.rollups.is_empty());
        assert!(
            loaded.problems[0].what.contains("header"),
            "{:?}",
            loaded.problems
        );
    }

    #[test]
    fn another_geometry_or_version_is_not_reused() {
        let bytes = encoded();
        let lab = StoreGeometry {
            step_ns: 1_000_000_000,
            day_steps: 288,
        };
        let loaded = decode(&bytes, Path::new("f"), &lab);
        assert!(loaded.rollups.is_empty());
        assert!(
            loaded.problems[0].what.contains("steps of 300 s"),
            "{:?}",
            loaded.problems
        );
        let mut v2 = bytes.clone();
        v2[8] = 2;
        let crc = crc32(&v2[..44]);
        v2[44..48].copy_from_slice(&crc.to_le_bytes());
        let loaded = decode(&v2, Path::new("f"), &geometry());
        assert!(
            loaded.problems[0].what.contains("format version 2"),
            "{:?}",
            loaded.problems
        );
        let mut flipped = bytes;
        flipped[20] ^= 1;
        let loaded = decode(&flipped, Path::new("f"), &geometry());
        assert!(
            loaded.problems[0].what.contains("header checksum"),
            "{:?}",
            loaded.problems
        );
    }
}
