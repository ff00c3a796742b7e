//! Reads the real cgroupfs of this host: a throwaway cgroup in the unified hierarchy
//! (and, on a hybrid host, in every v1 hierarchy), with a busy child process in it.
//! Needs root: `#[ignore]`d for plain `cargo test`, run (and failed when it cannot
//! run) by scripts/test.sh.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::*;
use crate::inventory::{Hierarchy, VmCgroup};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The unified hierarchy: /sys/fs/cgroup/unified on a hybrid host, /sys/fs/cgroup on a
/// pure v2 host.
fn v2_root() -> Option<PathBuf> {
    let hybrid = Path::new(CGROUP_ROOT).join("unified");
    if hybrid.join("cgroup.procs").exists() {
        return Some(hybrid);
    }
    let pure = Path::new(CGROUP_ROOT);
    pure.join("cgroup.controllers")
        .exists()
        .then(|| pure.to_path_buf())
}

/// v1 hierarchies with controllers, e.g. ("cpu,cpuacct", ["cpu", "cpuacct"]); symlinks
/// such as cpu -> cpu,cpuacct are skipped so each hierarchy appears once.
fn v1_hierarchies() -> Vec<(PathBuf, Vec<String>)> {
    let Ok(rd) = fs::read_dir(CGROUP_ROOT) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !is_dir || name == "unified" || !e.path().join("tasks").exists() {
            continue;
        }
        let controllers: Vec<String> = name
            .split(',')
            .filter(|c| ["cpu", "cpuacct", "memory", "blkio"].contains(c))
            .map(String::from)
            .collect();
        if !controllers.is_empty() {
            out.push((e.path(), controllers));
        }
    }
    out
}

/// Removes the test cgroups, deepest last created first, even when the test panics.
struct Cgroups(Vec<PathBuf>);

impl Drop for Cgroups {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

/// Kills and reaps the child if the test panics before it exits.
struct Busy(Child);

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs root/QEMU"]
fn real_cgroupfs_psi_cpu_stat_and_v1_merge() {
    let Some(root) = v2_root() else {
        panic!("no cgroup v2 hierarchy at {CGROUP_ROOT}/unified or {CGROUP_ROOT}");
    };
    let name = format!("interference-test-{}", std::process::id());
    let v2_dir = root.join(&name);
    if let Err(e) = fs::create_dir(&v2_dir) {
        panic!("cannot create {} ({e}); needs root", v2_dir.display());
    }
    let mut guard = Cgroups(vec![v2_dir.clone()]);
    let mut cgroups = vec![VmCgroup {
        path: v2_dir.clone(),
        hierarchy: Hierarchy::V2,
    }];
    for (dir, controllers) in v1_hierarchies() {
        let d = dir.join(&name);
        if fs::create_dir(&d).is_ok() {
            guard.0.push(d.clone());
            cgroups.push(VmCgroup {
                path: d,
                hierarchy: Hierarchy::V1 { controllers },
            });
        }
    }

    // A shell that waits for a line on stdin, then burns CPU for a moment: it is moved
    // into every test cgroup before it starts working.
    let child = Command::new("sh")
        .args([
            "-c",
            "read _; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let mut busy = Busy(child);
    let pid = busy.0.id().to_string();
    for cg in &cgroups {
        fs::write(cg.path.join("cgroup.procs"), &pid)
            .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", cg.path.display()));
    }
    let mut stdin = busy.0.stdin.take().expect("piped stdin");
    stdin.write_all(b"go\n").expect("start the child");
    drop(stdin);
    let status = busy.0.wait().expect("wait for sh");
    assert!(status.success());

    let c = read_counters(&cgroups).expect("read the test cgroups");
    eprintln!("{} cgroups read: {c:?}", cgroups.len());
    let usage = c
        .cpu
        .usage_ns
        .expect("cpu.stat usage_usec in the unified hierarchy");
    assert!(
        usage > 1_000_000,
        "the child ran for more than 1 ms: {usage} ns"
    );
    let (user, system) = (c.cpu.user_ns.unwrap(), c.cpu.system_ns.unwrap());
    assert!(
        user + system <= usage + usage / 5 + 20_000_000,
        "{user} + {system} vs {usage}"
    );
    for (what, p) in [
        ("cpu", &c.psi.cpu),
        ("memory", &c.psi.memory),
        ("io", &c.psi.io),
    ] {
        let p = p.as_ref().unwrap_or_else(|| panic!("{what}.pressure"));
        assert!(
            p.some_avg10 >= 0.0 && p.some_avg10 <= 100.0,
            "{what}: {p:?}"
        );
    }

    // On a hybrid host, v1 cpuacct charges the same runtime deltas as the unified
    // hierarchy's cpu.stat (both from update_curr): the v1 oracle must agree.
    if let Some(acct) = cgroups.iter().find(|cg| {
        matches!(&cg.hierarchy, Hierarchy::V1 { controllers } if controllers.iter().any(|x| x == "cpuacct"))
    }) {
        let v1 = read_counters(std::slice::from_ref(acct)).expect("read cpuacct");
        let v1_usage = v1.cpu.usage_ns.expect("cpuacct.usage");
        let diff = v1_usage.abs_diff(usage);
        assert!(diff <= usage / 20 + 5_000_000, "cpuacct {v1_usage} ns vs cpu.stat {usage} ns");
    }
    let has = |ctl: &str| {
        cgroups.iter().any(|cg| {
            matches!(&cg.hierarchy, Hierarchy::V1 { controllers } if controllers.iter().any(|x| x == ctl))
        })
    };
    if has("memory") {
        assert!(c.memory.usage_bytes.is_some(), "v1 memory.usage_in_bytes");
    }
    if has("cpu") {
        assert_eq!(
            c.cpu.throttled_periods,
            Some(0),
            "v1 cpu.stat, no quota set"
        );
    }
    if has("blkio") {
        assert!(
            c.io.read_bytes.is_some(),
            "v1 blkio.throttle.io_service_bytes"
        );
    }

    drop(busy);
    drop(guard);
    match read_counters(&cgroups) {
        Err(CgroupError::Vanished { path }) => assert_eq!(path, v2_dir),
        other => panic!("removed cgroups must read as vanished: {other:?}"),
    }
}
