//! The cgroup mount table: which directories are cgroup hierarchies, v1 or v2.
//!
//! Everything that turns a path into a cgroup goes through [`Mounts`], read from
//! `<proc>/self/mountinfo`, so hybrid hosts (v1 controllers under `/sys/fs/cgroup/<ctrl>`,
//! v2 at /sys/fs/cgroup/unified), pure-v2 hosts (/sys/fs/cgroup) and odd layouts
//! (containers, symlinked `cpu -> cpu,cpuacct`) are handled by one longest-prefix rule
//! instead of hard-coded paths. Tests build a fake mountinfo whose mount points live in
//! a temporary directory.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

use serde::{Deserialize, Serialize};

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

/// Reading or decoding the mount table failed.
#[derive(Debug, Error)]
pub enum MountsError {
    #[error("cannot read the mount table {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: malformed mountinfo line: {text:?}")]
    Malformed {
        path: PathBuf,
        line: usize,
        text: String,
    },
}

/// A path that cannot be a VM cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CgroupPathError {
    #[error("{path}: a cgroup path must be absolute")]
    Relative { path: PathBuf },
    #[error("{path}: a cgroup path must not contain `..`")]
    ParentComponent { path: PathBuf },
    #[error("{path} is not inside a mounted cgroup filesystem ({mounts})")]
    NotCgroup { path: PathBuf, mounts: String },
}

/// One mounted cgroup hierarchy (or a bind mount of part of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// Where the hierarchy is visible, e.g. /sys/fs/cgroup/cpu.
    pub mount_point: PathBuf,
    /// The cgroup, inside its hierarchy, that sits at `mount_point` (`/` unless this is
    /// a bind mount or a container's view); `/proc/<pid>/cgroup` paths are relative to
    /// the hierarchy root, so they are mapped through it.
    pub root: PathBuf,
    /// `major:minor` of the mount: one per hierarchy, shared by its bind mounts.
    pub device: String,
    pub hierarchy: Hierarchy,
    /// A named v1 hierarchy's name, e.g. `systemd` for `name=systemd`.
    pub name: Option<String>,
}

impl CgroupMount {
    /// The `name=...`/controller spelling of `/proc/<pid>/cgroup`, for messages.
    fn describe(&self) -> String {
        match &self.hierarchy {
            Hierarchy::V2 => format!("{} (cgroup2)", self.mount_point.display()),
            Hierarchy::V1 { controllers } => {
                let mut what: Vec<String> = controllers.clone();
                if let Some(name) = &self.name {
                    what.push(format!("name={name}"));
                }
                format!(
                    "{} (cgroup v1: {})",
                    self.mount_point.display(),
                    what.join(",")
                )
            }
        }
    }

    /// Whether the hierarchy has anything to read or set: v2 always (even without
    /// controllers it has cpu.stat and PSI), v1 only with controllers. A named v1
    /// hierarchy such as name=systemd only groups processes, so it is never listed
    /// among a discovered VM's cgroups.
    pub fn has_resources(&self) -> bool {
        match &self.hierarchy {
            Hierarchy::V2 => true,
            Hierarchy::V1 { controllers } => !controllers.is_empty(),
        }
    }

    /// Absolute path of `rel` (relative to the hierarchy root) through this mount, or
    /// None when the mount does not show that part of the hierarchy.
    fn absolute(&self, rel: &Path) -> Option<PathBuf> {
        let rel = Path::new("/").join(rel);
        let inside = rel.strip_prefix(&self.root).ok()?;
        Some(self.mount_point.join(inside))
    }
}

/// The cgroup mounts of the host, plus the other mount points (to know when a cgroup
/// mount is shadowed or a path sits on a tmpfs parent such as hybrid /sys/fs/cgroup).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    mounts: Vec<CgroupMount>,
    /// Mount point of every mount, in mountinfo order, and whether it is a cgroup
    /// mount (then its index in `mounts`).
    all: Vec<(PathBuf, Option<usize>)>,
}

/// One line of `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCgroup {
    /// 0 for the v2 hierarchy.
    pub hierarchy_id: u32,
    /// v1 controllers, empty for v2 and for named hierarchies.
    pub controllers: Vec<String>,
    /// `systemd` for a `name=systemd` line.
    pub name: Option<String>,
    /// Path relative to the hierarchy root, e.g. /machine.slice/foo.scope.
    pub path: PathBuf,
}

impl ProcCgroup {
    pub fn is_v2(&self) -> bool {
        self.hierarchy_id == 0 && self.controllers.is_empty() && self.name.is_none()
    }

    /// See [`CgroupMount::has_resources`].
    pub fn has_resources(&self) -> bool {
        self.is_v2() || !self.controllers.is_empty()
    }
}

/// Parse `/proc/<pid>/cgroup` (`N:cpu,cpuacct:/path`, `0::/path`). Malformed lines are
/// skipped: the kernel writes this file, and one odd line must not hide the others.
pub fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(list), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(hierarchy_id) = id.parse() else {
            continue;
        };
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        let mut controllers = Vec::new();
        let mut name = None;
        for item in list.split(',').filter(|s| !s.is_empty()) {
            match item.strip_prefix("name=") {
                Some(n) => name = Some(n.to_owned()),
                None => controllers.push(item.to_owned()),
            }
        }
        out.push(ProcCgroup {
            hierarchy_id,
            controllers,
            name,
            path: PathBuf::from(path),
        });
    }
    out
}

/// The file listing a cgroup's thread ids: `cgroup.threads` on v2 (every thread of
/// the cgroup, threaded or not), `tasks` on v1.
pub fn threads_file(hierarchy: &Hierarchy) -> &'static str {
    match hierarchy {
        Hierarchy::V2 => "cgroup.threads",
        Hierarchy::V1 { .. } => "tasks",
    }
}

impl Mounts {
    /// Read `<proc_root>/self/mountinfo`.
    pub fn read(proc_root: &Path) -> Result<Self, MountsError> {
        let path = proc_root.join("self/mountinfo");
        let text = std::fs::read_to_string(&path).map_err(|source| MountsError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&text, &path)
    }

    /// Parse mountinfo text; `origin` only names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, MountsError> {
        let mut mounts = Self::default();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let malformed = || MountsError::Malformed {
                path: origin.to_path_buf(),
                line: index + 1,
                text: line.to_owned(),
            };
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields
                .iter()
                .position(|f| *f == "-")
                .ok_or_else(malformed)?;
            if sep < 6 || fields.len() < sep + 4 {
                return Err(malformed());
            }
            let (device, root, mount_point) = (fields[2], fields[3], fields[4]);
            let (fs_type, super_options) = (fields[sep + 1], fields[sep + 3]);
            let mount_point = PathBuf::from(unescape(mount_point));
            let hierarchy = match fs_type {
                "cgroup2" => Some((Hierarchy::V2, None)),
                "cgroup" => Some(v1_options(super_options)),
                _ => None,
            };
            let index = hierarchy.map(|(hierarchy, name)| {
                mounts.mounts.push(CgroupMount {
                    mount_point: mount_point.clone(),
                    root: PathBuf::from(unescape(root)),
                    device: device.to_owned(),
                    hierarchy,
                    name,
                });
                mounts.mounts.len() - 1
            });
            mounts.all.push((mount_point, index));
        }
        Ok(mounts)
    }

    /// Every cgroup mount, in mountinfo order.
    pub fn mounts(&self) -> &[CgroupMount] {
        &self.mounts
    }

    /// One mount per hierarchy (bind mounts of the same hierarchy dropped, a mount of
    /// the hierarchy root preferred), in mountinfo order.
    pub fn hierarchies(&self) -> Vec<&CgroupMount> {
        let mut out: Vec<&CgroupMount> = Vec::new();
        for m in &self.mounts {
            match out.iter_mut().find(|o| o.device == m.device) {
                Some(o) if o.root != Path::new("/") && m.root == Path::new("/") => *o = m,
                Some(_) => {}
                None => out.push(m),
            }
        }
        out
    }

    /// Mount point of the cgroup v2 hierarchy, if one is mounted.
    pub fn v2_root(&self) -> Option<&Path> {
        self.hierarchies()
            .into_iter()
            .find(|m| m.hierarchy == Hierarchy::V2)
            .map(|m| m.mount_point.as_path())
    }

    /// Mount point of the v1 hierarchy carrying `controller` (`cpu`, `memory`, ...,
    /// or `name=systemd` for a named hierarchy).
    pub fn v1_root(&self, controller: &str) -> Option<&Path> {
        let wanted_name = controller.strip_prefix("name=");
        self.hierarchies()
            .into_iter()
            .find(|m| match (&m.hierarchy, wanted_name) {
                (Hierarchy::V1 { .. }, Some(name)) => m.name.as_deref() == Some(name),
                (Hierarchy::V1 { controllers }, None) => {
                    controllers.iter().any(|c| c == controller)
                }
                (Hierarchy::V2, _) => false,
            })
            .map(|m| m.mount_point.as_path())
    }

    /// Which hierarchy `path` belongs to. The path need not exist. Refused: relative
    /// paths, `..` components, and paths whose longest matching mount point is not a
    /// cgroup mount. When the lexical match fails, symlinks in the existing part of
    /// the path are resolved once (Debian's /sys/fs/cgroup/cpu -> cpu,cpuacct), and the
    /// returned path is the resolved one, so it compares equal to paths built from
    /// `/proc/<pid>/cgroup`.
    pub fn classify(&self, path: &Path) -> Result<VmCgroup, CgroupPathError> {
        self.locate(path).map(|(mount, _, path)| VmCgroup {
            path,
            hierarchy: mount.hierarchy.clone(),
        })
    }

    /// Like [`Mounts::classify`], also returning the mount and the path relative to
    /// the hierarchy root (e.g. `/machine.slice/x.scope`).
    pub fn locate(&self, path: &Path) -> Result<(&CgroupMount, PathBuf, PathBuf), CgroupPathError> {
        let normal = normalize(path)?;
        if let Some(found) = self.lexical(&normal) {
            return Ok(found);
        }
        if let Some(resolved) = resolve_existing_prefix(&normal) {
            if let Some(found) = self.lexical(&resolved) {
                return Ok(found);
            }
        }
        Err(CgroupPathError::NotCgroup {
            path: path.to_path_buf(),
            mounts: self.describe(),
        })
    }

    fn lexical(&self, path: &Path) -> Option<(&CgroupMount, PathBuf, PathBuf)> {
        // Longest mount point wins; on a tie the later mount shadows the earlier one.
        let (_, index) = self
            .all
            .iter()
            .filter(|(point, _)| path.starts_with(point))
            .max_by_key(|(point, _)| point.components().count())?;
        let mount = &self.mounts[(*index)?];
        let inside = path.strip_prefix(&mount.mount_point).ok()?;
        let rel = mount.root.join(inside);
        Some((mount, rel, path.to_path_buf()))
    }

    /// Map a `/proc/<pid>/cgroup` line to the absolute cgroup directory, or None when no
    /// mounted hierarchy matches or the path is outside this view (cgroup namespaces
    /// show `/..` paths for cgroups above their root).
    pub fn resolve(&self, line: &ProcCgroup) -> Option<VmCgroup> {
        if line.path.components().any(|c| c == Component::ParentDir) {
            return None;
        }
        let wanted: HashSet<&str> = line.controllers.iter().map(String::as_str).collect();
        self.mounts
            .iter()
            .filter(|m| match &m.hierarchy {
                Hierarchy::V2 => line.is_v2(),
                Hierarchy::V1 { controllers } => {
                    !line.is_v2()
                        && m.name == line.name
                        && controllers
                            .iter()
                            .map(String::as_str)
                            .collect::<HashSet<_>>()
                            == wanted
                }
            })
            .find_map(|m| {
                let path = m.absolute(&line.path)?;
                Some(VmCgroup {
                    path,
                    hierarchy: m.hierarchy.clone(),
                })
            })
    }

    /// The cgroup at relative path `rel` (e.g. `/machine.slice/foo.scope`) in every
    /// hierarchy where that directory exists: libvirt and systemd create the same
    /// relative path in each v1 hierarchy, so a VM has one cgroup per hierarchy.
    pub fn find_everywhere(&self, rel: &Path) -> Vec<VmCgroup> {
        if rel.components().any(|c| c == Component::ParentDir) {
            return Vec::new();
        }
        self.hierarchies()
            .into_iter()
            .filter_map(|m| {
                let path = m.absolute(rel)?;
                path.is_dir().then(|| VmCgroup {
                    path,
                    hierarchy: m.hierarchy.clone(),
                })
            })
            .collect()
    }

    /// The cgroup mounts, for error messages.
    pub fn describe(&self) -> String {
        if self.mounts.is_empty() {
            return "no cgroup filesystem is mounted".to_owned();
        }
        let mut out = String::from("cgroup mounts: ");
        for (i, m) in self.mounts.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}", m.describe());
        }
        out
    }
}

/// Decode v1 super options (`rw,cpu,cpuacct`, `rw,name=systemd`, `rw,xattr,...`) into
/// the hierarchy's controllers and name; everything that is not a known mount option
/// is a controller.
fn v1_options(super_options: &str) -> (Hierarchy, Option<String>) {
    const NOT_CONTROLLERS: &[&str] = &[
        "rw",
        "ro",
        "noprefix",
        "clone_children",
        "xattr",
        "cpuset_v2_mode",
        "favordynmods",
        "none",
        "all",
    ];
    let mut controllers = Vec::new();
    let mut name = None;
    for option in super_options.split(',') {
        if let Some(n) = option.strip_prefix("name=") {
            name = Some(n.to_owned());
        } else if !option.is_empty() && !option.contains('=') && !NOT_CONTROLLERS.contains(&option)
        {
            controllers.push(option.to_owned());
        }
    }
    (Hierarchy::V1 { controllers }, name)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(d)) = (bytes[i], octal) {
            let value = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(b) = u8::try_from(value) {
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

/// Absolute, `..`-free, with `.` and repeated slashes dropped.
fn normalize(path: &Path) -> Result<PathBuf, CgroupPathError> {
    if !path.is_absolute() {
        return Err(CgroupPathError::Relative {
            path: path.to_path_buf(),
        });
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(CgroupPathError::ParentComponent {
            path: path.to_path_buf(),
        });
    }
    Ok(path.components().collect())
}

/// Canonicalise the longest existing ancestor of `path` and append the rest.
fn resolve_existing_prefix(path: &Path) -> Option<PathBuf> {
    let existing = path.ancestors().find(|a| a.exists())?;
    let rest = path.strip_prefix(existing).ok()?;
    let resolved = existing.canonicalize().ok()?.join(rest);
    (resolved != path).then_some(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::proc_fs::HYBRID;

    const PURE_V2: &str = "\
25 1 0:23 / /sys rw,nosuid shared:2 - sysfs sysfs rw
29 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
30 1 0:27 / /my\\040dir rw - tmpfs tmpfs rw
";

    fn hybrid() -> Mounts {
        Mounts::parse(HYBRID, Path::new("mountinfo")).unwrap()
    }

    fn v1(c: &[&str]) -> Hierarchy {
        Hierarchy::V1 {
            controllers: c.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn parses_hybrid_mountinfo() {
        let m = hybrid();
        assert_eq!(m.mounts().len(), 8);
        assert_eq!(m.mounts()[0].hierarchy, v1(&["cpu"]));
        assert_eq!(m.mounts()[6].hierarchy, v1(&[]));
        assert_eq!(m.mounts()[6].name.as_deref(), Some("systemd"));
        assert_eq!(m.mounts()[7].hierarchy, Hierarchy::V2);
        assert_eq!(m.v2_root(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(
            m.v1_root("cpuset"),
            Some(Path::new("/sys/fs/cgroup/cpuset"))
        );
        assert_eq!(
            m.v1_root("name=systemd"),
            Some(Path::new("/sys/fs/cgroup/systemd"))
        );
        assert_eq!(m.v1_root("hugetlb"), None);
    }

    #[test]
    fn parses_pure_v2_mountinfo_and_escapes() {
        let m = Mounts::parse(PURE_V2, Path::new("mountinfo")).unwrap();
        assert_eq!(m.mounts().len(), 1);
        assert_eq!(m.v2_root(), Some(Path::new("/sys/fs/cgroup")));
        assert_eq!(m.v1_root("cpu"), None);
        assert_eq!(m.all[2].0, Path::new("/my dir"));
        let c = m
            .classify(Path::new("/sys/fs/cgroup/machine.slice/x.scope"))
            .unwrap();
        assert_eq!(c.hierarchy, Hierarchy::V2);
    }

    #[test]
    fn malformed_mountinfo_names_the_line() {
        let err = Mounts::parse("1 2 3\n", Path::new("/proc/self/mountinfo")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/proc/self/mountinfo:1: malformed mountinfo line: \"1 2 3\""
        );
    }

    #[test]
    fn classify_picks_the_longest_mount_point() {
        let m = hybrid();
        let c = m
            .classify(Path::new("/sys/fs/cgroup/unified/lab/web-1/"))
            .unwrap();
        assert_eq!(
            c,
            VmCgroup {
                path: "/sys/fs/cgroup/unified/lab/web-1".into(),
                hierarchy: Hierarchy::V2
            }
        );
        let c = m
            .classify(Path::new("/sys/fs/cgroup/cpuset/./lab//web-1"))
            .unwrap();
        assert_eq!(
            c,
            VmCgroup {
                path: "/sys/fs/cgroup/cpuset/lab/web-1".into(),
                hierarchy: v1(&["cpuset"])
            }
        );
        let (_, rel, _) = m.locate(Path::new("/sys/fs/cgroup/cpu/lab/web-1")).unwrap();
        assert_eq!(rel, Path::new("/lab/web-1"));
    }

    #[test]
    fn classify_refuses_bad_paths() {
        let m = hybrid();
        assert_eq!(
            m.classify(Path::new("lab/web-1")).unwrap_err().to_string(),
            "lab/web-1: a cgroup path must be absolute"
        );
        assert_eq!(
            m.classify(Path::new("/sys/fs/cgroup/cpu/../../../etc"))
                .unwrap_err()
                .to_string(),
            "/sys/fs/cgroup/cpu/../../../etc: a cgroup path must not contain `..`"
        );
        // On the tmpfs parent of a hybrid host, not in a cgroup mount.
        let err = m
            .classify(Path::new("/sys/fs/cgroup/nonexistent-ctrl/x"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/sys/fs/cgroup/nonexistent-ctrl/x is not inside a mounted cgroup filesystem (cgroup mounts: /sys/fs/cgroup/cpu (cgroup v1: cpu), "), "{err}");
        assert!(err.ends_with("/sys/fs/cgroup/systemd (cgroup v1: name=systemd), /sys/fs/cgroup/unified (cgroup2))"), "{err}");
        let err = Mounts::default()
            .classify(Path::new("/srv/x"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/srv/x is not inside a mounted cgroup filesystem (no cgroup filesystem is mounted)"
        );
    }

    #[test]
    fn classify_follows_a_symlinked_controller_dir() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("cpu,cpuacct");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", dir.path().join("cpu")).unwrap();
        let info = format!(
            "32 31 0:29 / {} rw - cgroup cgroup rw,cpu,cpuacct\n",
            real.display()
        );
        let m = Mounts::parse(&info, Path::new("mountinfo")).unwrap();
        let real = real.canonicalize().unwrap();
        let c = m.classify(&dir.path().join("cpu/lab/web-1")).unwrap();
        assert_eq!(c.path, real.join("lab/web-1"));
        assert_eq!(c.hierarchy, v1(&["cpu", "cpuacct"]));
    }

    #[test]
    fn proc_cgroup_lines_resolve_through_the_mounts() {
        let m = hybrid();
        let lines = parse_proc_cgroup(
            "9:name=systemd:/machine.slice/x.scope\n1:cpu:/machine.slice/x.scope/libvirt/vcpu0\n\
             0::/machine.slice/x.scope/libvirt/emulator\nbogus\n4:memory:/.. (deleted)\n",
        );
        assert_eq!(lines.len(), 4);
        let resolved: Vec<_> = lines.iter().map(|l| m.resolve(l)).collect();
        assert_eq!(
            resolved[0].as_ref().unwrap().path,
            Path::new("/sys/fs/cgroup/systemd/machine.slice/x.scope")
        );
        assert_eq!(resolved[1].as_ref().unwrap().hierarchy, v1(&["cpu"]));
        assert_eq!(
            resolved[2].as_ref().unwrap().path,
            Path::new("/sys/fs/cgroup/unified/machine.slice/x.scope/libvirt/emulator")
        );
        assert_eq!(resolved[3], None);
    }

    #[test]
    fn bind_mounted_subtree_maps_relative_paths() {
        let info = "29 25 0:26 /machine.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let m = Mounts::parse(info, Path::new("mountinfo")).unwrap();
        let line = &parse_proc_cgroup("0::/machine.slice/a.scope\n")[0];
        assert_eq!(
            m.resolve(line).unwrap().path,
            Path::new("/sys/fs/cgroup/a.scope")
        );
        let line = &parse_proc_cgroup("0::/user.slice\n")[0];
        assert_eq!(m.resolve(line), None);
        let (_, rel, _) = m.locate(Path::new("/sys/fs/cgroup/a.scope")).unwrap();
        assert_eq!(rel, Path::new("/machine.slice/a.scope"));
    }

    #[test]
    fn find_everywhere_lists_each_hierarchy_with_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let info = format!(
            "1 0 0:29 / {r}/cpu rw - cgroup cgroup rw,cpu\n\
             2 0 0:29 / {r}/cpu-bind rw - cgroup cgroup rw,cpu\n\
             3 0 0:31 / {r}/memory rw - cgroup cgroup rw,memory\n\
             4 0 0:38 / {r}/unified rw - cgroup2 cgroup2 rw\n",
            r = root.display()
        );
        for d in ["cpu/machine/a", "unified/machine/a", "memory/other"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let m = Mounts::parse(&info, Path::new("mountinfo")).unwrap();
        let found = m.find_everywhere(Path::new("/machine/a"));
        assert_eq!(
            found,
            vec![
                VmCgroup {
                    path: root.join("cpu/machine/a"),
                    hierarchy: v1(&["cpu"])
                },
                VmCgroup {
                    path: root.join("unified/machine/a"),
                    hierarchy: Hierarchy::V2
                },
            ]
        );
        assert!(m.find_everywhere(Path::new("/machine/../other")).is_empty());
    }

    /// Runs against this machine's real mount table (hybrid on the build machines,
    /// pure v2 on most production hosts); the paths need not exist.
    #[test]
    fn real_host_mount_table_classifies() {
        let m = Mounts::read(Path::new("/proc")).unwrap();
        let Some(v2) = m.v2_root() else {
            eprintln!(
                "no cgroup2 mount on this host ({}); skipping the v2 check",
                m.describe()
            );
            return;
        };
        let c = m.classify(&v2.join("interference-test/x")).unwrap();
        assert_eq!(c.hierarchy, Hierarchy::V2);
        if v2 == Path::new("/sys/fs/cgroup/unified") {
            let c = m.classify(Path::new("/sys/fs/cgroup/unified/x")).unwrap();
            assert_eq!(c.hierarchy, Hierarchy::V2);
            let c = m.classify(Path::new("/sys/fs/cgroup/cpu/x")).unwrap();
            match c.hierarchy {
                Hierarchy::V1 { controllers } => assert!(controllers.contains(&"cpu".to_owned())),
                Hierarchy::V2 => panic!("/sys/fs/cgroup/cpu classified as v2"),
            }
            assert!(m.classify(Path::new("/sys/fs/cgroup/x")).is_err());
        } else {
            eprintln!(
                "cgroup v2 at {} (not hybrid); v1 classification not checked",
                v2.display()
            );
        }
        assert!(m.classify(Path::new("/etc/x")).is_err());
    }
}
