//! libvirt's machine cgroups, in every layout libvirt has used:
//!
//! - systemd: `machine.slice/machine-qemu\x2d<id>\x2d<name>.scope/` (older libvirt:
//!   `machine-qemu\x2d<name>.scope`), with `libvirt/{emulator,vcpuN,iothreadN}`
//!   children since libvirt 6 and without the `libvirt/` level before; nested slices
//!   (`machine.slice/machine-foo.slice/...`) for custom partitions;
//! - without systemd: `machine/<name>.libvirt-qemu/{emulator,vcpuN}` (custom
//!   partitions: `machine/<p>.partition/...`).
//!
//! Each layout is looked for at the root of every mounted hierarchy, so v1 (one tree
//! per controller), v2 (/sys/fs/cgroup) and hybrid hosts (v2 at
//! /sys/fs/cgroup/unified) are one code path; the same relative path in several
//! hierarchies is one VM with one cgroup per hierarchy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::cgroupfs::Mounts;
use super::error::is_vanished;
use super::names::sanitize_vm_name;
use super::threads::{cgroup_threads, Cache};
use super::types::{Allocation, Priority, Vm, VmCgroup, VmSource};

/// How many levels of `.slice` / `.partition` directories are searched.
const MAX_PARTITION_DEPTH: usize = 3;

/// A libvirt machine directory, identified by its path relative to the hierarchy root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Domain name as the directory spells it (systemd escaping decoded).
    pub name: String,
    /// libvirt's domain id, when the scope name carries it.
    pub id: Option<u32>,
    /// One cgroup per hierarchy the machine appears in.
    pub cgroups: Vec<VmCgroup>,
}

/// Undo systemd's unit-name escaping (`\x2d` for `-`, any `\xNN` byte).
pub fn systemd_unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') {
            let hex = bytes
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `machine-qemu\x2d3\x2dweb\x2d1.scope` -> (Some(3), "web-1");
/// `machine-qemu\x2dweb.scope` (libvirt before 1.3) -> (None, "web"). None for other
/// scopes (containers, other managers).
pub fn decode_scope_name(dir_name: &str) -> Option<(Option<u32>, String)> {
    let inner = dir_name.strip_prefix("machine-")?.strip_suffix(".scope")?;
    let machine = systemd_unescape(inner);
    let rest = machine.strip_prefix("qemu-")?;
    let numbered = rest.split_once('-').and_then(|(id, name)| {
        let id = id
            .parse()
            .ok()
            .filter(|_| id.bytes().all(|b| b.is_ascii_digit()))?;
        (!name.is_empty()).then(|| (Some(id), name.to_owned()))
    });
    match numbered {
        Some(found) => Some(found),
        None if !rest.is_empty() => Some((None, rest.to_owned())),
        None => None,
    }
}

/// `web-1.libvirt-qemu` -> "web-1". libvirt prefixes `_` to names that could clash
/// with cgroup control files, so one leading `_` is dropped.
pub fn decode_partition_name(dir_name: &str) -> Option<String> {
    let name = dir_name.strip_suffix(".libvirt-qemu")?;
    let name = name.strip_prefix('_').unwrap_or(name);
    (!name.is_empty()).then(|| name.to_owned())
}

/// Every libvirt QEMU machine cgroup on the host, keyed by relative path, in path order.
pub fn find_machines(mounts: &Mounts) -> Vec<Machine> {
    let mut found: BTreeMap<PathBuf, Machine> = BTreeMap::new();
    for mount in mounts
        .hierarchies()
        .into_iter()
        .filter(|m| m.has_resources())
    {
        for (top, systemd) in [("machine.slice", true), ("machine", false)] {
            search(
                &mount.mount_point.join(top),
                systemd,
                0,
                &mut |dir, id, name| {
                    let Ok(rel) = dir.strip_prefix(&mount.mount_point) else {
                        return;
                    };
                    let cgroup = VmCgroup {
                        path: dir.to_path_buf(),
                        hierarchy: mount.hierarchy.clone(),
                    };
                    found
                        .entry(rel.to_path_buf())
                        .or_insert_with(|| Machine {
                            name,
                            id,
                            cgroups: Vec::new(),
                        })
                        .cgroups
                        .push(cgroup);
                },
            );
        }
    }
    found.into_values().collect()
}

fn search(
    dir: &Path,
    systemd: bool,
    depth: usize,
    found: &mut dyn FnMut(&Path, Option<u32>, String),
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if is_vanished(&e) => return,
        Err(e) => {
            warn!("cannot list libvirt machines in {}: {e}", dir.display());
            return;
        }
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for path in dirs {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let partition = if systemd {
            name.ends_with(".slice")
        } else {
            name.ends_with(".partition")
        };
        if partition && depth < MAX_PARTITION_DEPTH {
            search(&path, systemd, depth + 1, found);
        } else if systemd {
            if let Some((id, vm)) = decode_scope_name(name) {
                found(&path, id, vm);
            }
        } else if let Some(vm) = decode_partition_name(name) {
            found(&path, None, vm);
        }
    }
}

/// libvirt's VMs with their threads. A machine whose cgroups vanish mid-scan is
/// skipped silently, one that cannot be read with a warning.
pub fn scan(proc_root: &Path, mounts: &Mounts, cache: &mut Cache) -> Vec<Vm> {
    let mut out = Vec::new();
    for machine in find_machines(mounts) {
        let threads = match cgroup_threads(proc_root, &machine.cgroups, cache) {
            Ok(t) => t,
            Err(e) if e.vanished() => {
                debug!(machine = %machine.name, "libvirt machine went away during the scan");
                continue;
            }
            Err(e) => {
                warn!("skipping libvirt machine {}: {e}", machine.name);
                continue;
            }
        };
        let fallback = match machine.id {
            Some(id) => format!("libvirt-{id}"),
            None => "libvirt".to_owned(),
        };
        out.push(Vm {
            name: sanitize_vm_name(&machine.name, &fallback),
            uuid: None,
            source: VmSource::Libvirt,
            pid: None,
            qmp_socket: None,
            cgroups: machine.cgroups,
            threads,
            customer: None,
            priority: Priority::default(),
            workload: None,
            // The cgroups say nothing about it; the QEMU process found in them does
            // (merge::merge takes its -smp and -m).
            allocation: Allocation::default(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::types::Hierarchy;
    use crate::testing::proc_fs::FakeHost;

    #[test]
    fn scope_names() {
        assert_eq!(
            decode_scope_name(r"machine-qemu\x2d3\x2dweb\x2d1.scope"),
            Some((Some(3), "web-1".into()))
        );
        assert_eq!(
            decode_scope_name(r"machine-qemu\x2d12\x2ddb.scope"),
            Some((Some(12), "db".into()))
        );
        assert_eq!(
            decode_scope_name(r"machine-qemu\x2dold\x2dvm.scope"),
            Some((None, "old-vm".into()))
        );
        assert_eq!(decode_scope_name(r"machine-lxc\x2d3\x2dct.scope"), None);
        assert_eq!(decode_scope_name("machine-qemu.scope"), None);
        assert_eq!(decode_scope_name("session-1.scope"), None);
        assert_eq!(systemd_unescape(r"a\x2db\x5fc\xzz"), r"a-b_c\xzz");
        assert_eq!(
            decode_partition_name("web-1.libvirt-qemu"),
            Some("web-1".into())
        );
        assert_eq!(
            decode_partition_name("_cpu.libvirt-qemu"),
            Some("cpu".into())
        );
        assert_eq!(decode_partition_name("ct.libvirt-lxc"), None);
    }

    fn threads_of(vm: &Vm) -> Vec<(u32, Option<u32>)> {
        vm.threads.iter().map(|t| (t.tid, t.vcpu)).collect()
    }

    fn qemu_threads(host: &FakeHost) {
        host.thread(10, "qemu-system-x86");
        host.thread(11, "CPU 0/KVM");
        host.thread(12, "CPU 1/KVM");
    }

    /// What the lab creates on this (hybrid) host: the libvirt >= 6 layout under the
    /// unified hierarchy and the v1 cpu and cpuset hierarchies.
    #[test]
    fn systemd_hybrid_layout_with_libvirt_dir() {
        let host = FakeHost::hybrid();
        qemu_threads(&host);
        let scope = r"machine.slice/machine-qemu\x2d3\x2dweb\x2d1.scope";
        for h in ["unified", "cpu", "cpuset"] {
            host.cgroup(&format!("{h}/{scope}"), &[]);
            host.cgroup(&format!("{h}/{scope}/libvirt"), &[]);
            host.cgroup(&format!("{h}/{scope}/libvirt/emulator"), &[10]);
            host.cgroup(&format!("{h}/{scope}/libvirt/vcpu0"), &[11]);
            host.cgroup(&format!("{h}/{scope}/libvirt/vcpu1"), &[12]);
        }
        let vms = scan(&host.proc(), &host.mounts(), &mut Cache::default());
        assert_eq!(vms.len(), 1);
        let vm = &vms[0];
        assert_eq!((vm.name.as_str(), vm.source), ("web-1", VmSource::Libvirt));
        let base = host.cgroup_base();
        let paths: Vec<_> = vm.cgroups.iter().map(|c| c.path.clone()).collect();
        assert_eq!(
            paths,
            vec![
                base.join("cpu").join(scope),
                base.join("cpuset").join(scope),
                base.join("unified").join(scope)
            ]
        );
        assert_eq!(vm.cgroups[2].hierarchy, Hierarchy::V2);
        assert_eq!(
            threads_of(vm),
            vec![(10, None), (11, Some(0)), (12, Some(1))]
        );
    }

    #[test]
    fn systemd_pure_v2_without_libvirt_dir_and_nested_slice() {
        let host = FakeHost::pure_v2();
        qemu_threads(&host);
        let scope = r"machine.slice/machine-qemu\x2d7\x2ddb.scope";
        host.cgroup(scope, &[]);
        host.cgroup(&format!("{scope}/emulator"), &[10]);
        host.cgroup(&format!("{scope}/vcpu0"), &[11]);
        host.cgroup(
            r"machine.slice/machine-tenant.slice/machine-qemu\x2d8\x2dbatch.scope/libvirt/vcpu3",
            &[12],
        );
        host.cgroup(r"machine.slice/machine-lxc\x2d9\x2dct.scope", &[]);
        let vms = scan(&host.proc(), &host.mounts(), &mut Cache::default());
        let names: Vec<_> = vms.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, vec!["db", "batch"]);
        assert_eq!(threads_of(&vms[0]), vec![(10, None), (11, Some(0))]);
        assert_eq!(threads_of(&vms[1]), vec![(12, Some(3))]);
    }

    #[test]
    fn systemd_v1_only_layout() {
        let host = FakeHost::hybrid();
        qemu_threads(&host);
        let scope = r"machine.slice/machine-qemu\x2d1\x2dold.scope";
        for h in ["cpu", "cpuacct", "memory", "systemd"] {
            host.cgroup(&format!("{h}/{scope}"), &[10, 11]);
        }
        host.cgroup(&format!("cpu/{scope}/vcpu0"), &[11]);
        let vms = scan(&host.proc(), &host.mounts(), &mut Cache::default());
        assert_eq!(vms.len(), 1);
        assert_eq!(vms[0].cgroups.len(), 3);
        assert_eq!(threads_of(&vms[0]), vec![(10, None), (11, Some(0))]);
    }

    #[test]
    fn non_systemd_layouts_v1_and_v2() {
        let host = FakeHost::hybrid();
        qemu_threads(&host);
        for h in ["cpu", "cpuset"] {
            host.cgroup(&format!("{h}/machine/web-1.libvirt-qemu/emulator"), &[10]);
            host.cgroup(&format!("{h}/machine/web-1.libvirt-qemu/vcpu0"), &[11]);
        }
        host.cgroup("unified/machine/web-1.libvirt-qemu/vcpu1", &[12]);
        host.cgroup("unified/machine/ct.libvirt-lxc", &[]);
        let vms = scan(&host.proc(), &host.mounts(), &mut Cache::default());
        assert_eq!(vms.len(), 1);
        assert_eq!(vms[0].name, "web-1");
        assert_eq!(vms[0].cgroups.len(), 3);
        assert_eq!(
            threads_of(&vms[0]),
            vec![(10, None), (11, Some(0)), (12, Some(1))]
        );

        let host = FakeHost::pure_v2();
        qemu_threads(&host);
        host.cgroup("machine/db.libvirt-qemu/vcpu0", &[11]);
        let vms = scan(&host.proc(), &host.mounts(), &mut Cache::default());
        assert_eq!(
            (vms[0].name.as_str(), threads_of(&vms[0])),
            ("db", vec![(11, Some(0))])
        );
    }

    #[test]
    fn machine_without_thread_files_is_skipped_with_a_warning_not_an_error() {
        let host = FakeHost::pure_v2();
        // A scope directory whose thread file is missing reads as "gone".
        std::fs::create_dir_all(
            host.cgroup_base()
                .join(r"machine.slice/machine-qemu\x2d1\x2dx.scope"),
        )
        .unwrap();
        host.cgroup(r"machine.slice/machine-qemu\x2d2\x2dy.scope", &[]);
        let vms = scan(&host.proc(), &host.mounts(), &mut Cache::default());
        assert_eq!(
            vms.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            vec!["y"]
        );
    }
}
