//! What the controller is told about this host: its CPU model and QEMU version (live
//! migration needs compatible ones), and its capacity (placement reasons in vCPUs and
//! MiB: what the host has, and what its VMs were allocated).

use std::process::Command;

use interference_fleet::wire::Capacity;

use crate::inventory::Vm;

/// `/proc/cpuinfo`'s first "model name"; empty when there is none.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default()
}

/// The first line of `qemu-system-x86_64 --version`; empty without QEMU.
pub fn qemu_version() -> String {
    Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_default()
}

/// `MemTotal` of `/proc/meminfo`, MiB (0 when unreadable).
pub fn memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024)
        })
        .unwrap_or(0)
}

/// The host's capacity with these VMs on it: what they were allocated is taken (a VM
/// whose allocation is unknown takes nothing it can be charged with).
pub fn capacity<'a>(
    vms: impl IntoIterator<Item = &'a Vm>,
    host_cpus: usize,
    memory_mib: u64,
) -> Capacity {
    let (mut vcpus, mut memory, mut count) = (0u64, 0u64, 0usize);
    for v in vms {
        vcpus += v.vcpus().map_or(0, u64::from);
        memory += v.allocation.memory_bytes.map_or(0, |b| b >> 20);
        count += 1;
    }
    let total_vcpus = u32::try_from(host_cpus).unwrap_or(u32::MAX);
    Capacity {
        total_vcpus,
        total_memory_mib: memory_mib,
        free_vcpus: u32::try_from(u64::from(total_vcpus).saturating_sub(vcpus)).unwrap_or(0),
        free_memory_mib: memory_mib.saturating_sub(memory),
        vms: u32::try_from(count).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::VmSource;

    #[test]
    fn capacity_takes_what_the_vms_were_allocated() {
        let mut a = Vm::new("a", VmSource::Static);
        a.allocation.vcpus = Some(2);
        a.allocation.memory_bytes = Some(4096 << 20);
        let b = Vm::new("b", VmSource::Static);
        let c = capacity(&[a, b], 8, 16_384);
        assert_eq!(
            c,
            Capacity {
                total_vcpus: 8,
                total_memory_mib: 16_384,
                free_vcpus: 6,
                free_memory_mib: 12_288,
                vms: 2,
            }
        );
        assert!(memory_mib() > 0);
    }
}
