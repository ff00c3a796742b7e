//! Merging the three sources into one VM list: static entries win over libvirt, which
//! wins over bare QEMU processes. The same VM seen by two sources (a shared thread, or
//! one's cgroup inside the other's) appears once, and a QEMU process found inside a
//! static or libvirt VM gives it its pid, UUID and QMP socket. Pure: no I/O.

use std::collections::HashSet;

use tracing::debug;

use super::names::{sanitize_vm_name, MAX_NAME_LEN};
use super::qemu::QemuProcess;
use super::types::{Vm, VmCgroup, VmSource};

/// Whether two cgroup lists name the same cgroup or one nested in the other.
fn cgroups_overlap(a: &[VmCgroup], b: &[VmCgroup]) -> bool {
    a.iter().any(|x| {
        b.iter()
            .any(|y| x.path.starts_with(&y.path) || y.path.starts_with(&x.path))
    })
}

fn threads_overlap(a: &Vm, b: &Vm) -> bool {
    let tids: HashSet<u32> = a.threads.iter().map(|t| t.tid).collect();
    b.threads.iter().any(|t| tids.contains(&t.tid))
}

/// Whether process `p` runs inside `vm`: its pid is one of the VM's threads, or one
/// of its cgroups lies inside one of the VM's.
fn contains_process(vm: &Vm, p: &QemuProcess) -> bool {
    vm.threads.iter().any(|t| t.tid == p.pid)
        || p.cgroups
            .iter()
            .any(|pc| vm.cgroups.iter().any(|vc| pc.path.starts_with(&vc.path)))
}

/// A VM reported under another name than its own, because an earlier one has it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Renamed {
    pub name: String,
    pub source: VmSource,
    pub pid: Option<u32>,
    pub reported_as: String,
}

/// Merge, disambiguate names and sort by name. `bare_qemu`: whether QEMU processes
/// that belong to no static or libvirt VM are VMs of their own.
pub fn merge(
    statics: Vec<Vm>,
    libvirt: Vec<Vm>,
    processes: Vec<QemuProcess>,
    bare_qemu: bool,
) -> Vec<Vm> {
    merge_noting(statics, libvirt, processes, bare_qemu).0
}

/// [`merge`], and the VMs it had to rename (for the caller to say once: discovery
/// runs every tick, and anyone who can start a process can clash names).
pub fn merge_noting(
    statics: Vec<Vm>,
    libvirt: Vec<Vm>,
    processes: Vec<QemuProcess>,
    bare_qemu: bool,
) -> (Vec<Vm>, Vec<Renamed>) {
    let mut vms = statics;
    for l in libvirt {
        match vms
            .iter_mut()
            .find(|s| cgroups_overlap(&s.cgroups, &l.cgroups) || threads_overlap(s, &l))
        {
            Some(s) => {
                debug!(libvirt = %l.name, vm = %s.name, "libvirt machine is a static VM");
                s.allocation = s.allocation.or(l.allocation);
            }
            None => vms.push(l),
        }
    }
    for p in processes {
        match vms.iter_mut().find(|vm| contains_process(vm, &p)) {
            Some(vm) if vm.pid.is_none() => adopt(vm, p),
            Some(vm) if vm.pid == Some(p.pid) => {}
            Some(vm) => {
                debug!(vm = %vm.name, pid = p.pid, "a second QEMU process inside one VM; keeping the first")
            }
            None if bare_qemu => vms.push(p.into_vm()),
            None => debug!(
                pid = p.pid,
                "QEMU process outside any static or libvirt VM; bare QEMU discovery is off"
            ),
        }
    }
    let renamed = disambiguate(&mut vms);
    vms.sort_by(|a, b| a.name.cmp(&b.name));
    (vms, renamed)
}

/// Give `vm` what only the process knows, and what the VM's own source left unknown
/// of its allocation (`-smp`, `-m`; a static entry's `vcpus` / `memory_mib` win). A
/// libvirt VM also takes the process's `-name`: libvirt passes the real domain name
/// there, while the scope name may be shortened or stripped of characters systemd
/// does not allow.
fn adopt(vm: &mut Vm, p: QemuProcess) {
    if vm.source == VmSource::Libvirt {
        if let Some(name) = &p.name {
            vm.name = sanitize_vm_name(name, &vm.name);
        }
    }
    vm.pid = Some(p.pid);
    vm.uuid = vm.uuid.take().or(p.uuid);
    vm.qmp_socket = vm.qmp_socket.take().or(p.qmp_socket);
    vm.allocation = vm.allocation.or(p.allocation);
}

/// The first VM with a name keeps it (sources are in precedence order, processes by
/// pid, so the choice is stable); later ones get `-<pid>` (or `-<source>`) appended,
/// then a counter if that is taken too, the name cut so the whole stays within
/// [`MAX_NAME_LEN`].
fn disambiguate(vms: &mut [Vm]) -> Vec<Renamed> {
    let mut taken: HashSet<String> = HashSet::new();
    let mut renamed = Vec::new();
    for vm in vms.iter_mut() {
        if taken.insert(vm.name.clone()) {
            continue;
        }
        let suffix = match vm.pid {
            Some(pid) => pid.to_string(),
            None => format!("{:?}", vm.source).to_lowercase(),
        };
        let with = |tail: &str| {
            let keep = MAX_NAME_LEN.saturating_sub(tail.len() + 1);
            let head: String = vm.name.chars().take(keep).collect();
            format!("{head}-{tail}")
        };
        let mut candidate = with(&suffix);
        let mut n = 2;
        while taken.contains(&candidate) {
            candidate = with(&format!("{suffix}-{n}"));
            n += 1;
        }
        debug!(
            "two VMs are named {:?}; the {:?} one (pid {:?}) is reported as {candidate:?}",
            vm.name, vm.source, vm.pid
        );
        renamed.push(Renamed {
            name: std::mem::replace(&mut vm.name, candidate.clone()),
            source: vm.source,
            pid: vm.pid,
            reported_as: candidate.clone(),
        });
        taken.insert(candidate);
    }
    renamed
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::inventory::types::{Allocation, Hierarchy, VmThread};

    fn cg(path: &str) -> VmCgroup {
        VmCgroup {
            path: PathBuf::from(path),
            hierarchy: Hierarchy::V2,
        }
    }

    fn vm(name: &str, source: VmSource, cgroups: &[&str], tids: &[u32]) -> Vm {
        Vm {
            cgroups: cgroups.iter().map(|c| cg(c)).collect(),
            threads: tids
                .iter()
                .map(|&tid| VmThread {
                    tid,
                    name: "t".into(),
                    vcpu: None,
                })
                .collect(),
            ..Vm::new(name, source)
        }
    }

    fn process(pid: u32, name: Option<&str>, cgroups: &[&str]) -> QemuProcess {
        QemuProcess {
            pid,
            name: name.map(str::to_owned),
            uuid: Some(format!("uuid-{pid}")),
            qmp_socket: Some(PathBuf::from(format!("/run/{pid}.qmp"))),
            threads: vec![VmThread {
                tid: pid,
                name: "qemu-system-x86".into(),
                vcpu: None,
            }],
            cgroups: cgroups.iter().map(|c| cg(c)).collect(),
            allocation: Allocation {
                vcpus: Some(4),
                memory_bytes: Some(8 << 30),
            },
        }
    }

    #[test]
    fn static_vm_adopts_its_qemu_process() {
        let mut s = vm("web-1", VmSource::Static, &["/cg/lab/web-1"], &[]);
        s.customer = Some("acme".into());
        let p = process(300, Some("guest-name"), &["/cg/lab/web-1/emulator"]);
        let out = merge(vec![s], vec![], vec![p], true);
        assert_eq!(out.len(), 1);
        let v = &out[0];
        assert_eq!(
            (v.name.as_str(), v.source, v.pid),
            ("web-1", VmSource::Static, Some(300))
        );
        assert_eq!(v.customer.as_deref(), Some("acme"));
        assert_eq!(v.uuid.as_deref(), Some("uuid-300"));
        assert_eq!(v.qmp_socket, Some(PathBuf::from("/run/300.qmp")));
    }

    #[test]
    fn libvirt_vm_takes_pid_and_domain_name_and_static_wins_over_it() {
        let l = vm(
            "web1",
            VmSource::Libvirt,
            &["/cg/machine.slice/s"],
            &[400, 401],
        );
        let dup = vm("dup", VmSource::Libvirt, &["/cg/lab/x"], &[]);
        let s = vm("x", VmSource::Static, &["/cg/lab/x"], &[]);
        let p = process(
            400,
            Some("web_1"),
            &["/cg/machine.slice/s/libvirt/emulator"],
        );
        let out = merge(vec![s], vec![l, dup], vec![p], true);
        let got: Vec<_> = out
            .iter()
            .map(|v| (v.name.as_str(), v.source, v.pid))
            .collect();
        assert_eq!(
            got,
            vec![
                ("web_1", VmSource::Libvirt, Some(400)),
                ("x", VmSource::Static, None)
            ]
        );
    }

    #[test]
    fn bare_processes_and_duplicate_names() {
        let s = vm("web-1", VmSource::Static, &["/cg/lab/web-1"], &[]);
        let out = merge(
            vec![s],
            vec![],
            vec![
                process(500, Some("web-1"), &["/cg/user.slice"]),
                process(501, Some("web-1"), &[]),
                process(502, None, &[]),
            ],
            true,
        );
        let names: Vec<_> = out.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, vec!["qemu-502", "web-1", "web-1-500", "web-1-501"]);
        assert_eq!(out[1].source, VmSource::Static);

        let out = merge(vec![], vec![], vec![process(600, None, &[])], false);
        assert!(out.is_empty());
    }

    #[test]
    fn disambiguation_without_pid_uses_source_and_counter() {
        let mut vms = vec![
            vm("a", VmSource::Static, &[], &[]),
            vm("a", VmSource::Libvirt, &[], &[]),
            vm("a-libvirt", VmSource::Static, &[], &[]),
        ];
        // Order matters: the third keeps its own name only if it comes first.
        vms.swap(1, 2);
        disambiguate(&mut vms);
        let names: Vec<_> = vms.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, vec!["a", "a-libvirt", "a-libvirt-2"]);
    }

    #[test]
    fn a_clash_of_the_longest_names_stays_within_the_limit_and_is_reported() {
        let long = "x".repeat(MAX_NAME_LEN);
        let (out, renamed) = merge_noting(
            vec![vm(&long, VmSource::Static, &["/cg/lab/x"], &[])],
            vec![],
            vec![
                process(4_194_304, Some(&long), &["/cg/user.slice/a"]),
                process(4_194_305, Some(&long), &["/cg/user.slice/b"]),
            ],
            true,
        );
        for v in &out {
            assert!(
                crate::inventory::names::check_vm_name(&v.name).is_ok(),
                "{:?}",
                v.name
            );
        }
        assert_eq!(out.iter().filter(|v| v.name == long).count(), 1);
        assert_eq!(renamed.len(), 2);
        assert_eq!(renamed[0].name, long);
        assert_eq!(renamed[0].pid, Some(4_194_304));
        assert!(renamed[0].reported_as.ends_with("-4194304"));
        assert_eq!(renamed[0].reported_as.len(), MAX_NAME_LEN);
    }

    #[test]
    fn allocation_comes_from_the_config_first_then_the_process() {
        let alloc = |vcpus, memory_bytes| Allocation {
            vcpus,
            memory_bytes,
        };
        // Static with vcpus only: memory from the process's -m, vcpus its own.
        let mut s = vm("web-1", VmSource::Static, &["/cg/lab/web-1"], &[]);
        s.allocation = alloc(Some(2), None);
        // Static with both: the process's values are ignored.
        let mut full = vm("db", VmSource::Static, &["/cg/lab/db"], &[]);
        full.allocation = alloc(Some(1), Some(512 << 20));
        // libvirt knows nothing from its cgroups: all from the process.
        let l = vm("batch", VmSource::Libvirt, &["/cg/machine.slice/b"], &[]);
        // A libvirt machine that is a static VM fills what the static entry left out.
        let mut dup = vm("dup", VmSource::Libvirt, &["/cg/lab/web-1"], &[]);
        dup.allocation = alloc(Some(16), Some(3 << 30));
        let out = merge(
            vec![s, full],
            vec![l, dup],
            vec![
                process(300, None, &["/cg/lab/web-1/emulator"]),
                process(301, None, &["/cg/lab/db"]),
                process(
                    302,
                    Some("batch"),
                    &["/cg/machine.slice/b/libvirt/emulator"],
                ),
                process(303, None, &[]),
            ],
            true,
        );
        let got: Vec<_> = out
            .iter()
            .map(|v| (v.name.as_str(), v.allocation))
            .collect();
        assert_eq!(
            got,
            vec![
                ("batch", alloc(Some(4), Some(8 << 30))),
                ("db", alloc(Some(1), Some(512 << 20))),
                ("qemu-303", alloc(Some(4), Some(8 << 30))),
                ("web-1", alloc(Some(2), Some(3 << 30))),
            ]
        );
    }
}
