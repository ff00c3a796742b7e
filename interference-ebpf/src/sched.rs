//! Run-queue latency and preemption attribution.
//!
//! A tracked thread becomes *queued* when it is woken (`sched_wakeup`) or when it is
//! switched out while still runnable (`sched_switch` with `prev->__state == TASK_RUNNING`,
//! the same test schedstat's run_delay uses). It stops being queued when it is switched
//! in: that wait goes into its histogram. When it was switched out while runnable, the
//! VM of the task that took the CPU is remembered, and the wait is charged to the
//! (victim, aggressor) cell of the preemption matrix.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::btf_tracepoint, programs::BtfTracePointContext};
use interference_common::{entry_slot, entry_vm, hist_bucket, MAX_VMS};

use crate::shared::{
    atomic_add, global, load_u32, tid_entry_of, EPOCH, PREEMPT, TASK_PID_OFF, TASK_STATE_OFF,
    THREAD_STATS,
};

/// `sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next, ...)`
/// (the trailing `prev_state` argument only exists from 5.18 on, so it is read from the
/// task itself).
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    let prev: *const u8 = ctx.arg(1);
    let next: *const u8 = ctx.arg(2);
    let pid_off = global(&TASK_PID_OFF);
    // SAFETY: prev and next are BTF task_struct pointers; offsets come from BTF.
    let prev_entry = tid_entry_of(unsafe { load_u32(prev, pid_off) });
    let next_entry = tid_entry_of(unsafe { load_u32(next, pid_off) });
    if prev_entry == 0 && next_entry == 0 {
        return 0;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    if prev_entry != 0 {
        // SAFETY: as above.
        let state = unsafe { load_u32(prev, global(&TASK_STATE_OFF)) };
        if state == 0 {
            switched_out_runnable(prev_entry, entry_vm(next_entry), now);
        }
    }
    if next_entry != 0 {
        switched_in(next_entry, now);
    }
    0
}

/// `sched_wakeup(struct task_struct *p)`.
#[btf_tracepoint(function = "sched_wakeup")]
pub fn sched_wakeup(ctx: BtfTracePointContext) -> i32 {
    let p: *const u8 = ctx.arg(0);
    // SAFETY: p is a BTF task_struct pointer; the offset comes from BTF.
    let entry = tid_entry_of(unsafe { load_u32(p, global(&TASK_PID_OFF)) });
    if entry == 0 {
        return 0;
    }
    if let Some(st) = THREAD_STATS.get_ptr_mut(entry_slot(entry)) {
        // SAFETY: map value pointer; this thread's slot is written by the CPU handling it.
        unsafe {
            (*st).queued_at_ns = bpf_ktime_get_ns();
            (*st).preempted_by = 0;
        }
    }
    0
}

#[inline(always)]
fn switched_out_runnable(entry: u32, aggressor_vm: u32, now: u64) {
    if let Some(st) = THREAD_STATS.get_ptr_mut(entry_slot(entry)) {
        // SAFETY: map value pointer.
        unsafe {
            (*st).queued_at_ns = now;
            (*st).preempted_by = aggressor_vm + 1;
            (*st).preempted += 1;
        }
    }
    if let Some(cell) = preempt_cell(entry_vm(entry), aggressor_vm) {
        // SAFETY: map value pointer.
        atomic_add(unsafe { &raw mut (*cell).count }, 1);
    }
}

#[inline(always)]
fn switched_in(entry: u32, now: u64) {
    let Some(st) = THREAD_STATS.get_ptr_mut(entry_slot(entry)) else {
        return;
    };
    // SAFETY: map value pointer; a thread is switched in on one CPU at a time.
    unsafe {
        let queued = (*st).queued_at_ns;
        if queued == 0 || queued > now {
            return;
        }
        let wait = now - queued;
        (*st).queued_at_ns = 0;
        (*st).count += 1;
        (*st).sum_ns += wait;
        let bucket = hist_bucket(wait);
        if let Some(b) = (*st).hist.get_mut(bucket) {
            *b += 1;
        }
        let epoch = match EPOCH.get(0) {
            Some(e) => *e,
            None => 0,
        };
        if (*st).max_epoch != epoch {
            (*st).max_epoch = epoch;
            (*st).max_ns = wait;
        } else if wait > (*st).max_ns {
            (*st).max_ns = wait;
        }
        let by = (*st).preempted_by;
        if by != 0 {
            (*st).preempted_by = 0;
            (*st).preempted_ns += wait;
            if let Some(cell) = preempt_cell(entry_vm(entry), by - 1) {
                atomic_add(&raw mut (*cell).ns, wait);
            }
        }
    }
}

#[inline(always)]
fn preempt_cell(victim: u32, aggressor: u32) -> Option<*mut interference_common::PreemptCell> {
    let row = PREEMPT.get_ptr_mut(victim)?;
    let col = (aggressor % MAX_VMS) as usize;
    // SAFETY: row points to a map value of MAX_VMS cells and col < MAX_VMS.
    Some(unsafe { (*row).as_mut_ptr().add(col) })
}
