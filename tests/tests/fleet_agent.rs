//! The real agent and the real controller (issue 17): an agent with `[fleet]` protects
//! a cgroup VM from a CPU neighbour and bills it, while the controller is SIGKILLed and
//! restarted and the agent itself is SIGKILLed and restarted; at the end the
//! controller's ledger (its database's rows) equals the agent's fsync'd ledger files,
//! line for line: nothing lost, nothing doubled.
//!
//! A second test: a fleet policy set on the controller reaches the agent, is applied
//! between ticks and reported back in its heartbeat, and outlives the controller (the
//! agent restarts on the saved state while the controller is down: fail-static).
//!
//! Settings besides the embedded defaults, and why: a 1 s tick and a 2 s charge
//! interval so that ledger lines come within the test's half minute; `[fleet]` (off by
//! default) with a 1 s upload interval; the policy test bills nothing (it is about
//! decisions, and must not write the host's default ledger).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write as _;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use interference_controller::db::{Db, DbOptions};
use interference_controller::store::ingest;
use interference_tests::agent::{log_text, Agent, Log};
use interference_tests::{interference_bin, require_root, TestCgroup};

fn controller_bin() -> PathBuf {
    let p = interference_bin().with_file_name("interference-controller");
    assert!(
        p.exists(),
        "{} missing: ./scripts/setup.sh builds it",
        p.display()
    );
    p
}

struct Controller {
    database: String,
    listen: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Controller {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("controller log");
        let child = Command::new(controller_bin())
            .args([
                "--database",
                &self.database,
                "serve",
                "--listen",
                &self.listen,
            ])
            .args(["--heartbeat-every", "2s"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the controller");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(&self.listen).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "controller not listening on {} (log {})",
                self.listen,
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The real agent on `config`, its log into `log`.
fn agent(config: &Path, journal: &Path, log: &Log) -> Agent {
    let args = [
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--journal"),
        journal.as_os_str(),
    ];
    Agent::start(&args, Instant::now(), log.clone())
}

/// SIGTERM: the agent restores, bills, sends its last lines and exits cleanly.
fn sigterm(a: Agent, log: &Log) {
    let status = a.stop();
    assert!(
        status.success(),
        "agent exited with {status}: {}",
        log_text(log)
    );
}

/// Every line of the agent's ledger files, by record id.
fn agent_ledger(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("ledger dir") {
        let path = e.expect("entry").path();
        if path.extension().and_then(|x| x.to_str()) != Some("jsonl") {
            continue;
        }
        for line in std::fs::read_to_string(&path).expect("ledger file").lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("ledger line is JSON");
            let id = v["x_RecordId"].as_str().expect("x_RecordId").to_owned();
            assert!(
                out.insert(id.clone(), line.to_owned()).is_none(),
                "{id} twice in the agent's ledger"
            );
        }
    }
    out
}

fn controller_cli(database: &str, args: &[&str]) -> String {
    let out = Command::new(controller_bin())
        .args(["--database", database])
        .args(args)
        .output()
        .expect("run interference-controller");
    assert!(
        out.status.success(),
        "interference-controller {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A controller on loopback with its SQLite database in `dir`, and a token for `host`
/// in a root-only file: (database URL, token file, controller).
fn controller_for(dir: &Path, host: &str) -> (String, PathBuf, Controller) {
    let database = format!("sqlite://{}/controller.db", dir.display());
    let token = controller_cli(&database, &["hosts", "tokens", "create", "--host", host]);
    let token_file = dir.join("host-token");
    std::fs::write(&token_file, token).expect("token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut ctl = Controller {
        database: database.clone(),
        listen: format!("127.0.0.1:{}", free_port()),
        log: dir.join("controller.log"),
        child: None,
    };
    ctl.start();
    (database, token_file, ctl)
}

#[test]
#[ignore = "needs root/QEMU"]
fn the_controller_holds_the_agents_ledger_line_for_line_through_crashes() {
    require_root("the_controller_holds_the_agents_ledger_line_for_line_through_crashes");
    let dir = tempfile::tempdir().expect("tempdir");
    let (database, token_file, mut ctl) = controller_for(dir.path(), "fleet-e2e");

    let mut web = TestCgroup::new("fleet-web").expect("cgroup");
    let mut batch = TestCgroup::new("fleet-batch").expect("cgroup");
    web.spin(Some(0)).expect("spin web");
    batch.spin(Some(0)).expect("spin batch");
    let ledger = dir.path().join("ledger");
    let config = dir.path().join("host.toml");
    let mut toml = String::new();
    for (cg, priority) in [(&web, "high"), (&batch, "normal")] {
        toml += &format!(
            "[[vm]]\nname = {:?}\ncgroups = {:?}\npriority = {priority:?}\nvcpus = 1\ncustomer = {:?}\n\n",
            cg.name,
            cg.paths(),
            format!("{}-co", cg.name)
        );
    }
    toml += &format!(
        "[collect]\ninterval = \"1s\"\n\n[billing]\nledger_dir = {:?}\ncharge_interval = \"2s\"\n\n\
         [fleet]\ncontroller = \"http://{}\"\ntoken_file = {:?}\nstate_dir = {:?}\nupload_every = \"1s\"\n",
        ledger.display().to_string(),
        ctl.listen,
        token_file.display().to_string(),
        dir.path().join("fleet").display().to_string()
    );
    std::fs::File::create(&config)
        .and_then(|mut f| f.write_all(toml.as_bytes()))
        .expect("config");
    let journal = dir.path().join("journal.jsonl");
    let agent_log = Log::default();

    let a = agent(&config, &journal, &agent_log);
    std::thread::sleep(Duration::from_secs(6));
    // The controller crashes mid-ingest and comes back; the agent keeps billing.
    ctl.kill();
    std::thread::sleep(Duration::from_secs(4));
    ctl.start();
    std::thread::sleep(Duration::from_secs(4));
    // The agent crashes; the next run bills what it left and uploads from its cursor.
    a.kill9();
    let a = agent(&config, &journal, &agent_log);
    std::thread::sleep(Duration::from_secs(8));
    sigterm(a, &agent_log);

    let expected = agent_ledger(&ledger);
    let log = log_text(&agent_log);
    assert!(
        expected.values().any(|l| l.contains("\"x_ActionId\"")),
        "the agent billed no mitigation: {log}"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stored = runtime.block_on(async {
        let db = Db::connect(&database, &DbOptions::default())
            .await
            .expect("controller database");
        ingest::ledger_lines(&db).await.expect("ledger rows")
    });
    let stored: BTreeMap<String, String> = stored.into_iter().collect();
    assert_eq!(
        stored.len(),
        expected.len(),
        "controller holds {} lines, the agent wrote {} (agent log: {log})",
        stored.len(),
        expected.len()
    );
    assert!(
        stored == expected,
        "the controller's lines differ from the agent's files"
    );
    assert!(log.contains("registered with the controller"), "{log}");
    eprintln!("{} ledger lines, byte for byte on both sides", stored.len());
}

/// Mitigation actions the agent's log reports applied.
fn actions_applied(log: &Log) -> usize {
    log_text(log)
        .lines()
        .filter(|l| l.contains(" applied: score"))
        .count()
}

#[test]
#[ignore = "needs root/QEMU"]
fn a_fleet_policy_is_applied_reported_and_outlives_the_controller() {
    require_root("a_fleet_policy_is_applied_reported_and_outlives_the_controller");
    let dir = tempfile::tempdir().expect("tempdir");
    let (database, token_file, mut ctl) = controller_for(dir.path(), "policy-e2e");
    ctl.kill();
    // A policy that never acts on this test's contention (scores near 50).
    let doc = dir.path().join("fleet.toml");
    std::fs::write(
        &doc,
        "[policy]\non_threshold = 95.0\noff_threshold = 90.0\n",
    )
    .expect("doc");
    let set = controller_cli(
        &database,
        &["policy", "set", "fleet", doc.to_str().expect("utf-8")],
    );
    assert!(set.contains("version"), "{set}");
    ctl.start();

    let web = TestCgroup::new("fpol-web").expect("cgroup");
    let batch = TestCgroup::new("fpol-batch").expect("cgroup");
    let state_dir = dir.path().join("fleet");
    let config = dir.path().join("host.toml");
    let mut toml = String::new();
    for cg in [&web, &batch] {
        toml += &format!(
            "[[vm]]\nname = {:?}\ncgroups = {:?}\nvcpus = 1\n\n",
            cg.name,
            cg.paths()
        );
    }
    toml += &format!(
        "[collect]\ninterval = \"1s\"\n\n[billing]\nenabled = false\n\n[fleet]\ncontroller = \"http://{}\"\ntoken_file = {:?}\nstate_dir = {:?}\nupload_every = \"1s\"\n",
        ctl.listen,
        token_file.display().to_string(),
        state_dir.display().to_string()
    );
    std::fs::write(&config, toml).expect("config");
    let journal = dir.path().join("journal.jsonl");

    // 1. The agent gets the policy, applies it and says so in its heartbeat.
    let log1 = Log::default();
    let a = agent(&config, &journal, &log1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let db = runtime
        .block_on(Db::connect(&database, &DbOptions::default()))
        .expect("controller database");
    let started = Instant::now();
    let reported = loop {
        let row = runtime
            .block_on(interference_controller::store::hosts::get(
                &db,
                "policy-e2e",
            ))
            .expect("hosts row");
        if let Some(v) = row.and_then(|r| r.policy_version) {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no policy version reported within 30 s: {}",
            log_text(&log1)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(reported.starts_with("fleet@"), "{reported}");
    sigterm(a, &log1);
    assert!(state_dir.join("desired.json").exists());
    let log = log_text(&log1);
    assert!(
        log.contains(&format!("applied fleet policy {reported}")),
        "{log}"
    );

    // 2. The controller is gone; a CPU neighbour arrives; the agent restarts on the
    // saved policy and does not act (score ~50 < 95).
    ctl.kill();
    let mut web = web;
    let mut batch = batch;
    web.spin(Some(0)).expect("spin");
    batch.spin(Some(0)).expect("spin");
    let log2 = Log::default();
    let a = agent(&config, &journal, &log2);
    std::thread::sleep(Duration::from_secs(10));
    sigterm(a, &log2);
    let text = log_text(&log2);
    assert!(
        text.contains(&format!("applied fleet policy {reported}")),
        "{text}"
    );
    assert_eq!(
        actions_applied(&log2),
        0,
        "acted under the fleet policy: {text}"
    );

    // 3. Control: without the saved policy the same contention is acted on.
    std::fs::remove_file(state_dir.join("desired.json")).expect("rm desired.json");
    let log3 = Log::default();
    let a = agent(&config, &journal, &log3);
    std::thread::sleep(Duration::from_secs(10));
    sigterm(a, &log3);
    let text = log_text(&log3);
    assert!(
        actions_applied(&log3) > 0,
        "the defaults did not act either: {text}"
    );
}
