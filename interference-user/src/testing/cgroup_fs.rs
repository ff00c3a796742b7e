//! A fake hybrid cgroupfs in a temporary directory: v1 `cpu` and `cpuset`, v2
//! `unified`, named in a fake mount table. The enforcement stage's unit tests and the
//! path guard's run their plans on it; the kernel's refusals are the real-host tests'
//! job (tests/tests/enforce_cgroup_v1.rs, lab_enforce_v2.rs).

use std::fs;
use std::path::{Path, PathBuf};

use crate::host::guard::ManagedRoots;
use crate::inventory::{Hierarchy, Mounts, Vm, VmCgroup, VmSource};

/// One cgroupfs with its mount table; gone when dropped.
pub struct FakeCgroupFs {
    pub dir: tempfile::TempDir,
    pub mounts: Mounts,
}

/// A v1 hierarchy with these controllers.
pub fn v1(controllers: &[&str]) -> Hierarchy {
    Hierarchy::V1 {
        controllers: controllers.iter().map(|c| c.to_string()).collect(),
    }
}

impl Default for FakeCgroupFs {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeCgroupFs {
    /// The hierarchy roots with their files (4 CPUs, default shares and weight).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cg = dir.path().canonicalize().unwrap().join("cgroup");
        let mut info = format!("31 23 0:28 / {} rw - tmpfs tmpfs rw\n", cg.display());
        for (i, (name, opts)) in [("cpu", "rw,cpu"), ("cpuset", "rw,cpuset")]
            .iter()
            .enumerate()
        {
            fs::create_dir_all(cg.join(name)).unwrap();
            info += &format!(
                "{} 31 0:{} / {} rw - cgroup cgroup {opts}\n",
                32 + i,
                29 + i,
                cg.join(name).display()
            );
        }
        fs::create_dir_all(cg.join("unified")).unwrap();
        info += &format!(
            "41 31 0:38 / {} rw - cgroup2 cgroup2 rw\n",
            cg.join("unified").display()
        );
        let mounts = Mounts::parse(&info, Path::new("mountinfo")).unwrap();
        let host = Self { dir, mounts };
        host.mk(
            "cpuset",
            &[("cpuset.cpus", "0-3"), ("cpuset.effective_cpus", "0-3")],
        );
        host.mk("cpu", &[("cpu.shares", "1024")]);
        host.mk(
            "unified",
            &[
                ("cgroup.controllers", "cpu cpuset"),
                ("cpuset.cpus.effective", "0-3"),
            ],
        );
        host
    }

    /// The cgroup directory `rel` (under the fake /sys/fs/cgroup), created with `files`.
    pub fn mk(&self, rel: &str, files: &[(&str, &str)]) -> PathBuf {
        let p = self
            .dir
            .path()
            .canonicalize()
            .unwrap()
            .join("cgroup")
            .join(rel);
        fs::create_dir_all(&p).unwrap();
        for (name, text) in files {
            fs::write(p.join(name), format!("{text}\n")).unwrap();
        }
        p
    }

    /// A path guard over the fake mount table.
    pub fn guard(&self) -> ManagedRoots {
        ManagedRoots::without_fs_check(self.mounts.clone())
    }

    /// A libvirt-style VM: `<h>/machine.slice/<name>.scope/libvirt/{vcpu0,emulator}` in
    /// the v1 cpu and cpuset hierarchies, plus a v2 cgroup without controllers.
    pub fn libvirt_vm(&self, name: &str) -> Vm {
        let scope = format!("machine.slice/{name}.scope");
        self.mk(
            "cpuset/machine.slice",
            &[("cpuset.cpus", "0-3"), ("cpuset.effective_cpus", "0-3")],
        );
        let cpu = self.mk(&format!("cpu/{scope}"), &[("cpu.shares", "1024")]);
        let cpuset = self.mk(&format!("cpuset/{scope}"), &[("cpuset.cpus", "0-3")]);
        self.mk(
            &format!("cpuset/{scope}/libvirt"),
            &[("cpuset.cpus", "0-3")],
        );
        self.mk(
            &format!("cpuset/{scope}/libvirt/vcpu0"),
            &[("cpuset.cpus", "1")],
        );
        self.mk(
            &format!("cpuset/{scope}/libvirt/emulator"),
            &[("cpuset.cpus", "0-3")],
        );
        for child in ["libvirt", "libvirt/vcpu0", "libvirt/emulator"] {
            self.mk(&format!("cpu/{scope}/{child}"), &[("cpu.shares", "1024")]);
        }
        let unified = self.mk(&format!("unified/{scope}"), &[("cgroup.controllers", "")]);
        vm(
            name,
            &[
                (cpu, v1(&["cpu"])),
                (cpuset, v1(&["cpuset"])),
                (unified, Hierarchy::V2),
            ],
        )
    }
}

/// A static-inventory VM with these cgroups.
pub fn vm(name: &str, cgroups: &[(PathBuf, Hierarchy)]) -> Vm {
    Vm {
        cgroups: cgroups
            .iter()
            .map(|(path, hierarchy)| VmCgroup {
                path: path.clone(),
                hierarchy: hierarchy.clone(),
            })
            .collect(),
        ..Vm::new(name, VmSource::Static)
    }
}
