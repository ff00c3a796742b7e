//! The real `interference agent` as the end-to-end tests run it: a config with test
//! cgroups as static VMs, the process with its log collected as it comes (stamped with
//! the test's clock), and its metrics read back.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::{interference_bin, TestCgroup};

/// `[[vm]]` for a test cgroup, one vCPU and 512 MiB for billing.
pub fn vm_toml(cg: &TestCgroup, priority: &str, customer: &str) -> String {
    let paths: Vec<String> = cg.paths().iter().map(|p| format!("{p:?}")).collect();
    format!(
        "[[vm]]\nname = \"{}\"\ncgroups = [{}]\npriority = \"{priority}\"\nworkload = \"cpu\"\n\
         customer = \"{customer}\"\nvcpus = 1\nmemory_mib = 512\n\n",
        cg.name,
        paths.join(", ")
    )
}

/// Log lines: (seconds since the test's t0, line).
pub type Log = Arc<Mutex<Vec<(f64, String)>>>;

/// A running agent.
pub struct Agent {
    pub child: Child,
    pub log: Log,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    /// `interference agent ARGS`, its stderr collected into `log` (shared, so several
    /// runs of a crash test can write one timeline).
    pub fn start(args: &[&std::ffi::OsStr], t0: Instant, log: Log) -> Agent {
        Self::start_in(None, args, t0, log)
    }

    /// [`Agent::start`] in the network namespace `netns` (a host of the fleet lab;
    /// `nsenter` execs the agent, so the child is the agent itself).
    pub fn start_in(
        netns: Option<&str>,
        args: &[&std::ffi::OsStr],
        t0: Instant,
        log: Log,
    ) -> Agent {
        let command = match netns {
            Some(ns) => interference_fleet_lab::netns::command_in(ns, interference_bin()),
            None => Command::new(interference_bin()),
        };
        Self::spawn(command, args, t0, log)
    }

    /// [`Agent::start`] with more environment (a test that fakes the clock).
    pub fn start_with_env(
        env: &[(&str, &std::ffi::OsStr)],
        args: &[&std::ffi::OsStr],
        t0: Instant,
        log: Log,
    ) -> Agent {
        let mut command = Command::new(interference_bin());
        command.envs(env.iter().copied());
        Self::spawn(command, args, t0, log)
    }

    fn spawn(mut command: Command, args: &[&std::ffi::OsStr], t0: Instant, log: Log) -> Agent {
        let mut child = command
            .arg("agent")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("interference agent starts");
        let err = child.stderr.take().expect("stderr");
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Ok(mut l) = sink.lock() {
                    l.push((t0.elapsed().as_secs_f64(), line));
                }
            }
        });
        Agent {
            child,
            log,
            reader: Some(reader),
        }
    }

    /// SIGKILL, and wait for it.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    /// SIGTERM (the agent restores and bills), and its exit status.
    pub fn stop(self) -> std::process::ExitStatus {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        self.wait()
    }

    /// Wait for it to exit by itself (`--duration`).
    pub fn wait(mut self) -> std::process::ExitStatus {
        let status = self.child.wait().expect("agent exits");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        status
    }
}

/// A test that fails midway must not leave its agent running.
impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The whole log, one line each, for assertion messages.
pub fn log_text(log: &Log) -> String {
    log.lock()
        .map(|l| l.iter().map(|(t, s)| format!("{t:7.1} {s}\n")).collect())
        .unwrap_or_default()
}

/// The value of the metric sample `series` (name and labels, exactly as written) in
/// the textfile at `path`, if present.
pub fn metric(path: &Path, series: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The decision log lines of the mitigations (not rollbacks) the agent applied, with
/// when (`ID applied: REASON action=... pair=V/A ... vm=...`).
pub fn applied_lines(log: &Log) -> Vec<(f64, String)> {
    log.lock()
        .map(|l| {
            l.iter()
                .filter(|(_, l)| l.contains(" applied: ") && !l.contains("roll back"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The ids of the mitigations (not rollbacks) the agent applied, with when.
pub fn mitigations(log: &Log) -> Vec<(f64, String)> {
    applied_lines(log)
        .into_iter()
        .filter_map(|(t, l)| {
            let id = l.split(" applied: ").next()?.split_whitespace().last()?;
            Some((t, id.to_owned()))
        })
        .collect()
}
