//! The VM lab (scripts/lab.sh) as a test fixture.
//!
//! [`Lab::up`] runs `lab.sh up` with a run directory of its own (a temp dir) and a
//! unique VM name prefix, so a test never touches a lab someone started by hand, and
//! dropping the [`Lab`] always runs `lab.sh down`. The fixture reads what the lab
//! writes: each VM's `key=value` state file and its serial log, whose progress lines
//! ([`Progress`]) are how a test sees a guest's slowdown. QMP goes through [`Qmp`], a
//! deliberately small client over `UnixStream` whose every read has a deadline (the
//! agent's own QMP client lives in `interference::enforce` and is not what is tested
//! here). Every wait in this module is bounded.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// scripts/lab.sh of this checkout.
pub fn lab_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lab.sh")
}

/// What `lab.sh up` is asked for.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Number of VMs (`<prefix>-1` .. `<prefix>-N`).
    pub vms: usize,
    /// Workload per VM, cycled when shorter than `vms` (idle, cpu, mem, io, mixed).
    pub workloads: Vec<String>,
    pub vcpus: u32,
    pub mem_mib: u32,
    /// `--phases` for mixed workloads, e.g. "cpu:5,idle:5".
    pub phases: Option<String>,
    /// A host directory the guests see read-only at /mnt/share.
    pub share: Option<PathBuf>,
    /// Bound on the whole `lab.sh up` (the lab's own boot timeout is 90 s).
    pub up_timeout: Duration,
    /// Extra environment for every lab.sh run (INTERFERENCE_LAB_ACCEL, ...).
    pub env: Vec<(String, String)>,
    /// Start the VMs in this network namespace (a host of the fleet lab).
    pub netns: Option<String>,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            vms: 1,
            workloads: vec!["cpu".into()],
            vcpus: 1,
            mem_mib: 192,
            phases: None,
            share: None,
            up_timeout: Duration::from_secs(180),
            env: Vec::new(),
            netns: None,
        }
    }
}

/// A running lab; `down` runs on drop.
pub struct Lab {
    run: tempfile::TempDir,
    prefix: String,
    names: Vec<String>,
    env: Vec<(String, String)>,
    /// The network namespace `up` ran in.
    netns: Option<String>,
    down: bool,
}

/// One lab VM as its state file describes it now (re-read after a migration).
#[derive(Debug, Clone)]
pub struct LabVm {
    pub name: String,
    /// libvirt-style domain id in the scope name; a migration gives a new one.
    pub id: u32,
    pub uuid: String,
    pub pid: u32,
    /// "kvm" or "tcg".
    pub accel: String,
    pub vcpus: u32,
    /// The workload last asked for (boot or `workload` command).
    pub workload: String,
    pub qmp: PathBuf,
    /// The guest's command port (a unix socket wired to its ttyS1).
    pub cmd: PathBuf,
    pub serial_log: PathBuf,
    /// `machine-qemu\x2d<id>\x2d<name>.scope`, backslashes literal.
    pub scope: String,
    /// Every cgroup directory the lab created for this VM, parents first.
    pub cgroups: Vec<PathBuf>,
}

/// One `progress t=.. workload=.. phase=.. rate=.. ops=..` line of a guest.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Guest uptime, seconds.
    pub t: f64,
    /// Configured workload (mixed for a phased one).
    pub workload: String,
    /// What ran during this second.
    pub phase: String,
    /// Operations per second over the last interval.
    pub rate: f64,
    pub ops: u64,
}

/// The output of a command run in a guest.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub code: i32,
    pub stdout: String,
}

impl Lab {
    /// Brings up `options.vms` VMs named `<tag><pid>-<i>`, returning once every guest
    /// has printed its first progress line.
    pub fn up(tag: &str, options: &LabOptions) -> Result<Lab> {
        let run = tempfile::Builder::new()
            .prefix("ilab-")
            .tempdir()
            .context("creating the lab's run directory")?;
        let prefix = format!("{tag}{}", std::process::id() % 100_000);
        let names = (1..=options.vms).map(|i| format!("{prefix}-{i}")).collect();
        let lab = Lab {
            run,
            prefix,
            names,
            env: options.env.clone(),
            netns: options.netns.clone(),
            down: false,
        };
        let mut args: Vec<String> = vec![
            "up".into(),
            options.vms.to_string(),
            "--workloads".into(),
            options.workloads.join(","),
            "--vcpus".into(),
            options.vcpus.to_string(),
            "--mem".into(),
            options.mem_mib.to_string(),
            "--name-prefix".into(),
            lab.prefix.clone(),
        ];
        if let Some(p) = &options.phases {
            args.extend(["--phases".into(), p.clone()]);
        }
        if let Some(s) = &options.share {
            args.extend(["--share".into(), s.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if lab.netns.is_some() {
            // The guest is built (its kernel package downloaded) where the network is.
            lab.script_ok(&["build"], options.up_timeout)?;
        }
        let out = lab.script_in(lab.netns.as_deref(), &args, options.up_timeout)?;
        if !out.status.success() {
            bail!(
                "lab.sh up failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        eprintln!("{}", String::from_utf8_lossy(&out.stderr).trim_end());
        Ok(lab)
    }

    pub fn run_dir(&self) -> &Path {
        self.run.path()
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Runs `lab.sh ARGS` against this lab's run directory, killing it after `timeout`.
    pub fn script(&self, args: &[&str], timeout: Duration) -> Result<Output> {
        self.script_in(None, args, timeout)
    }

    /// [`Lab::script`] in the network namespace `netns` (None: this one): QEMUs it
    /// starts live there.
    pub fn script_in(
        &self,
        netns: Option<&str>,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Output> {
        let mut command = match netns {
            Some(ns) => interference_fleet_lab::netns::command_in(ns, "bash"),
            None => Command::new("bash"),
        };
        run_bounded(
            command
                .arg(lab_script())
                .args(args)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .env("INTERFERENCE_LAB_RUN", self.run.path()),
            timeout,
        )
        .with_context(|| format!("lab.sh {}", args.join(" ")))
    }

    /// Like [`Lab::script`], failing with the script's stderr when it exits non-zero.
    fn script_ok(&self, args: &[&str], timeout: Duration) -> Result<String> {
        self.script_ok_in(None, args, timeout)
    }

    /// [`Lab::script_ok`] in the network namespace `netns` (None: this one).
    fn script_ok_in(
        &self,
        netns: Option<&str>,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String> {
        let out = self.script_in(netns, args, timeout)?;
        if !out.status.success() {
            bail!(
                "lab.sh {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The VM's state now.
    pub fn vm(&self, name: &str) -> Result<LabVm> {
        let dir = self.run.path().join("vms").join(name);
        let text = fs::read_to_string(dir.join("state"))
            .with_context(|| format!("no lab VM {name} in {}", self.run.path().display()))?;
        let kv: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let get = |k: &str| {
            kv.get(k)
                .map(|v| v.to_string())
                .ok_or_else(|| anyhow!("state of {name} has no {k}"))
        };
        let cgroups = fs::read_to_string(dir.join("cgroups"))
            .unwrap_or_default()
            .lines()
            .map(PathBuf::from)
            .collect();
        Ok(LabVm {
            name: name.to_string(),
            id: get("id")?.parse()?,
            uuid: get("uuid")?,
            pid: get("pid")?.parse()?,
            accel: get("accel")?,
            vcpus: get("vcpus")?.parse()?,
            workload: get("workload")?,
            qmp: get("qmp")?.into(),
            cmd: get("cmd")?.into(),
            serial_log: get("serial")?.into(),
            scope: get("scope")?,
            cgroups,
        })
    }

    /// Every VM this fixture started, in name order.
    pub fn vms(&self) -> Result<Vec<LabVm>> {
        self.names.iter().map(|n| self.vm(n)).collect()
    }

    /// `lab.sh status` output.
    pub fn status(&self) -> Result<String> {
        self.script_ok(&["status"], Duration::from_secs(60))
    }

    /// Changes a guest's workload over its command channel (waits for the guest's ack).
    pub fn set_workload(&self, name: &str, kind: &str) -> Result<()> {
        self.script_ok(&["workload", name, kind], Duration::from_secs(40))
            .map(|_| ())
    }

    /// Runs a shell command in the guest; its output and exit status.
    pub fn exec(&self, name: &str, command: &str, timeout: Duration) -> Result<ExecOutput> {
        let secs = timeout.as_secs().max(1).to_string();
        let out = self.script(
            &["exec", name, "--timeout", &secs, "--", command],
            timeout + Duration::from_secs(10),
        )?;
        match out.status.code() {
            Some(1..=3) if !out.stderr.is_empty() => bail!(
                "lab.sh exec {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            ),
            Some(code) => Ok(ExecOutput {
                code,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            }),
            None => bail!("lab.sh exec {name} was killed"),
        }
    }

    /// Live-migrates the VM to a new QEMU on this host, in the network namespace the
    /// lab was started in (the new QEMU lives where the old one did); the VM's new
    /// state.
    pub fn migrate(&self, name: &str) -> Result<LabVm> {
        self.script_ok_in(
            self.netns.as_deref(),
            &["migrate", name, "--timeout", "90"],
            Duration::from_secs(150),
        )?;
        self.vm(name)
    }

    /// Starts the VM's next QEMU in the network namespace `netns`, waiting for a
    /// migration on `tcp:listen` that someone else (the agent) drives; its pid.
    pub fn incoming(&self, name: &str, netns: &str, listen: &str) -> Result<u32> {
        let out = self.script_in(
            Some(netns),
            &["incoming", name, listen],
            Duration::from_secs(60),
        )?;
        if !out.status.success() {
            bail!(
                "lab.sh incoming {name} {listen} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse()
            .with_context(|| format!("lab.sh incoming printed {text:?}, not a pid"))
    }

    /// After a migration to the QEMU [`Lab::incoming`] started: waits (up to
    /// `timeout`) until it runs the guest and makes it the VM's.
    pub fn adopt(&self, name: &str, timeout: Duration) -> Result<LabVm> {
        let secs = timeout.as_secs().to_string();
        self.script_ok(
            &["adopt", name, "--timeout", &secs],
            timeout + Duration::from_secs(30),
        )?;
        self.vm(name)
    }

    /// Pins every vCPU thread of the VM to the host CPUs in `cpulist` (taskset syntax).
    pub fn pin_vcpus(&self, name: &str, cpulist: &str) -> Result<()> {
        self.script_ok(&["pin", name, cpulist], Duration::from_secs(30))
            .map(|_| ())
    }

    /// A QMP connection to the VM (5 s per command).
    pub fn qmp(&self, name: &str) -> Result<Qmp> {
        Ok(Qmp::connect(&self.vm(name)?.qmp, Duration::from_secs(5))?)
    }

    /// Stops every VM and removes what the lab created; also done on drop.
    pub fn down(&mut self) -> Result<()> {
        self.down = true;
        self.script_ok(&["down"], Duration::from_secs(120))
            .map(|_| ())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.down {
            if let Err(e) = self.down() {
                eprintln!("lab fixture: down failed: {e:#}");
            }
        }
    }
}

impl LabVm {
    /// The QEMU process exists and is no zombie.
    pub fn alive(&self) -> bool {
        fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .map(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, rest)| !rest.starts_with('Z'))
            })
            .unwrap_or(false)
    }

    /// Threads of the QEMU process as (tid, comm).
    pub fn threads(&self) -> Vec<(u32, String)> {
        crate::threads_of(self.pid)
            .into_iter()
            .map(|tid| {
                let comm = fs::read_to_string(format!("/proc/{}/task/{tid}/comm", self.pid))
                    .unwrap_or_default();
                (tid, comm.trim_end().to_string())
            })
            .collect()
    }

    /// The current size of the serial log: pass it to [`LabVm::wait_progress`] to see
    /// only what comes after now.
    pub fn log_len(&self) -> u64 {
        fs::metadata(&self.serial_log).map(|m| m.len()).unwrap_or(0)
    }

    /// Every progress line of the serial log after byte `offset`.
    pub fn progress_since(&self, offset: u64) -> Vec<Progress> {
        let mut text = Vec::new();
        if let Ok(mut f) = fs::File::open(&self.serial_log) {
            use std::io::Seek;
            if f.seek(io::SeekFrom::Start(offset)).is_ok() {
                let _ = f.read_to_end(&mut text);
            }
        }
        String::from_utf8_lossy(&text)
            .lines()
            .filter_map(parse_progress)
            .collect()
    }

    /// Waits until `n` progress lines have appeared after byte `offset` of the log,
    /// failing after `timeout` (or at once when QEMU is gone).
    pub fn wait_progress(&self, offset: u64, n: usize, timeout: Duration) -> Result<Vec<Progress>> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.progress_since(offset);
            if lines.len() >= n {
                return Ok(lines);
            }
            if !self.alive() {
                bail!(
                    "{} (pid {}) died; serial log {}",
                    self.name,
                    self.pid,
                    self.serial_log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: {} of {n} progress lines within {timeout:?}; serial log {}",
                    self.name,
                    lines.len(),
                    self.serial_log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Median rate of the next `n` progress lines whose phase is `phase`, skipping the
    /// first `skip` (a changed workload's first second is partial).
    pub fn median_rate(&self, phase: &str, skip: usize, n: usize) -> Result<f64> {
        let offset = self.log_len();
        let timeout = Duration::from_secs(10 + 3 * (skip + n) as u64);
        let deadline = Instant::now() + timeout;
        loop {
            let lines: Vec<Progress> = self
                .progress_since(offset)
                .into_iter()
                .filter(|p| p.phase == phase)
                .skip(skip)
                .collect();
            if lines.len() >= n {
                let rates: Vec<f64> = lines[..n].iter().map(|p| p.rate).collect();
                eprintln!("{} {phase} rates: {rates:.0?}", self.name);
                return Ok(median(&rates));
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: {} of {n} '{phase}' progress lines within {timeout:?}",
                    self.name,
                    lines.len()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Parses `progress t=12.0 workload=cpu phase=cpu rate=123456.0 ops=42` anywhere in a line.
pub fn parse_progress(line: &str) -> Option<Progress> {
    let rest = &line[line.find("progress t=")? + "progress ".len()..];
    let fields: BTreeMap<&str, &str> = rest
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect();
    Some(Progress {
        t: fields.get("t")?.parse().ok()?,
        workload: fields.get("workload")?.to_string(),
        phase: fields.get("phase")?.to_string(),
        rate: fields.get("rate")?.parse().ok()?,
        ops: fields.get("ops")?.parse().ok()?,
    })
}

pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs a command with its output captured, killing it when it outlives `timeout`.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => Ok(out?),
        Err(_) => {
            // SAFETY: kill has no memory preconditions; pid is our child, not yet reaped
            // (the waiting thread still holds it).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            bail!("still running after {timeout:?}; killed")
        }
    }
}

/// Why a QMP exchange failed.
#[derive(Debug)]
pub enum QmpError {
    /// The socket could not be connected (no QEMU there).
    Connect {
        path: PathBuf,
        source: io::Error,
    },
    /// QEMU did not answer in time: stopped, hung, or not QEMU at all.
    Timeout {
        path: PathBuf,
        waiting_for: String,
        after: Duration,
    },
    /// The peer closed the connection.
    Closed {
        path: PathBuf,
    },
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// Not QMP: a line that is not JSON, or no greeting.
    Protocol {
        path: PathBuf,
        detail: String,
    },
    /// QEMU answered with an error.
    Command {
        command: String,
        class: String,
        desc: String,
    },
}

impl fmt::Display for QmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QmpError::Connect { path, source } => {
                write!(f, "cannot connect to QMP socket {}: {source}", path.display())
            }
            QmpError::Timeout {
                path,
                waiting_for,
                after,
            } => write!(
                f,
                "QMP socket {} did not answer within {after:?} ({waiting_for}); is QEMU stopped or hung?",
                path.display()
            ),
            QmpError::Closed { path } => {
                write!(f, "QMP socket {} closed the connection", path.display())
            }
            QmpError::Io { path, source } => {
                write!(f, "QMP socket {}: {source}", path.display())
            }
            QmpError::Protocol { path, detail } => {
                write!(f, "QMP socket {} does not speak QMP: {detail}", path.display())
            }
            QmpError::Command {
                command,
                class,
                desc,
            } => write!(f, "QMP {command} failed: {class}: {desc}"),
        }
    }
}

impl std::error::Error for QmpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            QmpError::Connect { source, .. } | QmpError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A minimal QMP client: greeting, capabilities negotiation, then one command at a
/// time, events skipped. Each call gets the whole `timeout`; nothing blocks longer.
pub struct Qmp {
    stream: UnixStream,
    path: PathBuf,
    timeout: Duration,
    buf: Vec<u8>,
}

impl Qmp {
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let stream = UnixStream::connect(path).map_err(|source| QmpError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        let mut qmp = Qmp {
            stream,
            path: path.to_path_buf(),
            timeout,
            buf: Vec::new(),
        };
        let deadline = Instant::now() + timeout;
        let greeting = qmp.read_message(deadline, "the greeting")?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol {
                path: qmp.path.clone(),
                detail: format!("greeting {greeting}"),
            });
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs `command`; its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let deadline = Instant::now() + self.timeout;
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.stream
            .set_write_timeout(Some(self.timeout))
            .and_then(|_| self.stream.write_all(line.as_bytes()))
            .map_err(|source| self.io_error(source, &format!("sending {command}")))?;
        loop {
            let reply = self.read_message(deadline, &format!("the reply to {command}"))?;
            if reply.get("event").is_some() {
                continue;
            }
            if let Some(err) = reply.get("error") {
                return Err(QmpError::Command {
                    command: command.to_string(),
                    class: err["class"].as_str().unwrap_or("?").to_string(),
                    desc: err["desc"].as_str().unwrap_or("?").to_string(),
                });
            }
            return Ok(reply.get("return").cloned().unwrap_or(Value::Null));
        }
    }

    fn io_error(&self, source: io::Error, what: &str) -> QmpError {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => QmpError::Timeout {
                path: self.path.clone(),
                waiting_for: what.to_string(),
                after: self.timeout,
            },
            _ => QmpError::Io {
                path: self.path.clone(),
                source,
            },
        }
    }

    fn read_message(&mut self, deadline: Instant, what: &str) -> Result<Value, QmpError> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return serde_json::from_slice(&line).map_err(|e| QmpError::Protocol {
                    path: self.path.clone(),
                    detail: format!("{e} in {:?}", String::from_utf8_lossy(&line)),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.io_error(
                    io::ErrorKind::TimedOut.into(),
                    &format!("waiting for {what}"),
                ));
            }
            let mut chunk = [0u8; 8192];
            let n = self
                .stream
                .set_read_timeout(Some(left))
                .and_then(|_| self.stream.read(&mut chunk))
                .map_err(|e| self.io_error(e, &format!("waiting for {what}")))?;
            if n == 0 {
                return Err(QmpError::Closed {
                    path: self.path.clone(),
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
