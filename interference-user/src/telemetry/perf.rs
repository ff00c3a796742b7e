//! LLC misses and instructions per VM, from per-thread perf counters.
//!
//! One counting (not sampling) event per tracked thread and counter, read once per tick.
//! Hardware counters need a PMU; a guest without a virtual PMU (these build machines:
//! "PMU not available due to virtualization") refuses them, which is detected on the
//! first open, logged once, and reported as an unavailable collector. The same path runs
//! with software events in tests ([`CounterSet::Software`]) so the plumbing stays proven.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};

use thiserror::Error;

const PERF_TYPE_HARDWARE: u32 = 0;
const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_HW_INSTRUCTIONS: u64 = 1;
const PERF_COUNT_HW_CACHE_MISSES: u64 = 3;
const PERF_COUNT_SW_TASK_CLOCK: u64 = 1;
const PERF_COUNT_SW_CONTEXT_SWITCHES: u64 = 3;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// `perf_event_attr` as of PERF_ATTR_SIZE_VER5; the kernel accepts any known size.
const ATTR_SIZE: u32 = 112;

#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// Bit field: bit 0 disabled, bit 1 inherit, bit 5 exclude_kernel, bit 6 exclude_hv.
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved: u16,
}

/// Which pair of events feeds the `llc_misses` and `instructions` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterSet {
    /// PERF_COUNT_HW_CACHE_MISSES and PERF_COUNT_HW_INSTRUCTIONS (production).
    Hardware,
    /// PERF_COUNT_SW_TASK_CLOCK (ns on CPU) and PERF_COUNT_SW_CONTEXT_SWITCHES: the same
    /// plumbing on machines without a PMU, for tests.
    Software,
}

impl CounterSet {
    fn events(self) -> [(u32, u64); 2] {
        match self {
            CounterSet::Hardware => [
                (PERF_TYPE_HARDWARE, PERF_COUNT_HW_CACHE_MISSES),
                (PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS),
            ],
            CounterSet::Software => [
                (PERF_TYPE_SOFTWARE, PERF_COUNT_SW_TASK_CLOCK),
                (PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES),
            ],
        }
    }
}

#[derive(Debug, Error)]
#[error("perf_event_open(type {kind}, config {config}) for thread {tid}")]
pub struct PerfOpenError {
    pub kind: u32,
    pub config: u64,
    pub tid: u32,
    #[source]
    pub source: std::io::Error,
}

struct ThreadCounters {
    files: [File; 2],
    last: [u64; 2],
}

/// Counters per tracked thread; `None` once the PMU is known to be missing.
pub struct PerfCounters {
    set: CounterSet,
    threads: HashMap<u32, ThreadCounters>,
    unavailable: Option<String>,
}

impl PerfCounters {
    pub fn new(set: CounterSet) -> Self {
        Self {
            set,
            threads: HashMap::new(),
            unavailable: None,
        }
    }

    /// Why the collector is down, if it is.
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// Opens counters for new threads and closes those of threads no longer tracked.
    pub fn sync(&mut self, tids: &BTreeSet<u32>) {
        self.threads.retain(|tid, _| tids.contains(tid));
        if self.unavailable.is_some() {
            return;
        }
        for &tid in tids {
            if self.threads.contains_key(&tid) {
                continue;
            }
            match open_thread(self.set, tid) {
                Ok(files) => {
                    self.threads.insert(
                        tid,
                        ThreadCounters {
                            files,
                            last: [0; 2],
                        },
                    );
                }
                Err(e) if no_pmu(&e.source) => {
                    let reason = format!("{e}: {} (no hardware PMU on this host)", e.source);
                    tracing::warn!("LLC collector unavailable: {reason}");
                    self.unavailable = Some(reason);
                    self.threads.clear();
                    return;
                }
                // The thread exited between discovery and open, or similar: skip it.
                Err(e) => tracing::debug!("{e}: {}", e.source),
            }
        }
    }

    /// Sum over `tids` of each counter's increase since the previous call.
    pub fn read_delta(&mut self, tids: impl IntoIterator<Item = u32>) -> Option<[u64; 2]> {
        if self.unavailable.is_some() {
            return None;
        }
        let mut total = [0u64; 2];
        for tid in tids {
            let Some(t) = self.threads.get_mut(&tid) else {
                continue;
            };
            for (i, f) in t.files.iter_mut().enumerate() {
                let mut buf = [0u8; 8];
                if f.read_exact(&mut buf).is_ok() {
                    let v = u64::from_ne_bytes(buf);
                    total[i] += v.saturating_sub(t.last[i]);
                    t.last[i] = v;
                }
            }
        }
        Some(total)
    }
}

/// ENOENT: no such event on this PMU; ENODEV/EOPNOTSUPP: no PMU at all.
fn no_pmu(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::EOPNOTSUPP)
    )
}

fn open_thread(set: CounterSet, tid: u32) -> Result<[File; 2], PerfOpenError> {
    let [a, b] = set.events();
    Ok([open_one(a, tid)?, open_one(b, tid)?])
}

fn open_one((kind, config): (u32, u64), tid: u32) -> Result<File, PerfOpenError> {
    let attr = PerfEventAttr {
        kind,
        size: ATTR_SIZE,
        config,
        ..Default::default()
    };
    // SAFETY: attr is a valid perf_event_attr of ATTR_SIZE bytes that outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            tid as libc::pid_t,
            -1 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(PerfOpenError {
            kind,
            config,
            tid,
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: the kernel returned a new file descriptor that we now own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    Ok(File::from(owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<PerfEventAttr>(), ATTR_SIZE as usize);
    }

    #[test]
    #[ignore = "needs root/QEMU"]
    fn software_counters_count_this_thread() {
        let tid = unsafe { libc::gettid() } as u32;
        let mut p = PerfCounters::new(CounterSet::Software);
        p.sync(&[tid].into());
        if let Some(why) = p.unavailable() {
            panic!("perf events refused here: {why}");
        }
        assert!(
            !p.threads.is_empty(),
            "perf_event_open refused (perf_event_paranoid?)"
        );
        p.read_delta([tid]);
        // Spin on the clock: a counting loop is folded away in release builds.
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(20) {
            std::hint::black_box(start);
        }
        let d = p.read_delta([tid]).unwrap();
        assert!(d[0] > 1_000_000, "task clock advanced by {} ns", d[0]);
    }
}
