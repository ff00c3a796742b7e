//! Fixtures for the privileged integration tests: real cgroups (v1 and the v2 unified
//! hierarchy of a hybrid host), real busy processes placed in them before they run, and
//! the kernel's own accounting to compare against (schedstat, context-switch counts).

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod agent;
pub mod fleet;
pub mod guest_bundle;
pub mod lab;
pub mod ledger_oracle;
pub mod oracle;

/// Fails the test (it never skips) unless it runs as root.
pub fn require_root(test: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    // A test that cannot run fails: it never passes by returning early.
    assert_eq!(
        euid, 0,
        "{test} needs root (eBPF, cgroups, QEMU): run ./scripts/test.sh as root"
    );
}

/// Kernel release, for skip messages.
pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

const V1_CONTROLLERS: &[&str] = &["cpu", "cpuacct", "cpuset", "memory", "blkio", "pids"];

/// Where the cgroup v2 hierarchy is mounted on this host.
pub fn v2_root() -> PathBuf {
    if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        PathBuf::from("/sys/fs/cgroup/unified")
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

/// A test "VM" as cgroups: one directory per hierarchy, all named
/// `interference-test/<name>`. Dropping it kills its processes and removes the dirs.
pub struct TestCgroup {
    pub name: String,
    pub dirs: Vec<PathBuf>,
    children: Vec<Child>,
}

impl TestCgroup {
    pub fn new(name: &str) -> io::Result<Self> {
        let rel = format!("interference-test/{name}-{}", std::process::id());
        let mut dirs = vec![v2_root().join(&rel)];
        for c in V1_CONTROLLERS {
            let root = Path::new("/sys/fs/cgroup").join(c);
            if root.join("tasks").exists() {
                dirs.push(root.join(&rel));
            }
        }
        for d in &dirs {
            fs::create_dir_all(d)?;
            if d.starts_with("/sys/fs/cgroup/cpuset") {
                // A v1 cpuset cgroup takes no task until it has cpus and mems.
                let parent = d.parent().unwrap_or(d);
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let up = fs::read_to_string(parent.parent().unwrap_or(parent).join(f))?;
                    for dir in [parent, d.as_path()] {
                        if fs::read_to_string(dir.join(f))?.trim().is_empty() {
                            fs::write(dir.join(f), up.trim())?;
                        }
                    }
                }
            }
        }
        Ok(Self {
            name: name.to_string(),
            dirs,
            children: vec![],
        })
    }

    /// The cgroup list for a static `[[vm]]` entry.
    pub fn paths(&self) -> Vec<String> {
        self.dirs.iter().map(|d| d.display().to_string()).collect()
    }

    pub fn dir(&self, controller: &str) -> Option<&Path> {
        let prefix = Path::new("/sys/fs/cgroup").join(controller);
        self.dirs
            .iter()
            .find(|d| d.starts_with(&prefix))
            .map(|d| d.as_path())
    }

    /// Starts `cmd` with its process already in every cgroup of this VM.
    pub fn spawn(&mut self, cmd: &mut Command) -> io::Result<u32> {
        cmd.stdout(Stdio::null());
        self.spawn_keeping_stdout(cmd)
    }

    /// [`TestCgroup::spawn`], with the caller's choice of stdout (e.g. piped, to read a
    /// workload's progress lines) and the child's stdout handed back.
    pub fn spawn_piped(
        &mut self,
        cmd: &mut Command,
    ) -> io::Result<(u32, std::process::ChildStdout)> {
        cmd.stdout(Stdio::piped());
        let pid = self.spawn_keeping_stdout(cmd)?;
        let out = self
            .children
            .last_mut()
            .and_then(|c| c.stdout.take())
            .ok_or_else(|| io::Error::other("no stdout pipe"))?;
        Ok((pid, out))
    }

    fn spawn_keeping_stdout(&mut self, cmd: &mut Command) -> io::Result<u32> {
        let procs: Vec<std::ffi::CString> = self
            .dirs
            .iter()
            .map(|d| {
                let f = if d.join("cgroup.procs").exists() {
                    d.join("cgroup.procs")
                } else {
                    d.join("tasks")
                };
                std::ffi::CString::new(f.display().to_string()).unwrap_or_default()
            })
            .collect();
        // SAFETY: the closure only calls async-signal-safe functions (open, write, close,
        // getpid) on memory allocated before fork.
        unsafe {
            cmd.pre_exec(move || {
                let pid = libc::getpid();
                let mut buf = [0u8; 16];
                let mut n = 0;
                let mut p = pid as u32;
                let mut tmp = [0u8; 16];
                let mut k = 0;
                loop {
                    tmp[k] = b'0' + (p % 10) as u8;
                    k += 1;
                    p /= 10;
                    if p == 0 {
                        break;
                    }
                }
                while k > 0 {
                    k -= 1;
                    buf[n] = tmp[k];
                    n += 1;
                }
                for path in &procs {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                    if fd < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    let w = libc::write(fd, buf.as_ptr().cast(), n);
                    libc::close(fd);
                    if w < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.stderr(Stdio::null()).spawn()?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// A busy-looping shell in this VM's cgroups, optionally pinned to `cpu`.
    pub fn spin(&mut self, cpu: Option<usize>) -> io::Result<u32> {
        let script = "while :; do :; done";
        let mut cmd = match cpu {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", &c.to_string(), "sh", "-c", script]);
                cmd
            }
            None => {
                let mut cmd = Command::new("sh");
                cmd.args(["-c", script]);
                cmd
            }
        };
        self.spawn(&mut cmd)
    }

    /// Kills every process this fixture started, and waits for them.
    pub fn stop_all(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }

    /// Removes the cgroup directories (after killing the processes).
    pub fn remove(&mut self) {
        self.stop_all();
        for d in &self.dirs {
            let deadline = Instant::now() + Duration::from_secs(5);
            while fs::remove_dir(d).is_err() && d.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Threads of a process.
pub fn threads_of(pid: u32) -> Vec<u32> {
    let mut tids: Vec<u32> = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort();
    tids
}

/// The process whose pid a `taskset ... sh -c` wrapper became (taskset execs sh).
pub fn wait_running(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(comm) = fs::read_to_string(format!("/proc/{pid}/comm")) {
            if comm.trim() != "taskset" {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A static-inventory VM for `cg`, its threads taken from the given processes, and its
/// cgroups classified by the inventory's own mount table.
pub fn vm_for(cg: &TestCgroup, pids: &[u32]) -> interference::inventory::Vm {
    use interference::inventory::{Mounts, Vm, VmSource, VmThread};
    let mounts = Mounts::read(Path::new("/proc")).expect("reading /proc/self/mountinfo");
    let cgroups = cg
        .dirs
        .iter()
        .map(|d| {
            mounts
                .classify(d)
                .unwrap_or_else(|e| panic!("classifying {}: {e}", d.display()))
        })
        .collect();
    let threads = pids
        .iter()
        .flat_map(|p| threads_of(*p))
        .map(|tid| VmThread {
            tid,
            name: fs::read_to_string(format!("/proc/{tid}/comm"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            vcpu: None,
        })
        .collect();
    Vm {
        pid: pids.first().copied(),
        cgroups,
        threads,
        ..Vm::new(cg.name.clone(), VmSource::Static)
    }
}

/// A collector over the real eBPF programs, LLC counters in software mode (no PMU here).
pub fn real_collector() -> anyhow::Result<
    interference::telemetry::collector::Collector<interference::telemetry::ebpf::EbpfProbes>,
> {
    use interference::telemetry::collector::{Collector, CollectorOptions};
    use interference::telemetry::ebpf::{EbpfProbes, ProbeSet};
    use interference::telemetry::perf::CounterSet;
    let probes = EbpfProbes::load(ProbeSet::default())?;
    Ok(Collector::new(
        probes,
        CollectorOptions {
            host: "test".into(),
            counters: CounterSet::Software,
            sched: true,
            block_io: true,
        },
    )?)
}

/// libvirt-style child cgroups (`libvirt`, `libvirt/vcpu0`, `libvirt/emulator`, ...)
/// below every directory of a [`TestCgroup`], each level created explicitly so that v1
/// cpusets get their parent's cpus and mems. Dropping it moves the processes left in
/// the children back to the VM's own cgroups and removes the children, deepest first;
/// drop it before the [`TestCgroup`].
pub struct TestChildren {
    /// (VM directory, child directory), parents before children.
    dirs: Vec<(PathBuf, PathBuf)>,
}

impl TestChildren {
    pub fn new(cg: &TestCgroup, rels: &[&str]) -> io::Result<Self> {
        let mut levels: Vec<PathBuf> = Vec::new();
        for rel in rels {
            let mut acc = PathBuf::new();
            for part in Path::new(rel).components() {
                acc.push(part);
                if !levels.contains(&acc) {
                    levels.push(acc.clone());
                }
            }
        }
        levels.sort_by_key(|l| l.components().count());
        let mut out = Self { dirs: Vec::new() };
        for vm_dir in &cg.dirs {
            for level in &levels {
                let dir = vm_dir.join(level);
                fs::create_dir(&dir).or_else(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
                out.dirs.push((vm_dir.clone(), dir.clone()));
                if dir.starts_with("/sys/fs/cgroup/cpuset") {
                    let parent = dir.parent().unwrap_or(&dir);
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        if fs::read_to_string(dir.join(f))?.trim().is_empty() {
                            fs::write(dir.join(f), fs::read_to_string(parent.join(f))?.trim())?;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The child `rel` in the v1 hierarchy of `controller` (or `unified`).
    pub fn dir(&self, controller: &str, rel: &str) -> Option<&Path> {
        let prefix = Path::new("/sys/fs/cgroup").join(controller);
        self.dirs
            .iter()
            .find(|(vm, d)| {
                vm.starts_with(&prefix) && d.strip_prefix(vm).ok() == Some(Path::new(rel))
            })
            .map(|(_, d)| d.as_path())
    }

    /// Moves process `pid` into child `rel` in every hierarchy.
    pub fn move_into(&self, rel: &str, pid: u32) -> io::Result<()> {
        for (vm, d) in &self.dirs {
            if d.strip_prefix(vm).ok() == Some(Path::new(rel)) {
                fs::write(d.join("cgroup.procs"), pid.to_string())?;
            }
        }
        Ok(())
    }
}

impl Drop for TestChildren {
    fn drop(&mut self) {
        for (vm, d) in self.dirs.iter().rev() {
            let procs = fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace() {
                let _ = fs::write(vm.join("cgroup.procs"), pid);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while fs::remove_dir(d).is_err() && d.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Every `names` file (e.g. cpu.shares, cpuset.cpus) in `dirs` and below, with its
/// content: a snapshot to compare after a restore.
pub fn snapshot_files(dirs: &[PathBuf], names: &[&str]) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(d) = stack.pop() {
        for name in names {
            if let Ok(text) = fs::read_to_string(d.join(name)) {
                out.push((d.join(name), text.trim().to_string()));
            }
        }
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// The release binary the tests run (built by ./scripts/setup.sh).
pub fn interference_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/interference");
    assert!(
        p.exists(),
        "{} missing: ./scripts/setup.sh builds it",
        p.display()
    );
    p
}

/// Builds the dataset's workload (scripts/dataset/workload.c; gcc comes with setup.sh)
/// into `dir`.
pub fn dataset_workload(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dataset/workload.c");
    let exe = dir.join("dataset-workload");
    let st = Command::new("gcc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("gcc runs");
    assert!(st.success(), "building {}", src.display());
    exe
}

/// A workload's progress: (seconds since the test's `t0`, ops per busy second).
pub type Rates = std::sync::Arc<std::sync::Mutex<Vec<(f64, f64)>>>;

/// Starts the dataset's `cpu` workload in `cg`, pinned to `cpu`, on `schedule`, and
/// collects its progress lines as they come.
pub fn start_cpu_workload(
    cg: &mut TestCgroup,
    exe: &Path,
    cpu: usize,
    schedule: &str,
    seconds: u64,
    t0: Instant,
) -> Rates {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &cpu.to_string()]).arg(exe).args([
        "cpu",
        "--schedule",
        schedule,
        "--duration",
        &seconds.to_string(),
    ]);
    let (_, out) = cg.spawn_piped(&mut cmd).expect("workload starts");
    let rates: Rates = Default::default();
    let sink = rates.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in io::BufReader::new(out).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if let (Some(ops), Some(busy)) = (v["ops"].as_f64(), v["busy"].as_f64()) {
                if busy > 0.05 {
                    if let Ok(mut r) = sink.lock() {
                        r.push((t0.elapsed().as_secs_f64(), ops / busy));
                    }
                }
            }
        }
    });
    rates
}

/// Mean speed over the progress lines in (from, to] seconds.
pub fn mean_rate(rates: &Rates, from: f64, to: f64) -> f64 {
    let r = rates.lock().expect("rates lock");
    let v: Vec<f64> = r
        .iter()
        .filter(|(t, _)| *t > from && *t <= to)
        .map(|(_, x)| *x)
        .collect();
    assert!(!v.is_empty(), "no progress lines between {from} and {to} s");
    v.iter().sum::<f64>() / v.len() as f64
}

/// A small xorshift generator for the crash tests' random moments: no dependency,
/// seeded by the caller (the clock, printed, so a failing run can be repeated).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
