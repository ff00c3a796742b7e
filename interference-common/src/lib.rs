//! Map keys and values shared by the eBPF programs and userspace.
//!
//! Layout rules: every type is `#[repr(C)]`, made of fixed-size integers and padded by
//! hand, so the kernel side and the userspace side agree byte for byte. Userspace builds
//! (feature `user`) implement `aya::Pod` for them.
//!
//! How the kernel side finds a tracked thread in one step: userspace gives every tracked
//! thread a *slot* and every VM an *index* (0 is the host), and writes
//! `vm_index << 16 | slot` into the [`TidChunk`] that covers the thread id. A zero entry
//! means "not tracked", so the hot path discards other threads after one array lookup
//! that the verifier inlines. No map is updated or deleted per scheduler event.
#![no_std]

/// VM index of everything that is not a registered VM (the host, kernel threads, ...).
pub const HOST_VM: u32 = 0;
/// VM indexes run from 1 to `MAX_VMS - 1`.
pub const MAX_VMS: u32 = 256;
/// Tracked threads (vCPU, emulator and I/O threads of all VMs together).
pub const MAX_SLOTS: u32 = 16384;
/// Thread ids covered by one entry of the tid map (one 128 KiB array value).
pub const TID_CHUNK: u32 = 32768;
/// Entries in the tid map: covers the kernel's PID_MAX_LIMIT on 64-bit (4194304).
pub const MAX_TID_CHUNKS: u32 = 128;
/// log2 buckets: bucket `i` counts durations `d` (ns) with `2^i <= d < 2^(i+1)`;
/// bucket 0 also holds `d < 1`, the last bucket everything from `2^(HIST_BUCKETS-1)` ns up.
pub const HIST_BUCKETS: usize = 32;
/// Block I/O operation classes, in the order of [`VmIoStats::ops`].
pub const IO_OP_READ: usize = 0;
pub const IO_OP_WRITE: usize = 1;
pub const IO_OP_FLUSH: usize = 2;
pub const IO_OP_DISCARD: usize = 3;
pub const IO_OP_OTHER: usize = 4;
pub const IO_OPS: usize = 5;
/// In-flight block requests tracked at once.
pub const MAX_INFLIGHT_IO: u32 = 16384;
/// Registered cgroup ids (cgroup v2 ids, for I/O issued by untracked threads).
pub const MAX_CGROUPS: u32 = 4096;

/// `vm_index << 16 | slot` for each thread id of the chunk; 0 = not tracked.
pub type TidChunk = [u32; TID_CHUNK as usize];

/// Encodes a tid-map entry. `vm_index` must be at least 1.
#[inline(always)]
pub const fn tid_entry(vm_index: u32, slot: u32) -> u32 {
    (vm_index << 16) | (slot & 0xffff)
}

/// VM index of a tid-map entry (0 for an untracked thread: the host).
#[inline(always)]
pub const fn entry_vm(entry: u32) -> u32 {
    entry >> 16
}

/// Slot of a tid-map entry.
#[inline(always)]
pub const fn entry_slot(entry: u32) -> u32 {
    entry & 0xffff
}

/// The histogram bucket of a duration in nanoseconds.
#[inline(always)]
pub const fn hist_bucket(ns: u64) -> usize {
    if ns == 0 {
        return 0;
    }
    let log = 63 - ns.leading_zeros() as usize;
    if log >= HIST_BUCKETS {
        HIST_BUCKETS - 1
    } else {
        log
    }
}

/// Upper bound, in nanoseconds, of histogram bucket `i` (exclusive); `None` for the last.
pub const fn hist_upper_ns(i: usize) -> Option<u64> {
    if i + 1 >= HIST_BUCKETS {
        None
    } else {
        Some(1u64 << (i + 1))
    }
}

/// Per tracked thread, owned by the kernel side once userspace has zeroed it at
/// registration. All counters are cumulative since registration.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ThreadStats {
    /// When the thread last became runnable (wakeup, or switched out while runnable);
    /// 0 while it runs or sleeps.
    pub queued_at_ns: u64,
    /// 1 + VM index of the task that took the CPU when this thread was switched out
    /// while runnable; 0 when it became runnable by a wakeup.
    pub preempted_by: u32,
    /// Tick epoch in which `max_ns` was last reset (the [`names::EPOCH`] map, which userspace advances).
    pub max_epoch: u32,
    /// Run-queue waits completed (switch-ins after a wait).
    pub count: u64,
    pub sum_ns: u64,
    /// Largest wait in the epoch `max_epoch`.
    pub max_ns: u64,
    /// Involuntary switch-outs while runnable, and the run-queue time that followed them.
    pub preempted: u64,
    pub preempted_ns: u64,
    pub hist: [u64; HIST_BUCKETS],
}

impl ThreadStats {
    pub const ZERO: ThreadStats = ThreadStats {
        queued_at_ns: 0,
        preempted_by: 0,
        max_epoch: 0,
        count: 0,
        sum_ns: 0,
        max_ns: 0,
        preempted: 0,
        preempted_ns: 0,
        hist: [0; HIST_BUCKETS],
    };
}

/// One cell of the victim x aggressor preemption matrix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PreemptCell {
    /// Switch-outs of the victim's threads while runnable, in favour of the aggressor.
    pub count: u64,
    /// Run-queue time of the victim's threads that followed those switch-outs.
    pub ns: u64,
}

/// One row of the matrix: indexed by aggressor VM index (0 = host).
pub type PreemptRow = [PreemptCell; MAX_VMS as usize];

/// Block I/O per VM, cumulative; completions only.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VmIoStats {
    pub ops: [u64; IO_OPS],
    pub bytes: [u64; IO_OPS],
    /// Issue-to-completion latency, summed over all operations.
    pub latency_sum_ns: u64,
    pub latency_hist: [u64; HIST_BUCKETS],
}

impl VmIoStats {
    pub const ZERO: VmIoStats = VmIoStats {
        ops: [0; IO_OPS],
        bytes: [0; IO_OPS],
        latency_sum_ns: 0,
        latency_hist: [0; HIST_BUCKETS],
    };
}

/// A block request between issue and completion, keyed by the `struct request` address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InflightIo {
    pub issued_at_ns: u64,
    pub vm_index: u32,
    pub op: u32,
    pub bytes: u64,
}

/// Names of the maps and programs in the eBPF object, so both sides spell them alike.
pub mod names {
    pub const TID_MAP: &str = "TID_MAP";
    pub const THREAD_STATS: &str = "THREAD_STATS";
    pub const PREEMPT: &str = "PREEMPT";
    pub const VM_IO: &str = "VM_IO";
    pub const INFLIGHT_IO: &str = "INFLIGHT_IO";
    pub const CGROUP_VM: &str = "CGROUP_VM";
    pub const EPOCH: &str = "EPOCH";
    pub const PROG_SCHED_SWITCH: &str = "sched_switch";
    pub const PROG_SCHED_WAKEUP: &str = "sched_wakeup";
    pub const PROG_BLOCK_INSERT: &str = "block_rq_insert";
    pub const PROG_BLOCK_ISSUE: &str = "block_rq_issue";
    pub const PROG_BLOCK_COMPLETE: &str = "block_rq_complete";
    /// Globals set by the loader from the running kernel's BTF.
    pub const GLOBAL_TASK_PID_OFF: &str = "TASK_PID_OFF";
    pub const GLOBAL_TASK_STATE_OFF: &str = "TASK_STATE_OFF";
    pub const GLOBAL_RQ_DATA_LEN_OFF: &str = "RQ_DATA_LEN_OFF";
    pub const GLOBAL_RQ_CMD_FLAGS_OFF: &str = "RQ_CMD_FLAGS_OFF";
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], contain only integers, and have no implicit
    // padding (checked by the size tests below).
    unsafe impl aya::Pod for super::ThreadStats {}
    unsafe impl aya::Pod for super::PreemptCell {}
    unsafe impl aya::Pod for super::VmIoStats {}
    unsafe impl aya::Pod for super::InflightIo {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_have_no_implicit_padding() {
        assert_eq!(
            core::mem::size_of::<ThreadStats>(),
            8 * 7 + 8 * HIST_BUCKETS
        );
        assert_eq!(core::mem::size_of::<PreemptCell>(), 16);
        assert_eq!(
            core::mem::size_of::<VmIoStats>(),
            8 * (2 * IO_OPS + 1 + HIST_BUCKETS)
        );
        assert_eq!(core::mem::size_of::<InflightIo>(), 24);
    }

    #[test]
    fn tid_entries_round_trip() {
        let e = tid_entry(7, 1234);
        assert_eq!(entry_vm(e), 7);
        assert_eq!(entry_slot(e), 1234);
        assert_ne!(tid_entry(1, 0), 0, "a tracked entry is never 0");
    }

    #[test]
    fn buckets_are_log2() {
        assert_eq!(hist_bucket(0), 0);
        assert_eq!(hist_bucket(1), 0);
        assert_eq!(hist_bucket(2), 1);
        assert_eq!(hist_bucket(3), 1);
        assert_eq!(hist_bucket(1024), 10);
        assert_eq!(hist_bucket(u64::MAX), HIST_BUCKETS - 1);
        assert_eq!(hist_upper_ns(10), Some(2048));
        assert_eq!(hist_upper_ns(HIST_BUCKETS - 1), None);
    }
}
