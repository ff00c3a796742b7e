//! Block I/O per VM: operations, bytes and issue-to-completion latency.
//!
//! A request is attributed to the VM of the thread that submitted it (tid map), or, for
//! a thread not tracked, to the VM whose cgroup v2 id the thread runs in. Requests that
//! go through an I/O scheduler are issued later, often by kblockd (on 6.1 with
//! mq-deadline, always), so the submitter is recorded at `block_rq_insert`, which runs
//! in its context; requests issued directly are attributed at `block_rq_issue`. Block
//! events are rare next to scheduler events, so a hash map insert/delete per request
//! is fine.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{btf_tracepoint, map},
    maps::{Array, HashMap},
    programs::BtfTracePointContext,
};
use interference_common::{
    entry_vm, hist_bucket, InflightIo, VmIoStats, IO_OP_DISCARD, IO_OP_FLUSH, IO_OP_OTHER,
    IO_OP_READ, IO_OP_WRITE, MAX_CGROUPS, MAX_INFLIGHT_IO, MAX_VMS,
};

use crate::shared::{
    atomic_add, global, load_u32, tid_entry_of, RQ_CMD_FLAGS_OFF, RQ_DATA_LEN_OFF,
};

/// Per VM index.
#[map(name = "VM_IO")]
static VM_IO: Array<VmIoStats> = Array::with_max_entries(MAX_VMS, 0);

/// `struct request` address -> what was issued.
#[map(name = "INFLIGHT_IO")]
static INFLIGHT_IO: HashMap<u64, InflightIo> = HashMap::with_max_entries(MAX_INFLIGHT_IO, 0);

/// cgroup v2 id -> VM index, for I/O from threads that are not in the tid map.
#[map(name = "CGROUP_VM")]
static CGROUP_VM: HashMap<u64, u32> = HashMap::with_max_entries(MAX_CGROUPS, 0);

/// `REQ_OP_MASK`: the operation is the low 8 bits of `cmd_flags` (stable since 4.10).
const REQ_OP_MASK: u32 = 0xff;

/// The VM of the current thread: tid map first, then its cgroup v2 id.
#[inline(always)]
fn current_vm() -> Option<u32> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let vm = entry_vm(tid_entry_of(tid));
    if vm != 0 {
        return Some(vm);
    }
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: plain value read from a hash map value.
    unsafe { CGROUP_VM.get(&cgid) }.copied()
}

/// Operation class and size of a request.
#[inline(always)]
fn describe(rq: *const u8) -> (u32, u64) {
    // SAFETY: rq is a BTF `struct request` pointer; offsets come from BTF.
    let (bytes, flags) = unsafe {
        (
            load_u32(rq, global(&RQ_DATA_LEN_OFF)),
            load_u32(rq, global(&RQ_CMD_FLAGS_OFF)),
        )
    };
    let op = match flags & REQ_OP_MASK {
        0 => IO_OP_READ,
        1 => IO_OP_WRITE,
        2 => IO_OP_FLUSH,
        3 => IO_OP_DISCARD,
        _ => IO_OP_OTHER,
    };
    (op as u32, bytes as u64)
}

/// `block_rq_insert(struct request *rq)`: the request enters an I/O scheduler queue,
/// in the submitter's context.
#[btf_tracepoint(function = "block_rq_insert")]
pub fn block_rq_insert(ctx: BtfTracePointContext) -> i32 {
    let rq: *const u8 = ctx.arg(0);
    let Some(vm) = current_vm() else {
        return 0;
    };
    let (op, bytes) = describe(rq);
    let io = InflightIo {
        issued_at_ns: 0,
        vm_index: vm,
        op,
        bytes,
    };
    let _ = INFLIGHT_IO.insert(&(rq as u64), &io, 0);
    0
}

/// `block_rq_issue(struct request *rq)`: the request goes to the driver.
#[btf_tracepoint(function = "block_rq_issue")]
pub fn block_rq_issue(ctx: BtfTracePointContext) -> i32 {
    let rq: *const u8 = ctx.arg(0);
    let key = rq as u64;
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(io) = INFLIGHT_IO.get_ptr_mut(&key) {
        // Inserted earlier by its submitter: keep that attribution, start the clock.
        // SAFETY: map value pointer.
        unsafe {
            (*io).issued_at_ns = now;
            let (op, bytes) = describe(rq);
            (*io).op = op;
            (*io).bytes = bytes;
        }
        return 0;
    }
    let Some(vm) = current_vm() else {
        return 0;
    };
    let (op, bytes) = describe(rq);
    let io = InflightIo {
        issued_at_ns: now,
        vm_index: vm,
        op,
        bytes,
    };
    let _ = INFLIGHT_IO.insert(&key, &io, 0);
    0
}

/// `block_rq_complete(struct request *rq, blk_status_t error, unsigned int nr_bytes)`.
#[btf_tracepoint(function = "block_rq_complete")]
pub fn block_rq_complete(ctx: BtfTracePointContext) -> i32 {
    let rq: *const u8 = ctx.arg(0);
    let key = rq as u64;
    // SAFETY: copied out of the map value before the entry is removed.
    let io = match unsafe { INFLIGHT_IO.get(&key) } {
        Some(io) => *io,
        None => return 0,
    };
    let _ = INFLIGHT_IO.remove(&key);
    let now = unsafe { bpf_ktime_get_ns() };
    let latency = now.saturating_sub(io.issued_at_ns);
    let Some(stats) = VM_IO.get_ptr_mut(io.vm_index % MAX_VMS) else {
        return 0;
    };
    // SAFETY: map value pointer; every index is checked against its array.
    unsafe {
        if let Some(ops) = (*stats).ops.get_mut(io.op as usize) {
            atomic_add(ops, 1);
        }
        if let Some(bytes) = (*stats).bytes.get_mut(io.op as usize) {
            atomic_add(bytes, io.bytes);
        }
        // A request completed without an issue event seen has no latency to report.
        if io.issued_at_ns != 0 {
            atomic_add(&raw mut (*stats).latency_sum_ns, latency);
            if let Some(b) = (*stats).latency_hist.get_mut(hist_bucket(latency)) {
                atomic_add(b, 1);
            }
        }
    }
    0
}
