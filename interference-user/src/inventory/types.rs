//! Plain data at the inventory stage's boundary.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{de, Deserialize, Deserializer, Serialize};

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
    /// What the VM was given (vCPUs, memory), for billing's vCPU-hours and
    /// GiB-hours: from the static `[[vm]]` entry, else the QEMU command line (`-smp`,
    /// `-m`). Unknown parts are None; [`Vm::vcpus`] falls back to the vCPU threads.
    #[serde(default)]
    pub allocation: Allocation,
}

impl Vm {
    /// A VM known only by name and source: no process, cgroups or threads yet, normal
    /// priority, no customer. The sources fill in what they find
    /// (`Vm { cgroups, ..Vm::new(name, source) }`).
    pub fn new(name: impl Into<String>, source: VmSource) -> Self {
        Self {
            name: name.into(),
            uuid: None,
            source,
            pid: None,
            qmp_socket: None,
            cgroups: Vec::new(),
            threads: Vec::new(),
            customer: None,
            priority: Priority::Normal,
            workload: None,
            allocation: Allocation::default(),
        }
    }

    /// The VM's vCPU count: the allocation's, else the number of distinct vCPU
    /// indices among its threads, else None.
    pub fn vcpus(&self) -> Option<u32> {
        self.allocation.vcpus.or_else(|| {
            let indices: BTreeSet<u32> = self.threads.iter().filter_map(|t| t.vcpu).collect();
            u32::try_from(indices.len()).ok().filter(|&n| n > 0)
        })
    }
}

/// The resources a VM was allocated, as far as its sources say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Number of vCPUs (QEMU's `-smp cpus`, the boot-time count).
    pub vcpus: Option<u32>,
    /// Guest memory size in bytes (QEMU's `-m size`, the boot-time size).
    pub memory_bytes: Option<u64>,
}

impl Allocation {
    /// Each part from `self` when known, else from `other`.
    pub fn or(self, other: Allocation) -> Allocation {
        Allocation {
            vcpus: self.vcpus.or(other.vcpus),
            memory_bytes: self.memory_bytes.or(other.memory_bytes),
        }
    }
}

/// Where a VM was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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

pub use crate::host::{Hierarchy, VmCgroup};
pub use interference_core::vm::Priority;

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
    /// vCPUs allocated to the VM, for billing; 1 to [`MAX_VCPUS`]. Left out, the
    /// QEMU command line's `-smp` (when a QEMU process is found in the VM's cgroups)
    /// or the number of vCPU threads stands in.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_vcpus"
    )]
    pub vcpus: Option<u32>,
    /// Guest memory in MiB, for billing; at least 1. Left out, the QEMU command
    /// line's `-m` stands in when a QEMU process is found in the VM's cgroups.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_memory_mib"
    )]
    pub memory_mib: Option<u64>,
}

/// The most vCPUs a `[[vm]]` entry may declare (KVM's KVM_MAX_VCPUS on x86 is 4096).
pub const MAX_VCPUS: u32 = 4096;

impl StaticVm {
    /// The allocation this entry declares (`memory_mib` in bytes).
    pub fn allocation(&self) -> Allocation {
        Allocation {
            vcpus: self.vcpus,
            memory_bytes: self.memory_mib.and_then(|m| m.checked_mul(1 << 20)),
        }
    }
}

/// `vcpus`: 1 to [`MAX_VCPUS`]. Checked while decoding, so the config's error names
/// the field and line (`vm[0].vcpus: ...`).
fn de_vcpus<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = i64::deserialize(d)?;
    match u32::try_from(n) {
        Ok(v) if (1..=MAX_VCPUS).contains(&v) => Ok(Some(v)),
        _ => Err(de::Error::custom(format!(
            "{n} vCPUs is out of range; a VM has 1 to {MAX_VCPUS} vCPUs"
        ))),
    }
}

/// The most memory a `[[vm]]` entry may declare: its size in bytes fits 64 bits.
pub const MAX_MEMORY_MIB: u64 = u64::MAX >> 20;

/// `memory_mib`: 1 to [`MAX_MEMORY_MIB`].
fn de_memory_mib<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let n = i64::deserialize(d)?;
    match u64::try_from(n) {
        Ok(v) if v > MAX_MEMORY_MIB => Err(de::Error::custom(format!(
            "{n} MiB is out of range; a VM has at most {MAX_MEMORY_MIB} MiB"
        ))),
        Ok(v) if v >= 1 => Ok(Some(v)),
        _ => Err(de::Error::custom(format!(
            "{n} MiB is out of range; a VM has at least 1 MiB"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::inventory::Mounts;

    fn vm(vcpu_threads: &[Option<u32>], allocation: Allocation) -> Vm {
        Vm {
            threads: vcpu_threads
                .iter()
                .enumerate()
                .map(|(i, &vcpu)| VmThread {
                    tid: 100 + i as u32,
                    name: "t".into(),
                    vcpu,
                })
                .collect(),
            allocation,
            ..Vm::new("a", VmSource::Qemu)
        }
    }

    #[test]
    fn vcpus_from_allocation_else_distinct_vcpu_threads() {
        let four = Allocation {
            vcpus: Some(4),
            memory_bytes: None,
        };
        assert_eq!(vm(&[None, Some(0)], four).vcpus(), Some(4));
        // Two threads for vCPU 1 (e.g. one exited and a new one took the index).
        let threads = [None, Some(0), Some(1), Some(1), None];
        assert_eq!(vm(&threads, Allocation::default()).vcpus(), Some(2));
        assert_eq!(vm(&[None, None], Allocation::default()).vcpus(), None);
        assert_eq!(vm(&[], Allocation::default()).vcpus(), None);
    }

    #[test]
    fn allocation_or_takes_each_part_from_the_first_that_knows() {
        let a = Allocation {
            vcpus: Some(2),
            memory_bytes: None,
        };
        let b = Allocation {
            vcpus: Some(8),
            memory_bytes: Some(1 << 30),
        };
        assert_eq!(
            a.or(b),
            Allocation {
                vcpus: Some(2),
                memory_bytes: Some(1 << 30)
            }
        );
        assert_eq!(Allocation::default().or(a), a);
    }

    #[test]
    fn vm_json_without_allocation_still_decodes() {
        let v = vm(&[Some(0)], Allocation::default());
        let mut json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json["allocation"],
            serde_json::json!({"vcpus": null, "memory_bytes": null})
        );
        json.as_object_mut().unwrap().remove("allocation");
        assert_eq!(serde_json::from_value::<Vm>(json).unwrap(), v);
    }

    const MOUNTS: &str = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";

    fn config(extra: &str) -> Result<Config, String> {
        let mounts = Mounts::parse(MOUNTS, Path::new("mountinfo")).unwrap();
        let text =
            format!("[[vm]]\nname = \"web-1\"\ncgroups = [\"/sys/fs/cgroup/cpu/a\"]\n{extra}");
        Config::parse(&text, Path::new("config.toml"), &mounts).map_err(|e| e.to_string())
    }

    #[test]
    fn static_vm_allocation_from_config() {
        let c = config("vcpus = 4\nmemory_mib = 8192\n").unwrap();
        assert_eq!((c.vms[0].vcpus, c.vms[0].memory_mib), (Some(4), Some(8192)));
        assert_eq!(
            c.vms[0].allocation(),
            Allocation {
                vcpus: Some(4),
                memory_bytes: Some(8 << 30)
            }
        );
        let c = config("vcpus = 4096\nmemory_mib = 1\n").unwrap();
        assert_eq!(c.vms[0].allocation().memory_bytes, Some(1 << 20));
        let c = config("").unwrap();
        assert_eq!(c.vms[0].allocation(), Allocation::default());
        // Serialized back, absent fields stay absent.
        let text = toml::to_string(&c.vms[0]).unwrap();
        assert!(
            !text.contains("vcpus") && !text.contains("memory_mib"),
            "{text}"
        );
    }

    #[test]
    fn static_vm_allocation_is_checked() {
        assert_eq!(
            config("vcpus = 0\n").unwrap_err(),
            "config.toml:4:9: vm[0].vcpus: 0 vCPUs is out of range; a VM has 1 to 4096 vCPUs"
        );
        assert_eq!(
            config("vcpus = 4097\n").unwrap_err(),
            "config.toml:4:9: vm[0].vcpus: 4097 vCPUs is out of range; a VM has 1 to 4096 vCPUs"
        );
        assert_eq!(
            config("vcpus = -2\n").unwrap_err(),
            "config.toml:4:9: vm[0].vcpus: -2 vCPUs is out of range; a VM has 1 to 4096 vCPUs"
        );
        assert_eq!(
            config("memory_mib = 0\n").unwrap_err(),
            "config.toml:4:14: vm[0].memory_mib: 0 MiB is out of range; a VM has at least 1 MiB"
        );
        assert_eq!(
            config(&format!("memory_mib = {}\n", i64::MAX)).unwrap_err(),
            format!(
                "config.toml:4:14: vm[0].memory_mib: {} MiB is out of range; a VM has at most {MAX_MEMORY_MIB} MiB",
                i64::MAX
            )
        );
        let e = config("vcpus = \"4\"\n").unwrap_err();
        assert!(e.starts_with("config.toml:4:9: vm[0].vcpus: "), "{e}");
        let e = config("memory_gib = 4\n").unwrap_err();
        assert!(e.contains("memory_gib"), "{e}");
    }
}
