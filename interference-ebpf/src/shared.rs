//! Maps, globals and small helpers used by both the scheduler and the block programs.

use aya_ebpf::{macros::map, maps::Array};
use interference_common::{
    PreemptRow, ThreadStats, TidChunk, MAX_SLOTS, MAX_TID_CHUNKS, MAX_VMS, TID_CHUNK,
};

/// Offsets set by userspace from the running kernel's BTF (see the crate docs).
#[unsafe(no_mangle)]
pub static TASK_PID_OFF: u32 = 0;
#[unsafe(no_mangle)]
pub static TASK_STATE_OFF: u32 = 0;
#[unsafe(no_mangle)]
pub static RQ_DATA_LEN_OFF: u32 = 0;
#[unsafe(no_mangle)]
pub static RQ_CMD_FLAGS_OFF: u32 = 0;

/// Thread id -> `vm_index << 16 | slot`, in chunks of `TID_CHUNK` thread ids.
#[map(name = "TID_MAP")]
pub static TID_MAP: Array<TidChunk> = Array::with_max_entries(MAX_TID_CHUNKS, 0);

/// Per slot: run-queue and preemption accounting of one tracked thread.
#[map(name = "THREAD_STATS")]
pub static THREAD_STATS: Array<ThreadStats> = Array::with_max_entries(MAX_SLOTS, 0);

/// Row per victim VM index, column per aggressor VM index (0 = host).
#[map(name = "PREEMPT")]
pub static PREEMPT: Array<PreemptRow> = Array::with_max_entries(MAX_VMS, 0);

/// Entry 0: the tick epoch userspace is in; `max_ns` resets when it changes.
#[map(name = "EPOCH")]
pub static EPOCH: Array<u32> = Array::with_max_entries(1, 0);

/// Reads a global set by the loader. Volatile so the compiler cannot fold the
/// placeholder value; the verifier still sees the frozen value as a constant.
#[inline(always)]
pub fn global(g: &'static u32) -> usize {
    // SAFETY: `g` is a valid, aligned static.
    unsafe { core::ptr::read_volatile(g) as usize }
}

/// Loads a `u32` field at byte offset `off` of a kernel object the program was handed
/// as a BTF-typed argument.
///
/// # Safety
/// `base` must be a BTF pointer argument of a tp_btf program and `off` the offset of a
/// 4-byte (or wider, little-endian) field of its type taken from the kernel's BTF.
#[inline(always)]
pub unsafe fn load_u32(base: *const u8, off: usize) -> u32 {
    // SAFETY: the caller's contract; the verifier checks the access against BTF.
    unsafe { core::ptr::read(base.add(off).cast::<u32>()) }
}

/// The tid-map entry of a thread, 0 when the thread is not tracked.
#[inline(always)]
pub fn tid_entry_of(tid: u32) -> u32 {
    let Some(chunk) = TID_MAP.get_ptr(tid / TID_CHUNK) else {
        return 0;
    };
    let idx = (tid % TID_CHUNK) as usize;
    // SAFETY: `chunk` points to a map value of TID_CHUNK entries and idx < TID_CHUNK.
    unsafe { *(*chunk).get_unchecked(idx) }
}

/// Relaxed atomic add on a map value shared between CPUs.
#[inline(always)]
pub fn atomic_add(target: *mut u64, v: u64) {
    // SAFETY: `target` points into a map value, 8-byte aligned, valid for the program's
    // lifetime; the kernel side only ever touches it atomically or from one CPU.
    // The bpf target has no 64-bit compare-and-swap, so `AtomicU64` has no `fetch_add`;
    // the intrinsic lowers to BPF's atomic add instruction.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            target, v,
        );
    }
}
