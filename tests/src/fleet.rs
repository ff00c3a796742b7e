//! The controller as the fleet tests run it: the real binary (on loopback or in a
//! network namespace), its command line, and waits on what agents report to it.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use interference_controller::db::{Db, DbOptions};

use crate::agent::{log_text, Log};
use crate::interference_bin;

/// The controller binary beside the agent's (`./scripts/setup.sh` builds both).
pub fn controller_bin() -> PathBuf {
    let p = interference_bin().with_file_name("interference-controller");
    assert!(
        p.exists(),
        "{} missing: ./scripts/setup.sh builds it",
        p.display()
    );
    p
}

/// A controller process on `database`, listening on `listen` (in the network namespace
/// `netns`, when it is set), its log appended to `log`; killed when dropped.
pub struct Controller {
    pub database: String,
    pub listen: String,
    pub log: PathBuf,
    pub netns: Option<String>,
    pub child: Option<Child>,
}

impl Controller {
    /// Starts it and waits (up to 20 s) until it accepts connections.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("controller log");
        let mut command = match &self.netns {
            Some(ns) => interference_fleet_lab::netns::command_in(ns, controller_bin()),
            None => Command::new(controller_bin()),
        };
        let child = command
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
        while !self.accepts() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "controller not listening on {} (log {})",
                self.listen,
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether it accepts a connection now (from inside its namespace).
    pub fn accepts(&self) -> bool {
        let listen = self.listen.clone();
        let netns = self.netns.clone();
        std::thread::spawn(move || {
            if let Some(ns) = &netns {
                if interference_fleet_lab::netns::enter(ns).is_err() {
                    return false;
                }
            }
            TcpStream::connect(&listen).is_ok()
        })
        .join()
        .unwrap_or(false)
    }

    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) {
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

/// A TCP port free on loopback now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Every line of the agent's ledger files, by record id.
pub fn agent_ledger(dir: &Path) -> BTreeMap<String, String> {
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

/// `interference-controller --database DATABASE ARGS`, its stdout; fails on an error.
pub fn controller_cli(database: &str, args: &[&str]) -> String {
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

/// Waits until the controller's row of `host` satisfies `ok` (the heartbeat carries
/// what the agent has in force), failing with the agent's log after 40 s.
pub fn wait_for_host(
    runtime: &tokio::runtime::Runtime,
    db: &Db,
    host: &str,
    log: &Log,
    what: &str,
    ok: impl Fn(&interference_controller::store::hosts::HostRow) -> bool,
) {
    wait_for_host_within(runtime, db, host, log, what, Duration::from_secs(40), ok)
}

/// [`wait_for_host`] for up to `within`.
pub fn wait_for_host_within(
    runtime: &tokio::runtime::Runtime,
    db: &Db,
    host: &str,
    log: &Log,
    what: &str,
    within: Duration,
    ok: impl Fn(&interference_controller::store::hosts::HostRow) -> bool,
) {
    let started = Instant::now();
    loop {
        let row = runtime
            .block_on(interference_controller::store::hosts::get(db, host))
            .expect("hosts row");
        if row.as_ref().is_some_and(&ok) {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?} (row {row:?}): {}",
            log_text(log)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until the agent's log holds `text`.
pub fn wait_for_log(log: &Log, text: &str) -> String {
    let started = Instant::now();
    loop {
        let all = log_text(log);
        if all.contains(text) {
            return all;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "no {text:?} in the agent's log within 40 s: {all}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A file of the shipped model (`models/`).
pub fn shipped_model(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name)
}

/// Two bundles of the shipped model an agent must refuse, uploaded to the controller:
/// one whose golden outputs the model does not reproduce, and one the controller will
/// serve with a changed byte once [`BadBundles::alter_stored`] has altered its stored
/// golden file (after the upload checked it).
pub struct BadBundles {
    /// The bundle manifests' sha256.
    pub mismatch: String,
    pub corrupt: String,
    corrupt_golden: PathBuf,
}

impl BadBundles {
    pub fn upload(database: &str, dir: &Path) -> Self {
        let onnx = shipped_model("contention-lstm.onnx");
        let onnx = onnx.to_str().expect("utf-8");
        let golden: serde_json::Value = serde_json::from_slice(
            &std::fs::read(shipped_model("contention-lstm.golden.json")).expect("golden"),
        )
        .expect("golden JSON");
        let mut wrong = golden.clone();
        wrong["output"][0] =
            serde_json::json!(wrong["output"][0].as_f64().expect("a number") + 3.0);
        let wrong_path = dir.join("wrong.golden.json");
        std::fs::write(&wrong_path, serde_json::to_vec(&wrong).expect("JSON")).expect("write");
        let upload = |golden: &Path| {
            controller_cli(
                database,
                &[
                    "models",
                    "upload",
                    onnx,
                    "--golden",
                    golden.to_str().expect("utf-8"),
                ],
            )
        };
        let mismatch = upload(&wrong_path);
        // The same golden vectors, spaced differently: another file, another sha256.
        let corrupt_golden = dir.join("respaced.golden.json");
        std::fs::write(
            &corrupt_golden,
            serde_json::to_vec_pretty(&golden).expect("JSON"),
        )
        .expect("write");
        let corrupt = upload(&corrupt_golden);
        Self {
            mismatch,
            corrupt,
            corrupt_golden,
        }
    }

    /// Changes the stored bytes of the corrupt bundle's golden file.
    pub async fn alter_stored(&self, db: &Db) {
        sqlx::query("UPDATE blobs SET bytes = $1 WHERE sha256 = $2")
            .bind(b"{\"input_shape\": [1, 6, 49]}".to_vec())
            .bind(sha256_file(&self.corrupt_golden))
            .execute(db.pool())
            .await
            .expect("alter the stored blob");
    }
}

/// The sha256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}

/// A runtime and a connection to the controller's database, to check its rows.
pub fn controller_db(database: &str) -> (tokio::runtime::Runtime, Db) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let db = runtime
        .block_on(Db::connect(database, &DbOptions::default()))
        .expect("controller database");
    (runtime, db)
}
