//! Path confinement: the agent writes only inside the cgroups of the VMs it manages.
//!
//! VM names and cgroup paths come from outside the agent (libvirt's directory names,
//! QEMU command lines, the config's `[[vm]]` table, a journal written by an earlier
//! run). None of them is trusted to say where a write may land. A VM is admitted
//! ([`ManagedRoots::admit`]) only if every one of its cgroup directories
//! - is absolute and has no `..` (before any resolution),
//! - resolves (symlinks followed) to a directory inside a mounted cgroup hierarchy of the
//!   mount table, and the kernel agrees it is on cgroupfs (statfs magic),
//! - is not the root of a hierarchy (that would hand the agent the whole host),
//! - neither contains nor sits inside another managed VM's cgroup.
//!
//! A write is allowed ([`ManagedRoots::check_write`]) only to a file named in
//! [`WRITABLE`], in a directory that, resolved again at the time of the write, is one
//! of the VM's own cgroup directories or a descendant (libvirt's `libvirt/vcpu0`,
//! `libvirt/emulator`). Everything else is an error naming the path. The cgroup
//! writer then opens the file with O_NOFOLLOW. What remains is a rename race inside
//! cgroupfs, which needs the privileges the agent is guarding against already.

use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

use super::mounts::{CgroupPathError, Hierarchy, Mounts, VmCgroup};
use super::vanished::is_vanished;

/// The only cgroup files the enforcement stage ever writes.
pub const WRITABLE: [&str; 3] = ["cpu.weight", "cpu.shares", "cpuset.cpus"];

/// How many calls of [`ManagedRoots::set_vms`] a VM's checked roots are kept for
/// before they are resolved and checked again (a minute at the default 5 s tick).
pub const RECHECK_SETS: u64 = 12;

/// statfs `f_type` of cgroup v1 and v2 filesystems (linux/magic.h).
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

#[derive(Debug, Error)]
pub enum GuardError {
    #[error("VM {vm:?}: refused cgroup {path}: {source}")]
    NotCgroup {
        vm: String,
        path: PathBuf,
        #[source]
        source: CgroupPathError,
    },
    #[error("VM {vm:?}: refused cgroup {path}: it resolves to {resolved}, which is not on a cgroup filesystem")]
    NotCgroupfs {
        vm: String,
        path: PathBuf,
        resolved: PathBuf,
    },
    #[error(
        "VM {vm:?}: refused cgroup {path}: it is the root of a cgroup hierarchy, not a VM's cgroup"
    )]
    HierarchyRoot { vm: String, path: PathBuf },
    #[error("VM {vm:?}: cgroup {path} cannot be resolved (vanished?)")]
    Unresolvable {
        vm: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("VM {vm:?}: refused cgroup {path}: it overlaps VM {other:?}'s cgroup {other_path}")]
    Overlap {
        vm: String,
        path: PathBuf,
        other: String,
        other_path: PathBuf,
    },
    #[error("VM {vm:?} has no cgroup directory")]
    NoCgroups { vm: String },
    #[error("VM {vm:?} is not managed by this agent (not admitted)")]
    Unmanaged { vm: String },
    #[error("refused to write {path}: the agent writes only {}", WRITABLE.join(", "))]
    FileName { path: PathBuf },
    #[error(
        "refused to write {path}: it resolves to {resolved}, outside VM {vm:?}'s cgroups ({roots})"
    )]
    Outside {
        vm: String,
        path: PathBuf,
        resolved: PathBuf,
        roots: String,
    },
}

impl GuardError {
    /// The VM refused, when the error is about one.
    pub fn vm(&self) -> Option<&str> {
        match self {
            Self::NotCgroup { vm, .. }
            | Self::NotCgroupfs { vm, .. }
            | Self::HierarchyRoot { vm, .. }
            | Self::Unresolvable { vm, .. }
            | Self::Overlap { vm, .. }
            | Self::NoCgroups { vm }
            | Self::Unmanaged { vm }
            | Self::Outside { vm, .. } => Some(vm),
            Self::FileName { .. } => None,
        }
    }

    /// True when the refusal only says a cgroup is gone (the VM stopped).
    pub fn vanished(&self) -> bool {
        matches!(self, Self::Unresolvable { source, .. } if is_vanished(source))
    }
}

/// One admitted cgroup directory of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRoot {
    /// As the inventory (or the journal) gave it.
    pub declared: PathBuf,
    /// Canonical: symlinks resolved.
    pub dir: PathBuf,
    pub hierarchy: Hierarchy,
}

/// The cgroup directories of every managed VM, checked as the module doc says.
#[derive(Debug, Clone)]
pub struct ManagedRoots {
    mounts: Mounts,
    vms: BTreeMap<String, Vec<VmRoot>>,
    /// Every admitted directory and the VM it belongs to, in path order: whether a new
    /// directory overlaps one is a look-up of its ancestors and of the range just
    /// after it, not a comparison with every other VM's directories (64 VMs with 5
    /// hierarchies each were 100,000 comparisons a tick).
    owners: BTreeMap<PathBuf, String>,
    /// What each VM of the managed set declared when its roots were last checked, and
    /// at which call of [`ManagedRoots::set_vms`].
    checked: BTreeMap<String, (Vec<VmCgroup>, u64)>,
    /// Calls of [`ManagedRoots::set_vms`] so far.
    sets: u64,
    /// Ask the kernel (statfs) whether a directory is on cgroupfs. Only unit tests,
    /// whose "cgroupfs" is a temp dir named in a fake mount table, turn it off.
    check_fs_magic: bool,
}

impl ManagedRoots {
    /// An empty set over the host's cgroup mount table.
    pub fn new(mounts: Mounts) -> Self {
        Self {
            mounts,
            vms: BTreeMap::new(),
            owners: BTreeMap::new(),
            checked: BTreeMap::new(),
            sets: 0,
            check_fs_magic: true,
        }
    }

    /// For unit tests over a fake cgroupfs in a temp dir.
    #[cfg(test)]
    pub(crate) fn without_fs_check(mounts: Mounts) -> Self {
        Self {
            check_fs_magic: false,
            ..Self::new(mounts)
        }
    }

    pub fn mounts(&self) -> &Mounts {
        &self.mounts
    }

    /// Replace the managed set with `vms` (one tick's inventory). Refused VMs are left
    /// out and returned with the reason; a VM that overlaps another is refused with
    /// it.
    ///
    /// A VM that declares the same cgroups as at its last check, made less than
    /// [`RECHECK_SETS`] calls ago, keeps its roots without resolving them again (the
    /// resolution and statfs of every root of every VM were a fifth of a whole agent
    /// tick): VMs kept this way go first, so a newcomer never displaces them. Nothing
    /// is written on the strength of a kept check: every action admits its VM afresh,
    /// and every write resolves its directory again ([`ManagedRoots::check_write`]).
    pub fn set_vms<'a>(
        &mut self,
        vms: impl IntoIterator<Item = (&'a str, &'a [VmCgroup])>,
    ) -> Vec<GuardError> {
        self.sets += 1;
        let mut previous = std::mem::take(&mut self.vms);
        let checked = std::mem::take(&mut self.checked);
        self.owners.clear();
        let mut fresh = Vec::new();
        for (name, cgroups) in vms {
            let kept = checked.get(name).filter(|(declared, at)| {
                declared.as_slice() == cgroups && self.sets - at < RECHECK_SETS
            });
            match (kept, previous.remove(name)) {
                (Some((declared, at)), Some(roots)) => {
                    for r in &roots {
                        self.owners.insert(r.dir.clone(), name.to_owned());
                    }
                    self.vms.insert(name.to_owned(), roots);
                    self.checked
                        .insert(name.to_owned(), (declared.clone(), *at));
                }
                _ => fresh.push((name, cgroups)),
            }
        }
        let mut errors = Vec::new();
        for (name, cgroups) in fresh {
            if let Err(e) = self.admit(name, cgroups) {
                errors.push(e);
            }
        }
        errors
    }

    /// Check the cgroups of the VM `name` and add (or update) it; its admitted roots.
    pub fn admit(&mut self, name: &str, cgroups: &[VmCgroup]) -> Result<&[VmRoot], GuardError> {
        if cgroups.is_empty() {
            return Err(GuardError::NoCgroups {
                vm: name.to_owned(),
            });
        }
        let mut roots = Vec::with_capacity(cgroups.len());
        for cg in cgroups {
            roots.push(self.check_root(name, &cg.path)?);
        }
        for mine in &roots {
            if let Some((other, dir)) = self.overlapping(name, &mine.dir) {
                let other_path = self.vms.get(other).and_then(|their| {
                    their
                        .iter()
                        .find(|t| t.dir == dir)
                        .map(|t| t.declared.clone())
                });
                return Err(GuardError::Overlap {
                    vm: name.to_owned(),
                    path: mine.declared.clone(),
                    other: other.to_owned(),
                    other_path: other_path.unwrap_or(dir),
                });
            }
        }
        if let Some(old) = self.vms.remove(name) {
            for r in old {
                self.owners.remove(&r.dir);
            }
        }
        for r in &roots {
            self.owners.insert(r.dir.clone(), name.to_owned());
        }
        self.vms.insert(name.to_owned(), roots);
        self.checked
            .insert(name.to_owned(), (cgroups.to_vec(), self.sets));
        Ok(&self.vms[name])
    }

    /// Another VM's admitted directory that contains `dir`, is `dir`, or sits inside
    /// it: that VM and the directory.
    fn overlapping(&self, vm: &str, dir: &Path) -> Option<(&str, PathBuf)> {
        let theirs = |owner: &String| owner != vm;
        if let Some((d, owner)) = dir
            .ancestors()
            .filter_map(|a| self.owners.get_key_value(a))
            .find(|(_, owner)| theirs(owner))
        {
            return Some((owner, d.clone()));
        }
        // In path order (component by component), a directory's descendants come
        // right after it.
        self.owners
            .range::<Path, _>((Bound::Excluded(dir), Bound::Unbounded))
            .take_while(|(d, _)| d.starts_with(dir))
            .find(|(_, owner)| theirs(owner))
            .map(|(d, owner)| (owner.as_str(), d.clone()))
    }

    /// The admitted roots of `vm`.
    pub fn roots(&self, vm: &str) -> Result<&[VmRoot], GuardError> {
        self.vms
            .get(vm)
            .map(Vec::as_slice)
            .ok_or_else(|| GuardError::Unmanaged { vm: vm.to_owned() })
    }

    /// One cgroup directory as a VM root: see the module doc. Also used for the roots
    /// a journal names, so that a restore honours the same rules.
    pub fn check_root(&self, vm: &str, path: &Path) -> Result<VmRoot, GuardError> {
        // Lexical checks first: `..` must be refused before it is resolved away.
        self.mounts
            .classify(path)
            .map_err(|source| GuardError::NotCgroup {
                vm: vm.to_owned(),
                path: path.to_path_buf(),
                source,
            })?;
        let dir = path
            .canonicalize()
            .map_err(|source| GuardError::Unresolvable {
                vm: vm.to_owned(),
                path: path.to_path_buf(),
                source,
            })?;
        let (mount, rel, _) = self
            .mounts
            .locate(&dir)
            .map_err(|source| GuardError::NotCgroup {
                vm: vm.to_owned(),
                path: path.to_path_buf(),
                source,
            })?;
        if dir == mount.mount_point || rel.components().all(|c| c == Component::RootDir) {
            return Err(GuardError::HierarchyRoot {
                vm: vm.to_owned(),
                path: path.to_path_buf(),
            });
        }
        self.check_cgroupfs(vm, path, &dir)?;
        Ok(VmRoot {
            declared: path.to_path_buf(),
            dir,
            hierarchy: mount.hierarchy.clone(),
        })
    }

    /// The resolved path of file `name` in `dir`, if the agent may write it for `vm`.
    pub fn check_write(&self, vm: &str, dir: &Path, name: &str) -> Result<PathBuf, GuardError> {
        let roots = self.roots(vm)?;
        check_write_under(self, vm, roots, dir, name)
    }

    fn check_cgroupfs(&self, vm: &str, path: &Path, resolved: &Path) -> Result<(), GuardError> {
        if !self.check_fs_magic {
            return Ok(());
        }
        let on_cgroupfs = fs_magic(resolved)
            .map(|m| m == CGROUP_SUPER_MAGIC || m == CGROUP2_SUPER_MAGIC)
            .map_err(|source| GuardError::Unresolvable {
                vm: vm.to_owned(),
                path: path.to_path_buf(),
                source,
            })?;
        if on_cgroupfs {
            Ok(())
        } else {
            Err(GuardError::NotCgroupfs {
                vm: vm.to_owned(),
                path: path.to_path_buf(),
                resolved: resolved.to_path_buf(),
            })
        }
    }
}

/// [`ManagedRoots::check_write`] against an explicit list of roots (a journal's, at
/// restore time, checked with [`ManagedRoots::check_root`] first).
pub fn check_write_under(
    guard: &ManagedRoots,
    vm: &str,
    roots: &[VmRoot],
    dir: &Path,
    name: &str,
) -> Result<PathBuf, GuardError> {
    let shown = dir.join(name);
    if !WRITABLE.contains(&name) {
        return Err(GuardError::FileName { path: shown });
    }
    if dir.components().any(|c| c == Component::ParentDir) || !dir.is_absolute() {
        return Err(GuardError::Outside {
            vm: vm.to_owned(),
            path: shown,
            resolved: dir.to_path_buf(),
            roots: describe(roots),
        });
    }
    let resolved = dir
        .canonicalize()
        .map_err(|source| GuardError::Unresolvable {
            vm: vm.to_owned(),
            path: shown.clone(),
            source,
        })?;
    if !roots.iter().any(|r| resolved.starts_with(&r.dir)) {
        return Err(GuardError::Outside {
            vm: vm.to_owned(),
            path: shown,
            resolved,
            roots: describe(roots),
        });
    }
    guard.check_cgroupfs(vm, &shown, &resolved)?;
    Ok(resolved.join(name))
}

fn describe(roots: &[VmRoot]) -> String {
    let dirs: Vec<String> = roots.iter().map(|r| r.dir.display().to_string()).collect();
    dirs.join(", ")
}

/// statfs(2) `f_type` of the filesystem holding `path`.
fn fs_magic(path: &Path) -> io::Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: an all-zero statfs is a valid value of this plain C struct; statfs writes
    // only into `buf`, and `c` is a NUL-terminated string that outlives the call.
    let (rc, buf) = unsafe {
        let mut buf: libc::statfs = std::mem::zeroed();
        (libc::statfs(c.as_ptr(), &mut buf), buf)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // `f_type` is i64 on glibc and u64 on musl: the cast is needed
    // on one and redundant on the other, so `expect` would fail on one of them.
    #[allow(
        clippy::unnecessary_cast,
        reason = "f_type's type differs between glibc and musl"
    )]
    Ok(buf.f_type as i64)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::testing::cgroup_fs::{v1, FakeCgroupFs as FakeHost};

    /// A VM's name and its cgroup directories on the v1 cpu hierarchy.
    fn vm(name: &str, dirs: &[&Path]) -> (String, Vec<VmCgroup>) {
        let cgroups = dirs
            .iter()
            .map(|d| VmCgroup {
                path: d.to_path_buf(),
                hierarchy: v1(&["cpu"]),
            })
            .collect();
        (name.to_owned(), cgroups)
    }

    fn admit(
        g: &mut ManagedRoots,
        (name, cgroups): (String, Vec<VmCgroup>),
    ) -> Result<&[VmRoot], GuardError> {
        g.admit(&name, &cgroups)
    }

    #[test]
    fn allows_the_vm_dir_and_its_libvirt_children() {
        let host = FakeHost::new();
        let scope = host.mk("cpu/machine.slice/web.scope", &[]);
        let vcpu = host.mk("cpu/machine.slice/web.scope/libvirt/vcpu0", &[]);
        let mut g = host.guard();
        admit(&mut g, vm("web", &[&scope])).unwrap();
        assert_eq!(
            g.check_write("web", &scope, "cpu.shares").unwrap(),
            scope.join("cpu.shares")
        );
        assert_eq!(
            g.check_write("web", &vcpu, "cpu.shares").unwrap(),
            vcpu.join("cpu.shares")
        );
        // A trailing `.` or doubled slash is the same directory.
        let dotted = PathBuf::from(format!("{}/./", vcpu.display()));
        assert!(g.check_write("web", &dotted, "cpu.shares").is_ok());
    }

    #[test]
    fn refuses_other_file_names() {
        let host = FakeHost::new();
        let scope = host.mk("cpu/machine.slice/web.scope", &[]);
        let mut g = host.guard();
        admit(&mut g, vm("web", &[&scope])).unwrap();
        for name in [
            "cgroup.procs",
            "tasks",
            "release_agent",
            "../cpu.shares",
            "x/cpu.shares",
            "",
        ] {
            let e = g.check_write("web", &scope, name).unwrap_err();
            assert!(matches!(e, GuardError::FileName { .. }), "{name}: {e}");
            assert!(e.to_string().contains(&scope.display().to_string()), "{e}");
        }
    }

    #[test]
    fn refuses_dotdot_escapes() {
        let host = FakeHost::new();
        let scope = host.mk("cpu/machine.slice/web.scope", &[]);
        let other = host.mk("cpu/machine.slice/db.scope", &[]);
        let mut g = host.guard();
        admit(&mut g, vm("web", &[&scope])).unwrap();
        let escape = scope.join("../db.scope");
        let e = g.check_write("web", &escape, "cpu.shares").unwrap_err();
        assert!(matches!(e, GuardError::Outside { .. }), "{e}");
        assert!(e.to_string().contains("db.scope"), "{e}");
        assert!(other.exists());
        // A VM declared with `..` is refused before resolution.
        let e = admit(&mut g, vm("sneaky", &[&escape])).unwrap_err();
        assert!(matches!(e, GuardError::NotCgroup { .. }), "{e}");
        assert!(e.to_string().contains(".."), "{e}");
    }

    #[test]
    fn refuses_symlinks_out_of_the_vm() {
        let host = FakeHost::new();
        let scope = host.mk("cpu/machine.slice/web.scope", &[]);
        let other = host.mk("cpu/machine.slice/db.scope", &[]);
        std::os::unix::fs::symlink(&other, scope.join("vcpu9")).unwrap();
        let mut g = host.guard();
        admit(&mut g, vm("web", &[&scope])).unwrap();
        let e = g
            .check_write("web", &scope.join("vcpu9"), "cpu.shares")
            .unwrap_err();
        assert!(matches!(e, GuardError::Outside { .. }), "{e}");
        assert!(e.to_string().contains(&other.display().to_string()), "{e}");

        // A symlink declared as a VM cgroup that points outside cgroupfs.
        let outside = host.dir.path().join("etc");
        fs::create_dir_all(&outside).unwrap();
        let link = host.mk("cpu/machine.slice", &[]).join("evil.scope");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let e = admit(&mut g, vm("evil", &[&link])).unwrap_err();
        assert!(matches!(e, GuardError::NotCgroup { .. }), "{e}");
    }

    #[test]
    fn refuses_paths_outside_cgroupfs_and_hierarchy_roots() {
        let host = FakeHost::new();
        let mut g = host.guard();
        let e = admit(&mut g, vm("etc", &[Path::new("/etc")])).unwrap_err();
        assert!(matches!(e, GuardError::NotCgroup { .. }), "{e}");
        assert!(e.to_string().contains("/etc"), "{e}");
        // The tmpfs holding the mounts is not a cgroup hierarchy either.
        let tmpfs_child = host.mk("stray", &[]);
        assert!(admit(&mut g, vm("stray", &[&tmpfs_child])).is_err());
        // The root of a hierarchy would be the whole host.
        let root = host.mk("cpu", &[]);
        let e = admit(&mut g, vm("host", &[&root])).unwrap_err();
        assert!(matches!(e, GuardError::HierarchyRoot { .. }), "{e}");
        let e = admit(&mut g, vm("rel", &[Path::new("cpu/x")])).unwrap_err();
        assert!(matches!(e, GuardError::NotCgroup { .. }), "{e}");
    }

    #[test]
    fn refuses_overlapping_vms_and_unknown_vms() {
        let host = FakeHost::new();
        let slice = host.mk("cpu/machine.slice", &[]);
        let scope = host.mk("cpu/machine.slice/web.scope", &[]);
        let mut g = host.guard();
        admit(&mut g, vm("web", &[&scope])).unwrap();
        let e = admit(&mut g, vm("greedy", &[&slice])).unwrap_err();
        assert!(matches!(e, GuardError::Overlap { .. }), "{e}");
        assert!(matches!(
            g.check_write("db", &scope, "cpu.shares"),
            Err(GuardError::Unmanaged { .. })
        ));
        // Re-admitting the same VM is not an overlap with itself.
        admit(&mut g, vm("web", &[&scope])).unwrap();
        let vms = [vm("web", &[&scope]), vm("greedy", &[&slice])];
        let errors = g.set_vms(vms.iter().map(|(n, c)| (n.as_str(), c.as_slice())));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(g.roots("web").is_ok());
    }

    #[test]
    fn overlaps_found_by_the_index_are_those_a_comparison_of_every_pair_finds() {
        // A tree whose names sort around each other ("b" < "b-x" < "b0", and "b/c"
        // between "b" and "b-x" in path order), VMs of one to three directories each.
        let host = FakeHost::new();
        let mut dirs = vec![];
        for a in ["m", "m-x", "m0"] {
            for b in ["", "/b", "/b-x", "/b0"] {
                for c in ["", "/c", "/c.scope"] {
                    if b.is_empty() && !c.is_empty() {
                        continue;
                    }
                    dirs.push(host.mk(&format!("cpu/{a}{b}{c}"), &[]));
                }
            }
        }
        let mut seed = 0x2545_f491_u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for round in 0..200 {
            let mut g = host.guard();
            let mut admitted: Vec<(String, Vec<PathBuf>)> = vec![];
            for v in 0..8 {
                let name = format!("vm{}", next(6));
                let mine: Vec<PathBuf> = (0..1 + next(3))
                    .map(|_| dirs[next(dirs.len())].clone())
                    .collect();
                let expected = admitted
                    .iter()
                    .filter(|(other, _)| *other != name)
                    .flat_map(|(other, theirs)| theirs.iter().map(move |t| (other, t)))
                    .find(|(_, t)| mine.iter().any(|m| m.starts_with(t) || t.starts_with(m)));
                let got = admit(
                    &mut g,
                    vm(
                        &name,
                        &mine.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
                    ),
                );
                match (expected, got) {
                    (None, Ok(_)) => {
                        admitted.retain(|(n, _)| *n != name);
                        admitted.push((name, mine));
                    }
                    (Some(_), Err(GuardError::Overlap { other_path, .. })) => {
                        let theirs = admitted.iter().find(|(_, t)| t.contains(&other_path));
                        assert!(
                            theirs.is_some_and(|(o, _)| *o != name),
                            "round {round} vm {v}"
                        );
                    }
                    (expected, got) => {
                        panic!("round {round} vm {v} {name} {mine:?}: expected {expected:?}, got {got:?}")
                    }
                }
            }
        }
    }

    #[test]
    fn a_tick_keeps_a_vms_checked_roots_for_a_while_and_an_action_checks_them_afresh() {
        let host = FakeHost::new();
        let web = host.mk("cpu/machine.slice/web.scope", &[]);
        let db = host.mk("cpu/machine.slice/db.scope", &[]);
        let mut g = host.guard();
        let set = |g: &mut ManagedRoots, vms: &[(String, Vec<VmCgroup>)]| {
            g.set_vms(vms.iter().map(|(n, c)| (n.as_str(), c.as_slice())))
        };
        let both = [vm("web", &[&web]), vm("db", &[&db])];
        assert!(set(&mut g, &both).is_empty());
        // web's directory goes away: the kept check still stands, but an action on
        // web (which admits it again) and any write find out at once.
        fs::remove_dir(&web).unwrap();
        for _ in 1..RECHECK_SETS {
            assert!(set(&mut g, &both).is_empty());
        }
        assert!(g.roots("web").is_ok());
        assert!(g
            .check_write("web", &web, "cpu.shares")
            .unwrap_err()
            .vanished());
        let e = admit(&mut g, both[0].clone()).unwrap_err();
        assert!(e.vanished(), "{e}");
        // The kept check expires: web is resolved again and refused.
        let errors = set(&mut g, &both);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].vanished(), "{}", errors[0]);
        assert!(g.roots("web").is_err());
        assert!(g.roots("db").is_ok());
        // A changed declaration is checked at once, and a VM kept goes first: a
        // newcomer claiming the slice above db is the one refused.
        let slice = host.mk("cpu/machine.slice", &[]);
        let sub = host.mk("cpu/machine.slice/db.scope/sub", &[]);
        let errors = set(&mut g, &[vm("greedy", &[&slice]), vm("db", &[&db])]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(matches!(&errors[0], GuardError::Overlap { vm, .. } if vm == "greedy"));
        let errors = set(&mut g, &[vm("db", &[&db, &sub]), vm("gone", &[&web])]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(g.roots("db").unwrap().len(), 2);
    }

    #[test]
    fn vanished_cgroups_say_so() {
        let host = FakeHost::new();
        let scope = host.mk("cpu/machine.slice/web.scope", &[]);
        let mut g = host.guard();
        admit(&mut g, vm("web", &[&scope])).unwrap();
        fs::remove_dir(&scope).unwrap();
        let e = g.check_write("web", &scope, "cpu.shares").unwrap_err();
        assert!(e.vanished(), "{e}");
        let e = admit(&mut g, vm("web", &[&scope])).unwrap_err();
        assert!(e.vanished(), "{e}");
    }

    #[test]
    fn the_kernel_check_refuses_a_tmpfs_that_looks_like_cgroupfs() {
        // Same fake table, but with the statfs check on: a temp dir is not cgroupfs.
        let host = FakeHost::new();
        let scope = host.mk("cpu/machine.slice/web.scope", &[]);
        let mut g = ManagedRoots::new(host.mounts.clone());
        let e = admit(&mut g, vm("web", &[&scope])).unwrap_err();
        assert!(matches!(e, GuardError::NotCgroupfs { .. }), "{e}");
    }
}
