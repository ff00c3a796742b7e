//! QEMU processes found in /proc: any process whose `comm` or executable is
//! `qemu-system-*` or `qemu-kvm`, with its command line decoded, its threads and its
//! cgroups. This finds VMs that no manager tells us about (scripts, the lab, other
//! orchestrators) and gives libvirt and static VMs their pid and QMP socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{debug, warn};

use super::cgroupfs::{parse_proc_cgroup, Mounts};
use super::error::{is_vanished, InventoryError};
use super::names::sanitize_vm_name;
use super::qemu_cmdline::{parse_cmdline, QmpEndpoint};
use super::threads::{process_threads, Cache};
use super::types::{Allocation, Priority, Vm, VmCgroup, VmSource, VmThread};
use crate::qmp::{QmpClient, QmpError};

/// A running QEMU process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuProcess {
    pub pid: u32,
    /// `-name guest=...` as given (not yet made path-safe).
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub qmp_socket: Option<PathBuf>,
    /// From `/proc/<pid>/task`, sorted by tid.
    pub threads: Vec<VmThread>,
    /// The process's cgroups, one per hierarchy with resources, hierarchy roots left
    /// out (a root cgroup is the whole host, never a VM's).
    pub cgroups: Vec<VmCgroup>,
    /// vCPUs and memory from `-smp` and `-m`.
    pub allocation: Allocation,
}

impl QemuProcess {
    /// The VM name this process gets when nothing else names it: its `-name`, made
    /// path-safe, or `qemu-<pid>`.
    pub fn vm_name(&self) -> String {
        let fallback = format!("qemu-{}", self.pid);
        match &self.name {
            Some(name) => sanitize_vm_name(name, &fallback),
            None => fallback,
        }
    }

    /// A VM found only as a process.
    pub fn into_vm(self) -> Vm {
        Vm {
            name: self.vm_name(),
            uuid: self.uuid,
            source: VmSource::Qemu,
            pid: Some(self.pid),
            qmp_socket: self.qmp_socket,
            cgroups: self.cgroups,
            threads: self.threads,
            customer: None,
            priority: Priority::default(),
            workload: None,
            allocation: self.allocation,
        }
    }
}

/// `qemu-system-x86_64`, `qemu-system-aarch64`, `qemu-kvm` (RHEL). `comm` is cut at
/// 15 bytes ("qemu-system-x86"), which still matches.
pub fn is_qemu_binary(name: &str) -> bool {
    name.starts_with("qemu-system-") || name.starts_with("qemu-kvm")
}

/// Every QEMU process under `proc_root`, sorted by pid. Only failing to list
/// `proc_root` itself is an error; a process that exits mid-scan is skipped silently
/// and one that cannot be read otherwise is skipped with a warning.
pub fn scan(
    proc_root: &Path,
    mounts: &Mounts,
    cache: &mut Cache,
) -> Result<Vec<QemuProcess>, InventoryError> {
    let entries = std::fs::read_dir(proc_root).map_err(|source| InventoryError::ListDir {
        path: proc_root.to_path_buf(),
        source,
    })?;
    let mut pids: Vec<u32> = entries
        .filter_map(|e| {
            e.ok()
                .and_then(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        })
        .collect();
    pids.sort_unstable();
    let mut out = Vec::new();
    for pid in pids {
        match read_process(proc_root, pid, mounts, cache) {
            Ok(Some(p)) => out.push(p),
            Ok(None) => {}
            Err(e) if e.vanished() => debug!(pid, "process exited during the scan"),
            Err(e) => warn!("skipping QEMU process {pid}: {e}"),
        }
    }
    Ok(out)
}

/// The QEMU process `pid`, or None when `pid` is not QEMU (or is a zombie).
pub fn read_process(
    proc_root: &Path,
    pid: u32,
    mounts: &Mounts,
    cache: &mut Cache,
) -> Result<Option<QemuProcess>, InventoryError> {
    let dir = proc_root.join(pid.to_string());
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read(&path).map_err(|source| InventoryError::Proc { pid, path, source })
    };
    let comm = String::from_utf8_lossy(&read("comm")?)
        .trim_end()
        .to_owned();
    if !is_qemu_binary(&comm) && !exe_is_qemu(&dir) {
        return Ok(None);
    }
    let argv: Vec<String> = read("cmdline")?
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let argv: Vec<String> = match argv.iter().rposition(|a| !a.is_empty()) {
        Some(last) => argv[..=last].to_vec(),
        None => return Ok(None), // zombie: no command line, no threads left to watch
    };
    let cmd = parse_cmdline(&argv);
    let qmp_socket = match cmd.qmp {
        Some(QmpEndpoint::Path(p)) => Some(p),
        Some(QmpEndpoint::Fd(fd)) => socket_path_of_fd(&dir, fd),
        None => None,
    };
    let threads = process_threads(proc_root, pid, cache)?;
    let text = String::from_utf8_lossy(&read("cgroup")?).into_owned();
    let mut cgroups: Vec<VmCgroup> = Vec::new();
    for line in parse_proc_cgroup(&text) {
        if line.path == Path::new("/") || !line.has_resources() {
            continue;
        }
        if let Some(c) = mounts.resolve(&line) {
            if !cgroups.contains(&c) {
                cgroups.push(c);
            }
        }
    }
    cgroups.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Some(QemuProcess {
        pid,
        name: cmd.name,
        uuid: cmd.uuid,
        qmp_socket,
        threads,
        cgroups,
        allocation: Allocation {
            vcpus: cmd.vcpus,
            memory_bytes: cmd.memory_bytes,
        },
    }))
}

/// Whether `/proc/<pid>/exe` names a QEMU binary (kernel threads have no exe; an
/// upgraded binary reads "... (deleted)").
fn exe_is_qemu(dir: &Path) -> bool {
    let Ok(target) = std::fs::read_link(dir.join("exe")) else {
        return false;
    };
    let target = target.to_string_lossy();
    let target = target.strip_suffix(" (deleted)").unwrap_or(&target);
    target.rsplit('/').next().is_some_and(is_qemu_binary)
}

/// Path of the unix socket open as `fd` in the process at `dir`: the fd links to
/// `socket:[inode]`, and the process's `/proc/<pid>/net/unix` lists that inode's path.
fn socket_path_of_fd(dir: &Path, fd: i32) -> Option<PathBuf> {
    let link = std::fs::read_link(dir.join("fd").join(fd.to_string())).ok()?;
    let inode = link
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .to_owned();
    let table = match std::fs::read_to_string(dir.join("net/unix")) {
        Ok(t) => t,
        Err(e) if is_vanished(&e) => return None,
        Err(e) => {
            debug!("cannot read {}: {e}", dir.join("net/unix").display());
            return None;
        }
    };
    // Num RefCount Protocol Flags Type St Inode Path
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let path = fields.get(7)?;
        (fields.get(6) == Some(&inode.as_str()) && path.starts_with('/'))
            .then(|| PathBuf::from(path))
    })
}

/// (vCPU index, host thread id) of each vCPU of the QEMU whose QMP socket is
/// `socket`, from `query-cpus-fast`, sorted by vCPU. The fallback for a QEMU started
/// without `debug-threads=on`, whose threads all carry the process's name. QEMU
/// serves one client per QMP socket, so this times out on a monitor that libvirt
/// holds; libvirt's vcpuN cgroups give the mapping there. Not used by discovery yet.
pub fn vcpu_threads_from_qmp(
    socket: &Path,
    timeout: Duration,
) -> Result<Vec<(u32, u32)>, QmpError> {
    let mut qmp = QmpClient::connect(socket, timeout)?;
    let cpus = qmp.query_cpus_fast()?;
    Ok(cpus
        .into_iter()
        .map(|c| (c.cpu_index, c.thread_id))
        .collect())
}

/// Mark the threads that `vcpus` (from [`vcpu_threads_from_qmp`]) names as vCPUs,
/// overriding what their names said; returns how many threads were matched.
pub fn apply_vcpu_threads(threads: &mut [VmThread], vcpus: &[(u32, u32)]) -> usize {
    let mut matched = 0;
    for thread in threads.iter_mut() {
        if let Some((vcpu, _)) = vcpus.iter().find(|(_, tid)| *tid == thread.tid) {
            thread.vcpu = Some(*vcpu);
            matched += 1;
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::types::Hierarchy;
    use crate::testing::proc_fs::FakeHost;

    #[test]
    fn binaries() {
        assert!(is_qemu_binary("qemu-system-x86"));
        assert!(is_qemu_binary("qemu-system-aarch64"));
        assert!(is_qemu_binary("qemu-kvm"));
        assert!(!is_qemu_binary("qemu-img"));
        assert!(!is_qemu_binary("bash"));
    }

    #[test]
    fn scans_qemu_processes_only() {
        let host = FakeHost::hybrid();
        let base = host.cgroup_base();
        host.process(
            300,
            "qemu-system-x86",
            &[
                "/usr/bin/qemu-system-x86_64",
                "-name",
                "guest=web-1,debug-threads=on",
                "-uuid",
                "u-1",
                "-qmp",
                "unix:/run/web-1.qmp,server=on,wait=off",
                "-smp",
                "2,sockets=2,cores=1,threads=1",
                "-m",
                "size=2097152k",
            ],
            &[(301, "CPU 0/TCG"), (302, "CPU 1/TCG"), (303, "worker")],
        );
        host.proc_cgroup(
            300,
            "9:name=systemd:/lab/web-1\n8:pids:/\n1:cpu:/lab/web-1\n0::/lab/web-1\n",
        );
        // Renamed with -name process=..., found through exe.
        host.process(400, "web-2", &["qemu-kvm", "-m", "512"], &[]);
        host.process(500, "bash", &["bash"], &[]);
        let found = scan(&host.proc(), &host.mounts(), &mut Cache::default()).unwrap();
        assert_eq!(found.len(), 2);
        let p = &found[0];
        assert_eq!(
            (p.pid, p.name.as_deref(), p.uuid.as_deref()),
            (300, Some("web-1"), Some("u-1"))
        );
        assert_eq!(p.qmp_socket.as_deref(), Some(Path::new("/run/web-1.qmp")));
        let web1 = Allocation {
            vcpus: Some(2),
            memory_bytes: Some(2 << 30),
        };
        assert_eq!(p.allocation, web1);
        assert_eq!(p.clone().into_vm().allocation, web1);
        let vcpus: Vec<_> = p.threads.iter().map(|t| (t.tid, t.vcpu)).collect();
        assert_eq!(
            vcpus,
            vec![(300, None), (301, Some(0)), (302, Some(1)), (303, None)]
        );
        assert_eq!(
            p.cgroups,
            vec![
                VmCgroup {
                    path: base.join("cpu/lab/web-1"),
                    hierarchy: Hierarchy::V1 {
                        controllers: vec!["cpu".into()]
                    }
                },
                VmCgroup {
                    path: base.join("unified/lab/web-1"),
                    hierarchy: Hierarchy::V2
                },
            ]
        );
        assert_eq!(found[1].vm_name(), "qemu-400");
        let bare = found[1].clone().into_vm();
        assert_eq!(bare.source, VmSource::Qemu);
        // -m without -smp: the memory is known, the vCPUs are not (no vCPU threads).
        assert_eq!(
            bare.allocation,
            Allocation {
                vcpus: None,
                memory_bytes: Some(512 << 20)
            }
        );
        assert_eq!(bare.vcpus(), None);
    }

    #[test]
    fn qmp_fd_resolves_through_net_unix() {
        let host = FakeHost::pure_v2();
        host.process(
            600,
            "qemu-system-x86",
            &[
                "qemu-system-x86_64",
                "-chardev",
                "socket,id=charmonitor,fd=23,server=on,wait=off",
                "-mon",
                "chardev=charmonitor,id=monitor,mode=control",
            ],
            &[],
        );
        let dir = host.proc().join("600");
        std::fs::create_dir_all(dir.join("fd")).unwrap();
        std::fs::create_dir_all(dir.join("net")).unwrap();
        std::os::unix::fs::symlink("socket:[4242]", dir.join("fd/23")).unwrap();
        std::fs::write(
            dir.join("net/unix"),
            "Num       RefCount Protocol Flags    Type St Inode Path\n\
             0000000000000000: 00000002 00000000 00010000 0001 01 4241 /run/other\n\
             0000000000000000: 00000002 00000000 00010000 0001 01 4242 /var/lib/libvirt/qemu/domain-1-a/monitor.sock\n",
        )
        .unwrap();
        let p = read_process(&host.proc(), 600, &host.mounts(), &mut Cache::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            p.qmp_socket.as_deref(),
            Some(Path::new("/var/lib/libvirt/qemu/domain-1-a/monitor.sock"))
        );
        assert!(p.cgroups.is_empty(), "the root cgroup is never a VM's");
    }

    #[test]
    fn vanished_and_zombie_processes() {
        let host = FakeHost::pure_v2();
        assert!(
            read_process(&host.proc(), 700, &host.mounts(), &mut Cache::default())
                .unwrap_err()
                .vanished()
        );
        host.process(701, "qemu-system-x86", &[], &[]);
        assert_eq!(
            read_process(&host.proc(), 701, &host.mounts(), &mut Cache::default()).unwrap(),
            None
        );
    }

    #[test]
    fn qmp_vcpus_mark_threads() {
        let thread = |tid, name: &str| VmThread {
            tid,
            name: name.into(),
            vcpu: None,
        };
        let mut threads = vec![
            thread(10, "qemu-system-x86"),
            thread(11, "qemu-system-x86"),
            thread(12, "qemu-system-x86"),
        ];
        assert_eq!(
            apply_vcpu_threads(&mut threads, &[(0, 12), (1, 11), (2, 99)]),
            2
        );
        let vcpus: Vec<_> = threads.iter().map(|t| t.vcpu).collect();
        assert_eq!(vcpus, [None, Some(1), Some(0)]);
    }

    /// A real QEMU without debug-threads (every thread named after the process):
    /// QMP still finds both vCPU threads among the process's threads.
    #[test]
    #[ignore = "needs root/QEMU"]
    fn vcpu_threads_from_qmp_real_qemu() {
        let extra = ["-name", "guest=qmptest,debug-threads=off"];
        let qemu = crate::testing::qmp::RealQemu::start("vcpu_threads_from_qmp_real_qemu", &extra);
        let vcpus = vcpu_threads_from_qmp(&qemu.qmp, std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(vcpus.iter().map(|v| v.0).collect::<Vec<_>>(), [0, 1]);
        let mut threads =
            process_threads(Path::new("/proc"), qemu.pid(), &mut Cache::default()).unwrap();
        assert!(threads.iter().all(|t| t.vcpu.is_none()), "{threads:?}");
        assert_eq!(
            apply_vcpu_threads(&mut threads, &vcpus),
            2,
            "{threads:?} {vcpus:?}"
        );
    }
}
