//! Per-tick sample values from two cumulative cgroup readings: a pure function of
//! (previous, current, elapsed), so it replays exactly from stored readings.
//!
//! A counter that went backwards means the cgroup was removed and created again under
//! the same path between the readings (a VM restarted in place). The new counter
//! started from zero at that moment, so its current value is the best estimate of what
//! happened in the interval, and that is the delta used. It undercounts the old
//! cgroup's last moments, which are lost with it; it never produces a negative or
//! wrapped-around delta.

use super::{CgroupCounters, IoCounters, PsiTotals};
use crate::telemetry::sample::{BlockIo, CpuUsage, Memory, Psi, PsiResource};

const NS_PER_S: f64 = 1e9;
const US_PER_S: f64 = 1e6;

/// CPU usage and PSI deltas over the interval, and memory gauges at `cur` (its major
/// fault count is the delta). A value is None when either reading lacks it. With an
/// `elapsed_s` that is not a positive number (a clock that did not advance), no delta
/// is meaningful and only the memory gauges are returned.
pub fn cgroup_delta(
    prev: &CgroupCounters,
    cur: &CgroupCounters,
    elapsed_s: f64,
) -> (Option<CpuUsage>, Option<Memory>, Option<Psi>) {
    let valid = elapsed_s.is_finite() && elapsed_s > 0.0;
    let memory = cur.memory.usage_bytes.map(|usage_bytes| Memory {
        usage_bytes,
        limit_bytes: cur.memory.limit_bytes,
        swap_bytes: cur.memory.swap_bytes,
        anon_bytes: cur.memory.anon_bytes,
        file_bytes: cur.memory.file_bytes,
        major_faults: if valid {
            delta(prev.memory.major_faults, cur.memory.major_faults)
        } else {
            None
        },
    });
    if !valid {
        return (None, memory, None);
    }
    (cpu_delta(prev, cur), memory, psi_delta(prev, cur))
}

fn cpu_delta(prev: &CgroupCounters, cur: &CgroupCounters) -> Option<CpuUsage> {
    let (p, c) = (&prev.cpu, &cur.cpu);
    let secs = |d: Option<u64>| d.map(|ns| ns as f64 / NS_PER_S);
    Some(CpuUsage {
        usage_seconds: secs(delta(p.usage_ns, c.usage_ns))?,
        user_seconds: secs(delta(p.user_ns, c.user_ns)),
        system_seconds: secs(delta(p.system_ns, c.system_ns)),
        periods: delta(p.periods, c.periods),
        throttled_periods: delta(p.throttled_periods, c.throttled_periods),
        throttled_seconds: secs(delta(p.throttled_ns, c.throttled_ns)),
    })
}

fn psi_delta(prev: &CgroupCounters, cur: &CgroupCounters) -> Option<Psi> {
    let one = |p: &Option<PsiTotals>, c: &Option<PsiTotals>| -> Option<PsiResource> {
        let (p, c) = (p.as_ref()?, c.as_ref()?);
        let secs = |d: Option<u64>| d.map(|us| us as f64 / US_PER_S);
        Some(PsiResource {
            some_seconds: secs(delta(Some(p.some_total_us), Some(c.some_total_us)))?,
            full_seconds: secs(delta(p.full_total_us, c.full_total_us)),
            some_avg10: c.some_avg10,
            full_avg10: c.full_avg10,
        })
    };
    let psi = Psi {
        cpu: one(&prev.psi.cpu, &cur.psi.cpu),
        memory: one(&prev.psi.memory, &cur.psi.memory),
        io: one(&prev.psi.io, &cur.psi.io),
    };
    (psi != Psi::default()).then_some(psi)
}

/// Block I/O from the cgroup's own accounting (v2 io.stat, v1 blkio.throttle.*): the
/// oracle for, and fallback to, the eBPF numbers. Discards are `other`. The cgroup files
/// carry no latency, so `latency_seconds` is 0 and the histogram is empty. None unless
/// both readings have read and write bytes and operations.
pub fn cgroup_io_delta(prev: &CgroupCounters, cur: &CgroupCounters) -> Option<BlockIo> {
    let (p, c): (&IoCounters, &IoCounters) = (&prev.io, &cur.io);
    Some(BlockIo {
        read_ops: delta(p.read_ops, c.read_ops)?,
        write_ops: delta(p.write_ops, c.write_ops)?,
        other_ops: delta(p.discard_ops, c.discard_ops).unwrap_or(0),
        read_bytes: delta(p.read_bytes, c.read_bytes)?,
        write_bytes: delta(p.write_bytes, c.write_bytes)?,
        other_bytes: delta(p.discard_bytes, c.discard_bytes).unwrap_or(0),
        latency_seconds: 0.0,
        latency_histogram: Vec::new(),
    })
}

/// Counter delta; a counter that went backwards was reset (see the module doc).
fn delta(prev: Option<u64>, cur: Option<u64>) -> Option<u64> {
    let (p, c) = (prev?, cur?);
    Some(if c >= p { c - p } else { c })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::cgroup::{CpuCounters, MemoryCounters, PsiCounters};

    fn reading(usage_ns: u64, psi_us: u64, faults: u64) -> CgroupCounters {
        let psi = PsiTotals {
            some_total_us: psi_us,
            some_avg10: 2.5,
            full_total_us: Some(psi_us / 2),
            full_avg10: Some(1.0),
        };
        CgroupCounters {
            cpu: CpuCounters {
                usage_ns: Some(usage_ns),
                user_ns: Some(usage_ns / 2),
                system_ns: None,
                periods: Some(usage_ns / 1000),
                throttled_periods: Some(0),
                throttled_ns: Some(0),
            },
            memory: MemoryCounters {
                usage_bytes: Some(4096),
                limit_bytes: None,
                swap_bytes: Some(0),
                anon_bytes: Some(1),
                file_bytes: Some(2),
                major_faults: Some(faults),
            },
            psi: PsiCounters {
                cpu: Some(PsiTotals {
                    full_total_us: None,
                    full_avg10: None,
                    ..psi.clone()
                }),
                memory: None,
                io: Some(psi),
            },
            io: IoCounters {
                read_bytes: Some(usage_ns),
                write_bytes: Some(2 * usage_ns),
                read_ops: Some(1),
                write_ops: Some(2),
                discard_bytes: None,
                discard_ops: None,
            },
            cpus: None,
        }
    }

    #[test]
    fn counters_become_deltas_and_gauges_come_from_cur() {
        let (cpu, mem, psi) = cgroup_delta(
            &reading(1_000_000_000, 1_000_000, 5),
            &reading(3_000_000_000, 1_500_000, 8),
            5.0,
        );
        let cpu = cpu.unwrap();
        assert_eq!(cpu.usage_seconds, 2.0);
        assert_eq!(cpu.user_seconds, Some(1.0));
        assert_eq!(cpu.system_seconds, None);
        assert_eq!(cpu.periods, Some(2_000_000));
        assert_eq!(cpu.throttled_seconds, Some(0.0));
        let mem = mem.unwrap();
        assert_eq!(mem.usage_bytes, 4096);
        assert_eq!(mem.limit_bytes, None);
        assert_eq!(mem.major_faults, Some(3));
        let psi = psi.unwrap();
        let io = psi.io.unwrap();
        assert_eq!(io.some_seconds, 0.5);
        assert_eq!(io.full_seconds, Some(0.25));
        assert_eq!(io.some_avg10, 2.5);
        assert_eq!(psi.cpu.unwrap().full_seconds, None);
        assert_eq!(psi.memory, None);
    }

    #[test]
    fn first_reading_has_gauges_only() {
        let (cpu, mem, psi) = cgroup_delta(&CgroupCounters::default(), &reading(5, 5, 5), 5.0);
        assert_eq!(cpu, None);
        assert_eq!(psi, None);
        let mem = mem.unwrap();
        assert_eq!(mem.usage_bytes, 4096);
        assert_eq!(mem.major_faults, None);
    }

    #[test]
    fn a_counter_going_backwards_is_a_reset() {
        let (cpu, mem, psi) = cgroup_delta(
            &reading(9_000_000_000, 9_000_000, 9),
            &reading(1_000_000_000, 2_000_000, 4),
            5.0,
        );
        assert_eq!(cpu.unwrap().usage_seconds, 1.0);
        assert_eq!(mem.unwrap().major_faults, Some(4));
        assert_eq!(psi.unwrap().io.unwrap().some_seconds, 2.0);
    }

    #[test]
    fn no_time_elapsed_gives_no_deltas() {
        for elapsed in [0.0, -1.0, f64::NAN] {
            let (cpu, mem, psi) = cgroup_delta(&reading(1, 1, 1), &reading(2, 2, 2), elapsed);
            assert_eq!((cpu, psi), (None, None));
            assert_eq!(mem.unwrap().major_faults, None);
        }
    }

    #[test]
    fn io_fallback_from_cgroup_counters() {
        let io = cgroup_io_delta(&reading(100, 0, 0), &reading(300, 0, 0)).unwrap();
        assert_eq!(io.read_bytes, 200);
        assert_eq!(io.write_bytes, 400);
        assert_eq!(io.read_ops, 0);
        assert_eq!(io.other_bytes, 0);
        assert!(io.latency_histogram.is_empty());
        assert_eq!(
            cgroup_io_delta(&CgroupCounters::default(), &reading(1, 0, 0)),
            None
        );
    }
}
