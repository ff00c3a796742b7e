//! The cgroup backends: which files a change touches, what they hold now, what they
//! will hold, and in which order to write them. v1 and v2 differ in file names and in
//! how a controller is found (`v1`, `v2`); the planning is shared.
//!
//! A CPU weight goes to the VM's own cgroup directories, the ones the inventory lists
//! (libvirt's `machine-qemu…scope`): that is the level where the VM competes with its
//! neighbours. CFS shares are hierarchical, so a weight on `libvirt/vcpu0` or
//! `libvirt/emulator` only splits the VM's own share among its threads and changes
//! nothing between VMs (the v1 test measures both). libvirt puts `<cputune><shares>`
//! at the same level (`virCgroupV2SetCpuShares` sets `CPUWeight` on the domain's unit).
//!
//! A cpuset confines the VM's whole subtree: on v1 every descendant must stay a subset
//! of its parent, so each one is planned (keeping libvirt's per-vCPU pinning where it
//! fits, see `cpuset::pin_targets`) and written in the order `cpuset::plan_tree`
//! gives; on v2 the kernel clips children itself, and only descendants with a
//! `cpuset.cpus` of their own are rewritten. The requested CPUs are first intersected
//! with the parent's effective CPUs; an empty result is refused.
//!
//! One thing cannot be put back exactly: a v2 cgroup whose `cpuset.cpus` was empty
//! (inheriting its parent's CPUs) cannot be emptied again while tasks live in its
//! subtree (the kernel answers ENOSPC). A restore then writes the parent's effective
//! CPUs, the same CPUs the cgroup had, and says so ([`restore_value`]); it just no
//! longer follows later changes of its parent.
//!
//! Every value is read before anything is written; writes go through the guard and are
//! opened with O_NOFOLLOW.

mod v1;
mod v2;

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::warn;

use super::cpuset::{pin_targets, plan_tree, CpuList, CpuListError, TreeNode};
use super::weight::{WEIGHT_MAX, WEIGHT_MIN};
use crate::host::guard::{GuardError, ManagedRoots, VmRoot};
use crate::inventory::error::is_vanished;
use crate::inventory::Hierarchy;

/// A VM subtree larger than this is not walked (libvirt has a handful of children).
const MAX_SUBTREE: usize = 512;
const MAX_DEPTH: usize = 6;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    CpuList {
        path: PathBuf,
        #[source]
        source: CpuListError,
    },
    #[error("VM {vm:?}: no cgroup of the VM has the {controller} controller ({cgroups})")]
    NoController {
        vm: String,
        controller: &'static str,
        cgroups: String,
    },
    #[error("VM {vm:?}: CPUs {wanted} are not available to {dir}: its parent's effective CPUs are {effective:?}")]
    EmptyCpuset {
        vm: String,
        dir: PathBuf,
        wanted: String,
        effective: String,
    },
    #[error("VM {vm:?}: weight {weight} is outside {WEIGHT_MIN}..={WEIGHT_MAX}")]
    Weight { vm: String, weight: u64 },
    #[error("VM {vm:?}: an empty CPU list cannot be pinned")]
    NoCpus { vm: String },
    #[error(
        "{dir}: more than {MAX_SUBTREE} cgroups (or deeper than {MAX_DEPTH}) below the VM's cgroup"
    )]
    TooLarge { dir: PathBuf },
    #[error(transparent)]
    Guard(#[from] GuardError),
}

impl CgroupError {
    /// True when the error only says a cgroup is gone (the VM stopped meanwhile).
    pub fn vanished(&self) -> bool {
        match self {
            Self::Read { source, .. } | Self::Write { source, .. } => is_vanished(source),
            Self::Guard(g) => g.vanished(),
            _ => false,
        }
    }
}

/// One file a change will set: the journal's unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// The VM cgroup directory the file was found under (canonical).
    pub root: PathBuf,
    /// The file (canonical, checked by the guard).
    pub file: PathBuf,
    /// Its text now, trimmed.
    pub before: String,
    /// Its text once the change is complete.
    pub after: String,
}

/// A planned change: the files it sets, and the writes in the order to make them (a
/// cpuset file may be written twice, see `cpuset::plan_tree`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<FileChange>,
    pub writes: Vec<(PathBuf, String)>,
}

/// Set the CPU weight (v2 scale) of `vm`'s cgroups: `cpu.weight` on v2 where the cpu
/// controller is enabled, `cpu.shares` (converted as systemd does) on a v1 cpu
/// hierarchy. Files already at the value are left out.
pub fn plan_weight(guard: &ManagedRoots, vm: &str, weight: u64) -> Result<Plan, CgroupError> {
    if !(WEIGHT_MIN..=WEIGHT_MAX).contains(&weight) {
        return Err(CgroupError::Weight {
            vm: vm.to_owned(),
            weight,
        });
    }
    let roots = guard.roots(vm)?;
    let mut plan = Plan::default();
    let mut found = false;
    for root in roots {
        let (name, value) = match &root.hierarchy {
            Hierarchy::V1 { controllers } if v1::has(controllers, "cpu") => v1::weight_file(weight),
            Hierarchy::V2 if v2::enabled(&root.dir, "cpu")? => v2::weight_file(weight),
            _ => continue,
        };
        found = true;
        let file = guard.check_write(vm, &root.dir, name)?;
        let before = read_value(&file)?;
        if same_value(&file, &before, &value) {
            continue;
        }
        plan.writes.push((file.clone(), value.clone()));
        plan.changes.push(FileChange {
            root: root.dir.clone(),
            file,
            before,
            after: value,
        });
    }
    if !found {
        return Err(no_controller(vm, "cpu", roots));
    }
    Ok(plan)
}

/// Confine `vm`'s cgroups to `wanted` (see the module doc).
pub fn plan_cpuset(guard: &ManagedRoots, vm: &str, wanted: &CpuList) -> Result<Plan, CgroupError> {
    if wanted.is_empty() {
        return Err(CgroupError::NoCpus { vm: vm.to_owned() });
    }
    let roots = guard.roots(vm)?;
    let mut nodes: Vec<TreeNode> = Vec::new();
    let mut found = false;
    let mut owner: Vec<(PathBuf, PathBuf)> = Vec::new();
    for root in roots {
        let is_v1 = match &root.hierarchy {
            Hierarchy::V1 { controllers } if v1::has(controllers, "cpuset") => true,
            Hierarchy::V2 if v2::enabled(&root.dir, "cpuset")? => false,
            _ => continue,
        };
        found = true;
        let parent = root.dir.parent().unwrap_or(&root.dir);
        let effective = if is_v1 {
            v1::effective_cpus(parent)?
        } else {
            v2::effective_cpus(parent)?
        };
        let granted = wanted.intersection(&effective);
        if granted.is_empty() {
            return Err(CgroupError::EmptyCpuset {
                vm: vm.to_owned(),
                dir: root.dir.clone(),
                wanted: wanted.to_string(),
                effective: effective.to_string(),
            });
        }
        if &granted != wanted {
            warn!(vm, cgroup = %root.dir.display(), wanted = %wanted, granted = %granted,
                "only part of the requested CPUs is available under the parent cgroup");
        }
        let mut current: Vec<(PathBuf, CpuList)> = Vec::new();
        for dir in subtree(&root.dir)? {
            let file = guard.check_write(vm, &dir, "cpuset.cpus")?;
            let cpus = parse_cpus(&file, &read_value(&file)?)?;
            // v2: a descendant without a cpuset of its own follows its parent.
            if !is_v1 && dir != root.dir && cpus.is_empty() {
                continue;
            }
            owner.push((dir.clone(), root.dir.clone()));
            current.push((dir, cpus));
        }
        nodes.extend(pin_targets(&current, &granted));
    }
    if !found {
        return Err(no_controller(vm, "cpuset", roots));
    }
    let mut plan = Plan::default();
    for (dir, cpus) in plan_tree(&nodes) {
        plan.writes
            .push((dir.join("cpuset.cpus"), cpus.to_string()));
    }
    for n in nodes.iter().filter(|n| n.current != n.target) {
        let root = owner
            .iter()
            .find(|(d, _)| d == &n.dir)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| n.dir.clone());
        plan.changes.push(FileChange {
            root,
            file: n.dir.join("cpuset.cpus"),
            before: n.current.to_string(),
            after: n.target.to_string(),
        });
    }
    Ok(plan)
}

/// One journalled file to put back: checked by the guard, `current` read just now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreItem {
    pub file: PathBuf,
    pub current: String,
    pub before: String,
}

/// The writes that put every item back to `before`: cpusets in tree order, the rest
/// as they come.
pub fn plan_restore(items: &[RestoreItem]) -> Result<Vec<(PathBuf, String)>, CgroupError> {
    let mut writes = Vec::new();
    let mut nodes = Vec::new();
    for item in items {
        if is_cpuset(&item.file) {
            let dir = item.file.parent().unwrap_or(&item.file).to_path_buf();
            nodes.push(TreeNode {
                dir,
                current: parse_cpus(&item.file, &item.current)?,
                target: parse_cpus(&item.file, &item.before)?,
            });
        } else if !same_value(&item.file, &item.current, &item.before) {
            writes.push((item.file.clone(), item.before.clone()));
        }
    }
    for (dir, cpus) in plan_tree(&nodes) {
        writes.push((dir.join("cpuset.cpus"), cpus.to_string()));
    }
    Ok(writes)
}

/// Whether `current` may be a value this agent left in `file` while moving it from
/// `before` to `after` (a cpuset mid-way holds `before ∪ after`). Anything else was
/// written by someone else since, and a restore leaves it alone.
pub fn plausibly_ours(file: &Path, current: &str, before: &str, after: &str) -> bool {
    if is_cpuset(file) {
        let (Ok(c), Ok(b), Ok(a)) = (
            current.parse::<CpuList>(),
            before.parse::<CpuList>(),
            after.parse::<CpuList>(),
        ) else {
            return false;
        };
        c.is_subset(&b.union(&a))
    } else {
        same_value(file, current, after) || same_value(file, current, before)
    }
}

/// Equal as the kernel means them: CPU lists as sets, numbers as numbers.
pub fn same_value(file: &Path, a: &str, b: &str) -> bool {
    if is_cpuset(file) {
        return match (a.parse::<CpuList>(), b.parse::<CpuList>()) {
            (Ok(x), Ok(y)) => x == y,
            _ => a.trim() == b.trim(),
        };
    }
    match (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.trim() == b.trim(),
    }
}

fn is_cpuset(file: &Path) -> bool {
    file.file_name().is_some_and(|n| n == "cpuset.cpus")
}

/// A cgroup file's text, trimmed.
pub fn read_value(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| CgroupError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// Write `value` to a cgroup file in one `write(2)` (cgroup files take one value per
/// write), newline-terminated as `echo` writes it (so that an empty value, a v2 cpuset
/// that inherits its parent's, is a real write), never following a symlink at the
/// last component.
pub fn write_value(path: &Path, value: &str) -> Result<(), CgroupError> {
    let err = |source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_owned(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(err)?;
    f.write_all(format!("{value}\n").as_bytes()).map_err(err)
}

/// Restore-time write: like [`write_value`], except that a cpuset the journal says
/// was empty (a v2 cgroup inheriting its parent's CPUs) but that the kernel refuses to
/// empty again (ENOSPC: it has tasks in its subtree, see cpuset.c `validate_change`)
/// gets its parent's effective CPUs instead, the same CPUs it had. Returns the value
/// written and, in that case, why it differs from `value`.
pub fn restore_value(path: &Path, value: &str) -> Result<(String, Option<String>), CgroupError> {
    match write_value(path, value) {
        Ok(()) => Ok((value.to_owned(), None)),
        Err(CgroupError::Write { source, .. })
            if value.trim().is_empty()
                && is_cpuset(path)
                && source.raw_os_error() == Some(libc::ENOSPC) =>
        {
            let parent = path
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("/"));
            let v2 = parent.join("cpuset.cpus.effective");
            let file = if v2.exists() {
                v2
            } else {
                parent.join("cpuset.effective_cpus")
            };
            let inherited = read_value(&file)?;
            write_value(path, &inherited)?;
            let why = format!(
                "was empty (inheriting); the kernel refuses to empty a populated cpuset, so it now \
                 lists the parent's effective CPUs {inherited}, the CPUs it had"
            );
            warn!(file = %path.display(), "{why}");
            Ok((inherited, Some(why)))
        }
        Err(e) => Err(e),
    }
}

fn parse_cpus(file: &Path, text: &str) -> Result<CpuList, CgroupError> {
    text.parse().map_err(|source| CgroupError::CpuList {
        path: file.to_path_buf(),
        source,
    })
}

/// `dir` and every cgroup below it, parents before children, symlinks not followed.
fn subtree(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let current = out[i].clone();
        i += 1;
        if current.components().count() - dir.components().count() >= MAX_DEPTH {
            return Err(CgroupError::TooLarge {
                dir: dir.to_path_buf(),
            });
        }
        let entries = std::fs::read_dir(&current).map_err(|source| CgroupError::Read {
            path: current.clone(),
            source,
        })?;
        let mut children: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| CgroupError::Read {
                path: current.clone(),
                source,
            })?;
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir {
                children.push(entry.path());
            }
        }
        children.sort();
        out.extend(children);
        if out.len() > MAX_SUBTREE {
            return Err(CgroupError::TooLarge {
                dir: dir.to_path_buf(),
            });
        }
    }
    Ok(out)
}

fn no_controller(vm: &str, controller: &'static str, roots: &[VmRoot]) -> CgroupError {
    let cgroups: Vec<String> = roots
        .iter()
        .map(|r| format!("{} ({})", r.dir.display(), describe(&r.hierarchy)))
        .collect();
    CgroupError::NoController {
        vm: vm.to_owned(),
        controller,
        cgroups: cgroups.join(", "),
    }
}

fn describe(h: &Hierarchy) -> String {
    match h {
        Hierarchy::V2 => "cgroup2".to_owned(),
        Hierarchy::V1 { controllers } => format!("v1 {}", controllers.join(",")),
    }
}

#[cfg(test)]
pub(crate) mod tests;
