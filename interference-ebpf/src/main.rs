//! eBPF programs of `interference`: run-queue latency and preemption attribution per
//! tracked thread, block I/O per VM.
//!
//! Route taken (docs/architecture.md, "eBPF design"): tp_btf programs, with the few
//! `task_struct` / `struct request` field offsets they need computed by userspace from
//! the running kernel's BTF and set as read-only globals before load. The verifier sees
//! those globals as constants (the .rodata map is frozen), so the loads below are plain
//! BTF-checked loads, not helper calls. Classic tracepoints would give us pids for free
//! but pay for building the trace record on every event.
//!
//! Hot-path budget: no map update or delete per scheduler event, and an untracked
//! thread costs one inlined array lookup. Userspace reads the aggregated maps once per
//! tick; nothing here wakes userspace up.
#![no_std]
#![no_main]
#![expect(internal_features, reason = "core::intrinsics::atomic_xadd: the bpf target has no 64-bit CAS, so AtomicU64 has no fetch_add")]
#![feature(core_intrinsics)]

mod block;
mod sched;
mod shared;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
