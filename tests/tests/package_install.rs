//! The Debian packages as an operator uses them (issue 19): `dpkg -i` on this machine,
//! the unit checked by `systemd-analyze verify` and `security`, `check-config` on the
//! installed config, then the agent started exactly as its unit says (ExecStartPre,
//! ExecStart, only the unit's CapabilityBoundingSet; systemd is not PID 1 here) while a
//! priority VM shares a CPU with a neighbour. Oracles: the metrics textfile (promtool),
//! a decision log line with pair, score and rung, the ledger (`check_ledger`), every
//! cgroup file back to its value after SIGTERM, and the file system after `dpkg -r`
//! and `dpkg --purge`. The controller's package: installed, its unit checked, run as
//! its unit says with no capability as an unprivileged user, answering /readyz.
//!
//! Settings, and why: the operator's one edit, two `[[vm]]` entries, because the test's
//! VMs are cgroup workloads (discovery finds QEMU processes and libvirt machines);
//! everything else is the package's config, which is the embedded defaults.
//!
//! `./scripts/package.sh` builds the packages (`./scripts/test.sh` runs it first).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use interference_tests::agent::{log_text, vm_toml, Log};
use interference_tests::ledger_oracle::check_ledger;
use interference_tests::{
    dataset_workload, require_root, snapshot_files, start_cpu_workload, TestCgroup,
};

const AGENT_UNIT: &str = "/usr/lib/systemd/system/interference-agent.service";
const CONTROLLER_UNIT: &str = "/usr/lib/systemd/system/interference-controller.service";
const CONFIG: &str = "/etc/interference/agent.toml";
const STATE: &str = "/var/lib/interference";
const FILES: &[&str] = &["cpu.shares", "cpuset.cpus", "cpu.weight"];
/// Exposure levels `systemd-analyze security` gives the units, at most (0 best, 10
/// worst; 2.0-4.9 is "OK"). docs/operations.md records the measured ones.
const AGENT_EXPOSURE_MAX: f64 = 4.0;
const CONTROLLER_EXPOSURE_MAX: f64 = 2.0;

#[test]
#[ignore = "needs root/QEMU"]
fn the_agent_package_installs_runs_as_its_unit_restores_on_stop_and_purges_clean() {
    require_root("the_agent_package_installs_runs_as_its_unit_restores_on_stop_and_purges_clean");
    let deb = package("interference-agent");
    let _installed = Installed::new("interference-agent", &deb);

    // What the package put where.
    let listed = ok(dpkg(&["-L", "interference-agent"]));
    for path in [
        "/usr/bin/interference",
        CONFIG,
        AGENT_UNIT,
        "/usr/share/man/man1/interference.1.gz",
        "/usr/share/man/man1/interference-agent.1.gz",
        "/usr/share/man/man1/interference-check-config.1.gz",
        "/usr/share/bash-completion/completions/interference",
        "/usr/share/zsh/vendor-completions/_interference",
        "/usr/share/fish/vendor_completions.d/interference.fish",
        "/usr/share/interference/grafana/interference-agent.json",
        "/usr/share/interference/prometheus/interference-alerts.yml",
    ] {
        assert!(
            listed.lines().any(|l| l == path),
            "{path} not in the package:\n{listed}"
        );
        assert!(Path::new(path).exists(), "{path} not installed");
    }
    let conffiles = ok(Command::new("dpkg-query")
        .args(["-W", "-f=${Conffiles}", "interference-agent"])
        .output());
    assert!(
        conffiles.contains(CONFIG),
        "{CONFIG} is not a conffile: {conffiles}"
    );
    let state = std::fs::metadata(STATE).expect("the state directory");
    assert_eq!(
        (std::os::unix::fs::MetadataExt::uid(&state), mode(STATE)),
        (0, 0o750),
        "{STATE}: owner and mode"
    );

    // The unit, as systemd would read it.
    ok(Command::new("systemd-analyze")
        .args(["verify", "--man=no", AGENT_UNIT])
        .output());
    let exposure = exposure(AGENT_UNIT);
    eprintln!("systemd-analyze security: interference-agent.service {exposure}");
    assert!(exposure <= AGENT_EXPOSURE_MAX, "exposure {exposure}");
    let unit = std::fs::read_to_string(AGENT_UNIT).expect("the unit");

    // The operator declares the two VMs and checks the file.
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = dataset_workload(dir.path());
    let mut victim = TestCgroup::new("pkgprio").expect("cgroup");
    let mut noisy = TestCgroup::new("pkgnoisy").expect("cgroup");
    let mut dirs = victim.dirs.clone();
    dirs.extend(noisy.dirs.iter().cloned());
    let original = snapshot_files(&dirs, FILES);
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(CONFIG)
        .expect("config");
    write!(
        config,
        "\n{}{}",
        vm_toml(&victim, "high", "acme"),
        vm_toml(&noisy, "normal", "globex")
    )
    .expect("config written");
    drop(config);
    let check = ok(Command::new("/usr/bin/interference")
        .args(["check-config", CONFIG])
        .output());
    for vm in [&victim.name, &noisy.name] {
        assert!(
            check
                .lines()
                .any(|l| l.starts_with(&format!("{vm}: declared in [[vm]] at {CONFIG}:"))),
            "check-config does not say why it tracks {vm}:\n{check}"
        );
    }
    assert!(check.contains("interval = \"5s\"  # default"), "{check}");

    // Started as the unit says, contention on CPU 1 from the start.
    let t0 = Instant::now();
    start_cpu_workload(&mut victim, &exe, 1, "0:1", 300, t0);
    start_cpu_workload(&mut noisy, &exe, 1, "0:1", 300, t0);
    let caps = capabilities(&unit);
    ok(unit_command(&unit, "ExecStartPre", &caps).output());
    let pairs = [
        format!("{}/{}", victim.name, noisy.name),
        format!("{}/{}", noisy.name, victim.name),
    ];

    // First run, text logs: the decision line carries its fields as key=value.
    let (decision, text) = run_until_decision(&unit, &caps, &[], t0, |l| {
        l.contains(" applied: ").then(|| l.to_owned())
    });
    // Either direction: both VMs are slowed, the priority VM is protected either way.
    assert!(
        pairs
            .iter()
            .any(|p| decision.contains(&format!("pair={p}"))),
        "no pair= in: {decision}"
    );
    for field in ["vm=", "score=", "rung=", "result=applied"] {
        assert!(
            decision.contains(field),
            "{field} missing in: {decision}\n{text}"
        );
    }
    let metrics = PathBuf::from(STATE).join("metrics/interference.prom");
    promtool_check_metrics(&metrics);

    // A restart, as an operator asking for JSON logs would (`INTERFERENCE_LOG_FORMAT`
    // in the unit's environment): the same fields, at the top level of each object.
    let (decision, _) = run_until_decision(
        &unit,
        &caps,
        &[("INTERFERENCE_LOG_FORMAT", "json")],
        t0,
        |l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["result"] == "applied" && v["pair"].is_string()).then_some(v.to_string())
        },
    );
    let decision: serde_json::Value = serde_json::from_str(&decision).expect("JSON");
    assert!(
        pairs.iter().any(|p| decision["pair"] == p.as_str()),
        "{decision}"
    );
    for field in [
        "action",
        "score",
        "rung",
        "vm",
        "message",
        "level",
        "timestamp",
    ] {
        assert!(
            decision[field].is_string(),
            "{field} missing in: {decision}"
        );
    }
    victim.stop_all();
    noisy.stop_all();
    assert_eq!(
        snapshot_files(&dirs, FILES),
        original,
        "a cgroup value was left changed:\n{text}"
    );
    let facts =
        check_ledger(&PathBuf::from(STATE).join("ledger")).unwrap_or_else(|e| panic!("{e}"));
    assert!(!facts.actions.is_empty(), "no action billed:\n{text}");

    // Remove keeps the config and the data; purge takes both.
    ok(dpkg(&["-r", "interference-agent"]));
    assert!(!Path::new("/usr/bin/interference").exists());
    assert!(Path::new(CONFIG).exists(), "remove must keep the config");
    assert!(
        Path::new(STATE).join("ledger").exists(),
        "remove must keep the ledger"
    );
    ok(dpkg(&["--purge", "interference-agent"]));
    for gone in [CONFIG, "/etc/interference", STATE, AGENT_UNIT] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
    assert!(!is_installed("interference-agent"));
}

#[test]
#[ignore = "needs root/QEMU"]
fn the_controller_package_runs_unprivileged_as_its_unit_says_and_purges_clean() {
    require_root("the_controller_package_runs_unprivileged_as_its_unit_says_and_purges_clean");
    let deb = package("interference-controller");
    let _installed = Installed::new("interference-controller", &deb);
    for path in [
        "/usr/bin/interference-controller",
        "/etc/default/interference-controller",
        CONTROLLER_UNIT,
        "/usr/share/man/man1/interference-controller.1.gz",
        "/usr/share/man/man1/interference-controller-serve.1.gz",
        "/usr/share/bash-completion/completions/interference-controller",
    ] {
        assert!(Path::new(path).exists(), "{path} not installed");
    }
    ok(Command::new("systemd-analyze")
        .args(["verify", "--man=no", CONTROLLER_UNIT])
        .output());
    let exposure = exposure(CONTROLLER_UNIT);
    eprintln!("systemd-analyze security: interference-controller.service {exposure}");
    assert!(exposure <= CONTROLLER_EXPOSURE_MAX, "exposure {exposure}");

    // The unit's command as an unprivileged user with no capability (what
    // DynamicUser= and the empty CapabilityBoundingSet= give), its database in a
    // directory of that user's, as StateDirectory= gives.
    let unit = std::fs::read_to_string(CONTROLLER_UNIT).expect("the unit");
    let state = tempfile::tempdir().expect("tempdir");
    ok(Command::new("chown")
        .arg("nobody:nogroup")
        .arg(state.path())
        .output());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let db = format!("sqlite://{}/controller.db", state.path().display());
    let line = directive(&unit, "ExecStart").replace("${LISTEN}", &listen);
    let mut words = line.split_whitespace();
    let mut serve = Command::new("setpriv");
    serve
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--no-new-privs",
        ])
        .args(["--bounding-set=-all", "--inh-caps=-all", "--"])
        .arg(words.next().expect("a program"))
        .args(words)
        .env("INTERFERENCE_CONTROLLER_DATABASE", &db)
        // As /etc/default/interference-controller would ask: JSON log lines.
        .env("INTERFERENCE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Stopped(serve.spawn().expect("the unit's ExecStart runs"));
    let child = &mut child.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        if let Some(body) = http_get(port, "/readyz") {
            break body;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            let _ =
                std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err);
            panic!("the controller exited ({status}):\n{err}");
        }
        assert!(Instant::now() < deadline, "not ready within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        ready.starts_with("HTTP/1.1 200") && ready.ends_with("ready\n"),
        "{ready}"
    );
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().expect("wait");
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err);
    assert!(status.success(), "the controller's stop: {status}\n{err}");
    assert!(!err.is_empty(), "the controller logged nothing");
    for line in err.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }

    ok(dpkg(&["--purge", "interference-controller"]));
    for gone in [
        "/usr/bin/interference-controller",
        "/etc/default/interference-controller",
        CONTROLLER_UNIT,
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
    assert!(!is_installed("interference-controller"));
}

/// The unit's ExecStart with `env` until `decision` picks a log line (120 s at most),
/// then the unit's stop: SIGTERM, and the agent restores and bills before it exits
/// (within TimeoutStopSec). The decision and the whole log.
fn run_until_decision(
    unit: &str,
    caps: &str,
    env: &[(&str, &str)],
    t0: Instant,
    decision: impl Fn(&str) -> Option<String>,
) -> (String, String) {
    let log: Log = Default::default();
    let mut agent = Stopped(
        unit_command(unit, "ExecStart", caps)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the unit's ExecStart runs"),
    );
    let agent = &mut agent.0;
    collect_log(agent.stderr.take().expect("stderr"), t0, log.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    let found = loop {
        let text = log_text(&log);
        if let Some(found) = text
            .lines()
            // Each line as the agent wrote it, without the test's time stamp.
            .find_map(|l| decision(l.trim_start().split_once(' ').map_or(l, |(_, rest)| rest)))
        {
            break found;
        }
        if let Ok(Some(status)) = agent.try_wait() {
            panic!("the agent exited ({status}) before acting:\n{text}");
        }
        assert!(Instant::now() < deadline, "no action within 120 s:\n{text}");
        std::thread::sleep(Duration::from_millis(500));
    };
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) }, 0);
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = agent.try_wait().expect("wait") {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(90),
            "not stopped within TimeoutStopSec"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = log_text(&log);
    assert!(
        status.success(),
        "the agent's stop failed ({status}):\n{text}"
    );
    (found, text)
}

/// A service process that a failing test must not leave running: SIGTERM (the agent
/// then restores what it changed), SIGKILL if it has not stopped after 30 s.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while let Ok(None) = self.0.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.0.kill();
                    let _ = self.0.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The package file `./scripts/package.sh` built.
fn package(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debian");
    std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{name}_")) && n.ends_with(".deb"))
        })
        .max()
        .unwrap_or_else(|| {
            panic!(
                "no {name}_*.deb in {}: run ./scripts/package.sh",
                dir.display()
            )
        })
}

/// The package installed for one test, purged at the end whatever happens (a failed
/// test must not leave it on the machine).
struct Installed(&'static str);

impl Installed {
    fn new(name: &'static str, deb: &Path) -> Self {
        if is_installed(name) {
            ok(dpkg(&["--purge", name]));
        }
        ok(dpkg(&["-i", &deb.display().to_string()]));
        Installed(name)
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = dpkg(&["--purge", self.0]);
    }
}

fn dpkg(args: &[&str]) -> std::io::Result<Output> {
    Command::new("dpkg")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
}

fn is_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// stdout of a command that must succeed.
fn ok(output: std::io::Result<Output>) -> String {
    let output = output.expect("the command runs");
    assert!(
        output.status.success(),
        "{}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn mode(path: &str) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(path).expect("metadata").permissions(),
    ) & 0o7777
}

/// "Overall exposure level for X.service: 3.2 OK" of `systemd-analyze security`.
fn exposure(unit: &str) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", unit])
        .output()
        .expect("systemd-analyze runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split_once(": ")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no exposure level:\n{text}"))
}

/// The value of `key=` in the unit (the first one).
fn directive(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
        .to_owned()
}

/// CapabilityBoundingSet= as setpriv's `+bpf,+perfmon,...`.
fn capabilities(unit: &str) -> String {
    directive(unit, "CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The unit's `key=` command line under setpriv with only the unit's capabilities
/// and no new privileges, as systemd would start it.
fn unit_command(unit: &str, key: &str, caps: &str) -> Command {
    let line = directive(unit, key);
    let mut words = line.split_whitespace();
    let mut command = Command::new("setpriv");
    command
        .arg("--no-new-privs")
        .arg(format!("--bounding-set=-all,{caps}"))
        .arg("--")
        .arg(words.next().expect("a program"))
        .args(words);
    command
}

fn collect_log(stderr: std::process::ChildStderr, t0: Instant, log: Log) {
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(mut l) = log.lock() {
                l.push((t0.elapsed().as_secs_f64(), line));
            }
        }
    });
}

/// `promtool check metrics` (Prometheus's own parser and linter) on the textfile.
fn promtool_check_metrics(path: &Path) {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/setup.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&text)
        .expect("promtool's stdin");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A plain HTTP/1.1 GET on loopback: the whole answer, or None if nothing listens yet.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}
