//! A "host" that is a network namespace on a shared machine (the fleet lab) owns the
//! QEMU processes in its namespace only: one that migrated away now runs in another
//! namespace and belongs to the host there. A namespace is told by the identity of
//! `/proc/<pid>/ns/net` (device and inode), as `ip netns identify` does.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use super::qemu::QemuProcess;
use super::types::{Vm, VmSource};

fn netns_of(proc_root: &Path, pid: &str) -> Option<(u64, u64)> {
    let m = std::fs::metadata(proc_root.join(pid).join("ns/net")).ok()?;
    Some((m.dev(), m.ino()))
}

/// What discovery found, less what runs in other network namespaces: done before the
/// lists are merged, so a VM's QEMU in another namespace (the same guest's migration
/// destination, say) never even competes for its name. Static VMs are kept (the config
/// names them); a libvirt machine whose process is unknown is left out.
pub fn keep_own(proc_root: &Path, libvirt: &mut Vec<Vm>, processes: &mut Vec<QemuProcess>) {
    let Some(own) = netns_of(proc_root, "self") else {
        tracing::warn!("cannot read this process's network namespace; keeping every VM");
        return;
    };
    let ours = |pid: u32| netns_of(proc_root, &pid.to_string()) == Some(own);
    libvirt.retain(|vm| vm.source == VmSource::Static || vm.pid.is_some_and(ours));
    processes.retain(|p| ours(p.pid));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_this_namespaces_processes_and_static_vms() {
        let proc_root = Path::new("/proc");
        let me = Vm {
            pid: Some(std::process::id()),
            ..Vm::new("me", VmSource::Libvirt)
        };
        let gone = Vm {
            pid: Some(u32::MAX - 1),
            ..Vm::new("gone", VmSource::Libvirt)
        };
        let no_pid = Vm::new("no-pid", VmSource::Libvirt);
        let declared = Vm::new("declared", VmSource::Static);
        let mut libvirt = vec![me, gone, no_pid, declared];
        let mut processes = Vec::new();
        keep_own(proc_root, &mut libvirt, &mut processes);
        let names: Vec<&str> = libvirt.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["me", "declared"]);
    }
}
