//! The host: the layer every stage stands on. It knows the cgroup filesystems (which
//! directories are v1 or v2 hierarchies, [`mounts`]), how to read and write one cgroup
//! file ([`cgroup_file`]), where the agent may write at all ([`guard`]), and CPU lists
//! ([`CpuList`], one type for every stage). It knows nothing of VMs beyond a name and
//! its cgroup directories, and nothing of the stages above it.

pub mod cgroup_file;
pub mod guard;
pub mod kernel_file;
pub mod mounts;
pub mod vanished;

pub use guard::{GuardError, ManagedRoots, VmRoot, WRITABLE};
pub use interference_core::cpu_list::{CpuList, CpuListError};
pub use mounts::{
    CgroupMount, CgroupPathError, Hierarchy, Mounts, MountsError, ProcCgroup, VmCgroup,
};
