//! Which VMs exist on this host, and which threads and cgroups belong to each.
//!
//! Three sources, merged each tick: QEMU processes found in /proc, libvirt's machine
//! cgroups (v1 and v2, systemd and non-systemd layouts), and the static `[[vm]]`
//! inventory of the TOML config. The output is a plain list of [`Vm`]; nothing here
//! knows about eBPF or what later stages do with it.
//!
//! | module         | job                                                   |
//! |----------------|-------------------------------------------------------|
//! | `cgroupfs`     | mount table, path -> hierarchy, `/proc/<pid>/cgroup`  |
//! | `threads`      | thread lists and names, vCPU indices                  |
//! | `qemu_cmdline` | -name, -uuid, QMP socket, -smp, -m from argv (pure)   |
//! | `qemu`         | QEMU processes in /proc                               |
//! | `libvirt`      | libvirt machine cgroups                               |
//! | `static_inv`   | the config's `[[vm]]` entries                         |
//! | `merge`        | one list out of the three (pure)                      |
//! | `netns`        | only this network namespace's QEMUs (simulated hosts) |

pub mod error;
pub mod libvirt;
pub mod merge;
pub mod names;
mod netns;
pub mod qemu;
pub mod qemu_cmdline;
pub mod static_inv;
pub mod threads;
pub mod types;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

pub use crate::host::mounts::{
    self as cgroupfs, CgroupMount, CgroupPathError, Mounts, MountsError,
};
pub use error::InventoryError;
pub use types::*;

/// What to look at; normally built from the config (`[discovery]`, `[[vm]]`).
#[derive(Debug, Clone)]
pub struct InventoryOptions {
    /// `/proc`, or a fake tree in tests.
    pub proc_root: PathBuf,
    pub mounts: Mounts,
    pub static_vms: Vec<StaticVm>,
    /// List QEMU processes that belong to no static or libvirt VM as VMs. /proc is
    /// scanned either way, to give static and libvirt VMs their pid and QMP socket.
    pub qemu: bool,
    /// Look for libvirt machine cgroups.
    pub libvirt: bool,
    /// Leave out QEMU processes of other network namespaces (`[discovery]
    /// own_netns_only`).
    pub own_netns_only: bool,
}

/// The inventory stage.
#[derive(Debug)]
pub struct Inventory {
    options: InventoryOptions,
    /// The static VMs' cgroup paths, classified once: the config does not change.
    static_cgroups: Vec<(StaticVm, Vec<VmCgroup>)>,
    /// Thread names and cgroup child lists kept across discoveries.
    cache: Mutex<threads::Cache>,
    /// The renames of the last discovery: a clash is said when it starts, not every
    /// tick it lasts.
    renamed: Mutex<BTreeSet<merge::Renamed>>,
}

impl Inventory {
    pub fn new(options: InventoryOptions) -> Self {
        let static_cgroups = static_inv::classify_all(&options.mounts, &options.static_vms);
        Self {
            options,
            static_cgroups,
            cache: Mutex::new(threads::Cache::default()),
            renamed: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn options(&self) -> &InventoryOptions {
        &self.options
    }

    /// Every VM on the host now, sorted by name, names unique. Only an unreadable
    /// /proc fails the whole scan; a VM that disappears meanwhile is left out, and one
    /// that cannot be read is left out with a warning.
    pub fn discover(&self) -> Result<Vec<Vm>, InventoryError> {
        let o = &self.options;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.next_tick();
        let statics =
            static_inv::resolve_classified(&o.proc_root, &self.static_cgroups, &mut cache);
        let mut libvirt = if o.libvirt {
            libvirt::scan(&o.proc_root, &o.mounts, &mut cache)
        } else {
            Vec::new()
        };
        let mut processes = qemu::scan(&o.proc_root, &o.mounts, &mut cache)?;
        if o.own_netns_only {
            netns::keep_own(&o.proc_root, &mut libvirt, &mut processes);
        }
        let (vms, renamed) = merge::merge_noting(statics, libvirt, processes, o.qemu);
        let now: BTreeSet<merge::Renamed> = renamed.into_iter().collect();
        let mut before = self.renamed.lock().unwrap_or_else(PoisonError::into_inner);
        for r in now.difference(&before) {
            tracing::warn!(
                "two VMs are named {:?}; the {:?} one (pid {:?}) is reported as {:?}",
                r.name,
                r.source,
                r.pid,
                r.reported_as
            );
        }
        *before = now;
        Ok(vms)
    }

    /// The VM's threads now, without a full discovery: `/proc/<pid>/task` for a bare
    /// QEMU process (its cgroups may be shared with unrelated processes), the cgroups'
    /// thread lists otherwise. A vanished VM yields an error whose `vanished()` is true.
    pub fn refresh_threads(&self, vm: &Vm) -> Result<Vec<VmThread>, InventoryError> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        match (vm.source, vm.pid) {
            (VmSource::Qemu, Some(pid)) => {
                threads::process_threads(&self.options.proc_root, pid, &mut cache)
            }
            _ => threads::cgroup_threads(&self.options.proc_root, &vm.cgroups, &mut cache),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::testing::proc_fs::FakeHost;

    fn inventory(host: &FakeHost, static_vms: Vec<StaticVm>) -> Inventory {
        Inventory::new(InventoryOptions {
            proc_root: host.proc(),
            mounts: host.mounts(),
            static_vms,
            qemu: true,
            libvirt: true,
            own_netns_only: false,
        })
    }

    fn summary(vms: &[Vm]) -> Vec<(&str, VmSource, Option<u32>, usize)> {
        vms.iter()
            .map(|v| (v.name.as_str(), v.source, v.pid, v.threads.len()))
            .collect()
    }

    /// A hybrid host with one VM of each kind, and a static VM around a QEMU process.
    #[test]
    fn discovers_and_merges_all_sources() {
        let host = FakeHost::hybrid();
        // Static VM "web-1" whose cgroups hold QEMU pid 100.
        host.process(
            100,
            "qemu-system-x86",
            &[
                "qemu-system-x86_64",
                "-name",
                "guest=lab-web,debug-threads=on",
                "-uuid",
                "u-100",
                "-qmp",
                "unix:/run/web.qmp,server,nowait",
                "-smp",
                "1",
                "-m",
                "4G",
            ],
            &[(101, "CPU 0/TCG")],
        );
        host.proc_cgroup(100, "1:cpu:/lab/web-1\n0::/lab/web-1\n");
        let v2 = host.cgroup("unified/lab/web-1", &[100, 101]);
        let v1 = host.cgroup("cpu/lab/web-1", &[100, 101]);
        // libvirt VM "db" (id 4) with QEMU pid 200.
        host.process(
            200,
            "qemu-system-x86",
            &[
                "qemu-system-x86_64",
                "-name",
                "guest=db,debug-threads=on",
                "-m",
                "size=1048576k,slots=4,maxmem=4194304k",
                "-smp",
                "2,sockets=2,cores=1,threads=1",
            ],
            &[(201, "CPU 0/KVM"), (202, "CPU 1/KVM")],
        );
        let scope = r"machine.slice/machine-qemu\x2d4\x2ddb.scope";
        host.proc_cgroup(
            200,
            &format!("1:cpu:/{scope}/libvirt/emulator\n0::/{scope}/libvirt/emulator\n"),
        );
        for h in ["unified", "cpu"] {
            host.cgroup(&format!("{h}/{scope}/libvirt/emulator"), &[200]);
            host.cgroup(&format!("{h}/{scope}/libvirt/vcpu0"), &[201]);
            host.cgroup(&format!("{h}/{scope}/libvirt/vcpu1"), &[202]);
        }
        // A bare QEMU process without -name.
        host.process(
            300,
            "qemu-system-x86",
            &["qemu-system-x86_64", "-m", "256"],
            &[(301, "CPU 0/TCG")],
        );
        host.proc_cgroup(300, "0::/user.slice/session-1.scope\n");
        // Not a VM.
        host.process(400, "sshd", &["sshd"], &[]);

        let decl = StaticVm {
            name: "web-1".into(),
            cgroups: vec![v2, v1],
            customer: Some("acme".into()),
            priority: Priority::High,
            workload: None,
            vcpus: None,
            memory_mib: Some(2048),
        };
        let inv = inventory(&host, vec![decl]);
        let vms = inv.discover().unwrap();
        assert_eq!(
            summary(&vms),
            vec![
                ("db", VmSource::Libvirt, Some(200), 3),
                ("qemu-300", VmSource::Qemu, Some(300), 2),
                ("web-1", VmSource::Static, Some(100), 2),
            ]
        );
        let web = &vms[2];
        assert_eq!(
            (web.uuid.as_deref(), web.qmp_socket.as_deref()),
            (Some("u-100"), Some(Path::new("/run/web.qmp")))
        );
        assert_eq!(
            (web.customer.as_deref(), web.priority),
            (Some("acme"), Priority::High)
        );
        assert_eq!(web.threads[1].vcpu, Some(0));
        // Allocation: the config's memory_mib wins over -m; -smp fills in the vCPUs.
        let alloc = |vcpus, memory_bytes| Allocation {
            vcpus,
            memory_bytes,
        };
        assert_eq!(web.allocation, alloc(Some(1), Some(2 << 30)));
        // A libvirt VM gets its allocation from its QEMU process's command line.
        assert_eq!(vms[0].allocation, alloc(Some(2), Some(1 << 30)));
        let bare = &vms[1];
        // -m 256 and no -smp: the vCPU count comes from the vCPU threads.
        assert_eq!(bare.allocation, alloc(None, Some(256 << 20)));
        assert_eq!(bare.vcpus(), Some(1));
        assert_eq!(bare.cgroups.len(), 1);
        assert_eq!(inv.refresh_threads(bare).unwrap().len(), 2);
        assert_eq!(
            inv.refresh_threads(&vms[0])
                .unwrap()
                .iter()
                .filter(|t| t.vcpu.is_some())
                .count(),
            2
        );

        // Discovery switches.
        let inv = Inventory::new(InventoryOptions {
            qemu: false,
            libvirt: false,
            own_netns_only: false,
            ..inv.options().clone()
        });
        assert_eq!(
            summary(&inv.discover().unwrap()),
            vec![("web-1", VmSource::Static, Some(100), 2)]
        );
    }

    /// A VM that exits between the /proc listing and reading its files is skipped;
    /// the others are still found.
    #[test]
    fn vm_vanishing_mid_scan_is_skipped() {
        let host = FakeHost::pure_v2();
        host.process(
            500,
            "qemu-system-x86",
            &["qemu-system-x86_64", "-name", "a"],
            &[(501, "CPU 0/TCG")],
        );
        host.process(
            600,
            "qemu-system-x86",
            &["qemu-system-x86_64", "-name", "b"],
            &[],
        );
        // Half-gone: comm still there, cmdline already gone.
        std::fs::remove_file(host.proc().join("600/cmdline")).unwrap();
        // Gone between the task listing and reading the thread's comm.
        std::fs::remove_file(host.proc().join("501/comm")).unwrap();
        // A libvirt scope removed while its thread file is read.
        std::fs::create_dir_all(
            host.cgroup_base()
                .join(r"machine.slice/machine-qemu\x2d1\x2dgone.scope"),
        )
        .unwrap();
        let vms = inventory(&host, vec![]).discover().unwrap();
        assert_eq!(summary(&vms), vec![("a", VmSource::Qemu, Some(500), 1)]);
        host.exit(500);
        assert!(inventory(&host, vec![]).discover().unwrap().is_empty());
    }

    /// An unreadable process (not a vanished one) is warned about and skipped.
    #[test]
    fn unreadable_vm_is_skipped_not_fatal() {
        let host = FakeHost::pure_v2();
        host.process(
            700,
            "qemu-system-x86",
            &["qemu-system-x86_64", "-name", "ok"],
            &[],
        );
        host.process(
            800,
            "qemu-system-x86",
            &["qemu-system-x86_64", "-name", "bad"],
            &[],
        );
        // A directory where a file should be: EISDIR, not ENOENT.
        std::fs::remove_file(host.proc().join("800/cgroup")).unwrap();
        std::fs::create_dir(host.proc().join("800/cgroup")).unwrap();
        let vms = inventory(&host, vec![]).discover().unwrap();
        assert_eq!(summary(&vms), vec![("ok", VmSource::Qemu, Some(700), 1)]);
    }

    /// Discovery over this machine's real /proc and cgroupfs must not fail, whatever
    /// runs here; what it finds is printed for whoever runs the test by hand.
    #[test]
    fn real_host_discovery_runs() {
        let mounts = Mounts::read(Path::new("/proc")).unwrap();
        let inv = Inventory::new(InventoryOptions {
            proc_root: PathBuf::from("/proc"),
            mounts,
            static_vms: vec![],
            qemu: true,
            libvirt: true,
            own_netns_only: false,
        });
        let vms = inv.discover().unwrap();
        for vm in &vms {
            eprintln!(
                "{} {:?} pid={:?} qmp={:?} threads={:?} cgroups={:?}",
                vm.name, vm.source, vm.pid, vm.qmp_socket, vm.threads, vm.cgroups
            );
        }
    }

    #[test]
    fn unreadable_proc_is_an_error() {
        let host = FakeHost::pure_v2();
        let inv = Inventory::new(InventoryOptions {
            proc_root: host.root().join("nope"),
            ..inventory(&host, vec![]).options().clone()
        });
        let err = inv.discover().unwrap_err();
        assert!(err.to_string().starts_with("cannot list "), "{err}");
    }
}
