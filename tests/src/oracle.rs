//! The kernel's own accounting, the oracle our eBPF numbers are checked against.

use std::fs;

/// `/proc/<tid>/schedstat`: time on CPU (ns), run-queue wait (ns), timeslices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schedstat {
    pub run_ns: u64,
    pub run_delay_ns: u64,
    pub timeslices: u64,
}

pub fn schedstat(tid: u32) -> Option<Schedstat> {
    let s = fs::read_to_string(format!("/proc/{tid}/schedstat")).ok()?;
    let mut it = s.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some(Schedstat {
        run_ns: it.next()??,
        run_delay_ns: it.next()??,
        timeslices: it.next()??,
    })
}

/// `nonvoluntary_ctxt_switches` of `/proc/<tid>/status`: how often it was preempted.
pub fn nonvoluntary_switches(tid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Bytes from a v1 `blkio.throttle.io_service_bytes` file for device `major:minor`,
/// as (read, write).
pub fn blkio_service_bytes(contents: &str, dev: &str) -> (u64, u64) {
    let mut read = 0;
    let mut write = 0;
    for line in contents.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 3 && f[0] == dev {
            let v: u64 = f[2].parse().unwrap_or(0);
            match f[1] {
                "Read" => read += v,
                "Write" => write += v,
                _ => {}
            }
        }
    }
    (read, write)
}

/// Relative difference of `a` against the reference `b`.
pub fn rel_diff(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        if a == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (a - b).abs() / b.abs()
    }
}
