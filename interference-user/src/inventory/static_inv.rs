//! VMs declared in the config: their cgroups are given, their threads are what those
//! cgroups (and their children) hold right now.

use std::path::Path;

use tracing::{debug, warn};

use super::cgroupfs::Mounts;
use super::threads::{cgroup_threads, Cache};
use super::types::{StaticVm, Vm, VmCgroup, VmSource};

/// The declared VMs that are present: a VM none of whose cgroup directories exists is
/// not running and is left out (the config was validated at load; a cgroup that no
/// longer classifies, because a hierarchy was unmounted, is dropped with a warning).
pub fn resolve(proc_root: &Path, mounts: &Mounts, declared: &[StaticVm]) -> Vec<Vm> {
    resolve_classified(
        proc_root,
        &classify_all(mounts, declared),
        &mut Cache::default(),
    )
}

/// Classifies every declared cgroup path once (a path that cannot be classified is
/// warned about and left out).
pub fn classify_all(mounts: &Mounts, declared: &[StaticVm]) -> Vec<(StaticVm, Vec<VmCgroup>)> {
    declared
        .iter()
        .map(|decl| {
            let cgroups = decl
                .cgroups
                .iter()
                .filter_map(|path| match mounts.classify(path) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        warn!("vm {}: {e}", decl.name);
                        None
                    }
                })
                .collect();
            (decl.clone(), cgroups)
        })
        .collect()
}

/// The static VMs that exist now, with their threads.
pub fn resolve_classified(
    proc_root: &Path,
    declared: &[(StaticVm, Vec<VmCgroup>)],
    cache: &mut Cache,
) -> Vec<Vm> {
    let mut out = Vec::new();
    for (decl, classified) in declared {
        let mut cgroups = Vec::new();
        for c in classified {
            if c.path.is_dir() {
                cgroups.push(c.clone());
            } else {
                debug!(vm = %decl.name, path = %c.path.display(), "cgroup does not exist (yet)")
            }
        }
        if cgroups.is_empty() {
            debug!(vm = %decl.name, "no cgroup of this static VM exists; not running");
            continue;
        }
        let threads = match cgroup_threads(proc_root, &cgroups, cache) {
            Ok(t) => t,
            Err(e) if e.vanished() => continue,
            Err(e) => {
                warn!("skipping static vm {}: {e}", decl.name);
                continue;
            }
        };
        out.push(Vm {
            name: decl.name.clone(),
            uuid: None,
            source: VmSource::Static,
            pid: None,
            qmp_socket: None,
            cgroups,
            threads,
            customer: decl.customer.clone(),
            priority: decl.priority,
            workload: decl.workload.clone(),
            allocation: decl.allocation(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::types::{Allocation, Hierarchy, Priority};
    use crate::testing::proc_fs::FakeHost;

    fn decl(name: &str, cgroups: &[&Path]) -> StaticVm {
        StaticVm {
            name: name.into(),
            cgroups: cgroups.iter().map(|p| p.to_path_buf()).collect(),
            customer: Some("acme".into()),
            priority: Priority::High,
            workload: Some("web".into()),
            vcpus: Some(2),
            memory_mib: Some(1536),
        }
    }

    #[test]
    fn static_vm_threads_from_v1_and_v2_cgroups() {
        let host = FakeHost::hybrid();
        host.thread(20, "qemu-system-x86");
        host.thread(21, "CPU 0/TCG");
        host.thread(22, "stress");
        let v2 = host.cgroup("unified/lab/web-1", &[20, 21, 22]);
        let v1 = host.cgroup("cpu/lab/web-1", &[20, 21, 22, 23]);
        let missing = host.cgroup_base().join("cpuset/lab/web-1");
        let vms = resolve(
            &host.proc(),
            &host.mounts(),
            &[decl("web-1", &[&v2, &v1, &missing])],
        );
        assert_eq!(vms.len(), 1);
        let vm = &vms[0];
        assert_eq!(
            (vm.source, vm.priority, vm.customer.as_deref()),
            (VmSource::Static, Priority::High, Some("acme"))
        );
        assert_eq!(vm.cgroups.len(), 2);
        assert_eq!(vm.cgroups[0].hierarchy, Hierarchy::V2);
        let got: Vec<_> = vm.threads.iter().map(|t| (t.tid, t.vcpu)).collect();
        assert_eq!(got, vec![(20, None), (21, Some(0)), (22, None)]);
        assert_eq!(
            vm.allocation,
            Allocation {
                vcpus: Some(2),
                memory_bytes: Some(1536 << 20)
            }
        );
    }

    #[test]
    fn static_vm_without_cgroups_is_not_running() {
        let host = FakeHost::pure_v2();
        let gone = host.cgroup_base().join("lab/gone");
        assert!(resolve(&host.proc(), &host.mounts(), &[decl("gone", &[&gone])]).is_empty());
    }
}
