//! Plain data at the inventory stage's boundary.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One VM on the host, as discovered this tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    /// Unique on the host: QEMU's `-name guest=`, the libvirt domain name, or the
    /// static inventory's `name`.
    pub name: String,
    pub uuid: Option<String>,
    pub source: VmSource,
    /// Main QEMU process, when known.
    pub pid: Option<u32>,
    pub qmp_socket: Option<PathBuf>,
    /// Every cgroup directory of the VM, one per hierarchy it appears in.
    pub cgroups: Vec<VmCgroup>,
    /// All threads of the VM (vCPU, emulator, I/O threads).
    pub threads: Vec<VmThread>,
    pub customer: Option<String>,
    pub priority: Priority,
    pub workload: Option<String>,
}

/// Where a VM was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmSource {
    Qemu,
    Libvirt,
    Static,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmThread {
    pub tid: u32,
    /// `comm` of the thread, e.g. "CPU 0/KVM".
    pub name: String,
    /// vCPU index for vCPU threads ("CPU n/KVM", "CPU n/TCG", or QMP query-cpus-fast).
    pub vcpu: Option<u32>,
}

/// A cgroup directory and the hierarchy it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VmCgroup {
    /// Absolute path of the cgroup directory, e.g. /sys/fs/cgroup/cpu/lab/web-1.
    pub path: PathBuf,
    pub hierarchy: Hierarchy,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "version")]
pub enum Hierarchy {
    /// The cgroup v2 (unified) hierarchy; its controllers may be none on a hybrid host.
    V2,
    /// A cgroup v1 hierarchy with the controllers mounted on it (e.g. ["cpu"],
    /// ["cpu", "cpuacct"]); named hierarchies such as name=systemd have none.
    V1 { controllers: Vec<String> },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

/// A VM declared in the config's `[[vm]]` table: its name and cgroups are given, its
/// threads are whatever those cgroups hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticVm {
    /// Unique on the host; letters, digits, `-_.`, at most 64 characters.
    pub name: String,
    /// Absolute cgroup directories, typically one per hierarchy.
    pub cgroups: Vec<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    #[serde(default)]
    pub priority: Priority,
    /// Free-form label (web, database, batch, ...), a model input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
}
