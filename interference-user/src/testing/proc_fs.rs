//! Fake /proc and cgroupfs trees in a temporary directory, for discovery tests.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::host::mounts::{threads_file, Mounts};

/// This build machine's layout (hybrid), as in /proc/self/mountinfo.
pub const HYBRID: &str = "\
23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

/// A typical production host: one cgroup2 hierarchy at /sys/fs/cgroup.
pub const PURE_V2: &str = "\
25 1 0:23 / /sys rw,nosuid shared:2 - sysfs sysfs rw
29 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

/// A host whose /proc and /sys/fs/cgroup live under a temporary directory.
pub struct FakeHost {
    dir: TempDir,
}

impl FakeHost {
    fn with(mountinfo: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let host = Self { dir };
        let info = mountinfo.replace(" /sys", &format!(" {}/sys", host.root().display()));
        std::fs::create_dir_all(host.proc().join("self")).unwrap();
        std::fs::write(host.proc().join("self/mountinfo"), info).unwrap();
        for m in host.mounts().mounts() {
            std::fs::create_dir_all(&m.mount_point).unwrap();
        }
        host
    }

    pub fn hybrid() -> Self {
        Self::with(HYBRID)
    }

    pub fn pure_v2() -> Self {
        Self::with(PURE_V2)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn proc(&self) -> PathBuf {
        self.root().join("proc")
    }

    /// `<root>/sys/fs/cgroup`, the parent of every fake cgroup mount.
    pub fn cgroup_base(&self) -> PathBuf {
        self.root().join("sys/fs/cgroup")
    }

    pub fn mounts(&self) -> Mounts {
        Mounts::read(&self.proc()).unwrap()
    }

    /// Create the cgroup `rel` (relative to /sys/fs/cgroup, e.g. `cpu/lab/a`) listing
    /// `tids` in its thread file; returns its absolute path.
    pub fn cgroup(&self, rel: &str, tids: &[u32]) -> PathBuf {
        let path = self.cgroup_base().join(rel);
        std::fs::create_dir_all(&path).unwrap();
        let mounts = self.mounts();
        let (mount, _, _) = mounts.locate(&path).unwrap();
        let file = threads_file(&mount.hierarchy);
        // Every cgroup directory has a thread file, as on a real cgroupfs.
        for dir in path
            .ancestors()
            .take_while(|d| d.starts_with(&mount.mount_point))
        {
            if !dir.join(file).exists() {
                std::fs::write(dir.join(file), "").unwrap();
            }
        }
        let text: String = tids.iter().map(|t| format!("{t}\n")).collect();
        std::fs::write(path.join(file), text).unwrap();
        path
    }

    /// A bare `/proc/<tid>/comm`.
    pub fn thread(&self, tid: u32, comm: &str) {
        let dir = self.proc().join(tid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
    }

    /// A process with its cmdline, exe link (to /usr/bin/<argv0 basename>), its main
    /// thread and `threads` (tid, comm) listed in task/.
    pub fn process(&self, pid: u32, comm: &str, argv: &[&str], threads: &[(u32, &str)]) {
        self.thread(pid, comm);
        let dir = self.proc().join(pid.to_string());
        let cmdline: String = argv.iter().map(|a| format!("{a}\0")).collect();
        std::fs::write(dir.join("cmdline"), cmdline).unwrap();
        let base = argv
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .unwrap_or("x");
        symlink(format!("/usr/bin/{base}"), dir.join("exe")).unwrap();
        std::fs::create_dir_all(dir.join("task").join(pid.to_string())).unwrap();
        for (tid, name) in threads {
            std::fs::create_dir_all(dir.join("task").join(tid.to_string())).unwrap();
            self.thread(*tid, name);
        }
        std::fs::write(dir.join("cgroup"), "0::/\n").unwrap();
    }

    /// Overwrite `/proc/<pid>/cgroup`.
    pub fn proc_cgroup(&self, pid: u32, text: &str) {
        std::fs::write(self.proc().join(pid.to_string()).join("cgroup"), text).unwrap();
    }

    /// Remove `/proc/<pid>` entirely (the process exits).
    pub fn exit(&self, pid: u32) {
        std::fs::remove_dir_all(self.proc().join(pid.to_string())).unwrap();
    }
}
