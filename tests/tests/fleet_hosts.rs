//! Several hosts for real (issue 17): three hosts as network namespaces on one bridge,
//! each with the real agent and its own cgroup workload, and the real controller in a
//! fourth. On the first host a lab VM (a real QEMU guest) competes with a priority
//! cgroup VM for one CPU; the fleet policy allows only the migrate rung, and its only
//! static target has no room, so the VM can only leave by a placement: the controller
//! chooses the second host (the third is draining), where a QEMU waits for it; the
//! agent migrates the VM there, follows the migration to its end, quits the source and
//! gives the reservation back.
//!
//! Checked against the controller's database and the agents' own files: the controller
//! holds the union of the three ledgers line for line; a fleet policy change reaches
//! every agent (each heartbeat reports its version); model bundles with golden outputs
//! the model does not reproduce, or bytes that do not hash to their address, are
//! refused by every host; the migration is billed once (one
//! migrate action, on the source), the VM's base usage is billed by the source up to
//! the migration and by the target from then on, never by both for the same time; the
//! guest kept running (its workload counts on in the new QEMU, in the target's
//! namespace).
//!
//! The third test puts customers' influence (the customer API) through real agents:
//! priority requests, donor opt-outs and charge caps, see its own doc.
//!
//! Settings besides the embedded defaults, and why: a 1 s tick and 2 s charge interval
//! (lines within the test's minutes), `[fleet]` (off by default) with each host's
//! migration URI and the third host draining, `[discovery] own_netns_only` (the hosts
//! share one machine's /proc: each owns the QEMUs in its namespace), `[collect] host`
//! (the namespaces share one host name).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use interference_controller::db::Db;
use interference_controller::store::{hosts, ingest};
use interference_fleet_lab::netns;
use interference_fleet_lab::postgres::Postgres;
use interference_tests::agent::{log_text, Agent, Log};
use interference_tests::fleet::{
    agent_ledger, controller_cli, controller_db, wait_for_host, wait_for_host_within, wait_for_log,
    BadBundles, Controller,
};
use interference_tests::lab::{Lab, LabOptions, Qmp};
use interference_tests::{require_root, TestCgroup};

const PORT: u16 = 7070;
const MIGRATION_PORT: u16 = 4444;

/// One namespaced host: its agent's files and process.
struct Host {
    name: String,
    netns: String,
    ip: String,
    dir: PathBuf,
    log: Log,
    agent: Option<Agent>,
}

impl Host {
    fn ledger(&self) -> PathBuf {
        self.dir.join("ledger")
    }

    fn start(&mut self, t0: Instant) {
        let config = self.dir.join("host.toml");
        let journal = self.dir.join("journal.jsonl");
        let args = [
            OsStr::new("--config"),
            config.as_os_str(),
            OsStr::new("--journal"),
            journal.as_os_str(),
        ];
        self.agent = Some(Agent::start_in(
            Some(&self.netns),
            &args,
            t0,
            self.log.clone(),
        ));
    }

    /// SIGTERM: the agent restores, bills and sends its last lines.
    fn stop(&mut self) {
        if let Some(a) = self.agent.take() {
            let status = a.stop();
            assert!(
                status.success(),
                "{}'s agent exited with {status}: {}",
                self.name,
                log_text(&self.log)
            );
        }
    }
}

/// The host's config: `vms` as its static cgroup VMs, with their priorities,
/// reporting to the controller at `controller`.
fn write_config(h: &Host, vms: &[(&TestCgroup, &str)], controller: &str, draining: bool) {
    let mut toml = String::new();
    for (vm, priority) in vms {
        toml += &format!(
            "[[vm]]\nname = {:?}\ncgroups = {:?}\npriority = {priority:?}\nvcpus = 1\nmemory_mib = 256\ncustomer = \"{}-co\"\n\n",
            vm.name,
            vm.paths(),
            vm.name,
        );
    }
    toml += &format!(
        "[collect]\ninterval = \"1s\"\nhost = {:?}\n\n\
         [discovery]\nown_netns_only = true\n\n\
         [billing]\nledger_dir = {:?}\ncharge_interval = \"2s\"\n\n\
         [fleet]\ncontroller = \"http://{controller}\"\ntoken_file = {:?}\nstate_dir = {:?}\n\
         upload_every = \"1s\"\nrollup_window = \"5s\"\nmigration_uri = \"tcp:{}:{MIGRATION_PORT}\"\ndraining = {draining}\n",
        h.name,
        h.ledger().display().to_string(),
        h.dir.join("token").display().to_string(),
        h.dir.join("fleet").display().to_string(),
        h.ip,
    );
    std::fs::write(h.dir.join("host.toml"), toml).expect("config");
}

/// The controller on `database` in the first namespace of `net`, started, and a host
/// (with its token) per other namespace, not started.
fn fleet(dir: &Path, net: &netns::Lab, database: &str) -> (Vec<Host>, Controller) {
    let hosts = net.hosts[1..]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let h = Host {
                name: format!("h{}", i + 1),
                netns: n.netns.clone(),
                ip: n.ip.clone(),
                dir: dir.join(format!("h{}", i + 1)),
                log: Log::default(),
                agent: None,
            };
            std::fs::create_dir_all(&h.dir).expect("host dir");
            let token = controller_cli(database, &["hosts", "tokens", "create", "--host", &h.name]);
            let file = h.dir.join("token");
            std::fs::write(&file, token).expect("token");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            h
        })
        .collect();
    let mut ctl = Controller {
        database: database.to_owned(),
        listen: format!("{}:{PORT}", net.hosts[0].ip),
        log: dir.join("controller.log"),
        netns: Some(net.hosts[0].netns.clone()),
        child: None,
    };
    ctl.start();
    (hosts, ctl)
}

/// A fleet policy: only the migrate rung, to a static target without room (so only a
/// placement can move a VM); `on` is the on threshold (its version changes with it).
/// Every host takes part in a model rollout, promoted by hand only.
fn policy_doc(dir: &Path, on: f32) -> PathBuf {
    let doc = dir.join(format!("fleet-{on}.toml"));
    std::fs::write(
        &doc,
        format!(
            "[fleet.rollout]\ncanary_share_pct = 100\nauto_promote = false\n\n\
             [policy]\nrungs = [\"migrate\"]\non_threshold = {on:.1}\n\n\
             [policy.migration]\nenabled = true\n\n\
             [[policy.migration.targets]]\nname = \"full\"\nuri = \"tcp:192.0.2.1:4444\"\nfree_vcpus = 0\nfree_memory_mib = 0\n"
        ),
    )
    .expect("policy doc");
    doc
}

fn set_policy(database: &str, doc: &Path) -> String {
    controller_cli(
        database,
        &["policy", "set", "fleet", doc.to_str().expect("utf-8")],
    )
}

/// Waits until every host's heartbeat reports a policy version satisfying `ok`.
fn wait_for_policy(
    rt: &tokio::runtime::Runtime,
    db: &Db,
    hosts: &[Host],
    ok: impl Fn(&str) -> bool,
) -> Vec<String> {
    let started = Instant::now();
    loop {
        let versions: Vec<Option<String>> = hosts
            .iter()
            .map(|h| {
                rt.block_on(hosts::get(db, &h.name))
                    .expect("hosts row")
                    .and_then(|r| r.policy_version)
            })
            .collect();
        if versions.iter().all(|v| v.as_deref().is_some_and(&ok)) {
            return versions.into_iter().flatten().collect();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "policy versions {versions:?} after 60 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn ms(rfc3339: &str) -> i64 {
    let t = humantime::parse_rfc3339(rfc3339).expect("RFC 3339 charge period");
    t.duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as i64
}

/// The union of the hosts' ledger files (each line in one file only), which the
/// controller's database must hold byte for byte: nothing lost, nothing doubled.
fn controller_holds_every_line(
    rt: &tokio::runtime::Runtime,
    db: &Db,
    hosts: &[Host],
) -> BTreeMap<String, String> {
    let mut union = BTreeMap::new();
    for h in hosts {
        let lines = agent_ledger(&h.ledger());
        assert!(
            !lines.is_empty(),
            "{} billed nothing: {}",
            h.name,
            log_text(&h.log)
        );
        for (id, line) in lines {
            assert!(
                union.insert(id.clone(), line).is_none(),
                "{id} in two hosts' ledgers"
            );
        }
    }
    let stored: BTreeMap<String, String> = rt
        .block_on(ingest::ledger_lines(db))
        .expect("ledger rows")
        .into_iter()
        .collect();
    let missing = union.keys().filter(|k| !stored.contains_key(*k)).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} lines not at the controller",
        union.len()
    );
    assert_eq!(
        stored.len(),
        union.len(),
        "the controller holds lines no agent wrote"
    );
    assert!(
        stored == union,
        "the controller's lines differ from the agents' files"
    );
    eprintln!(
        "{} ledger lines from {} hosts, byte for byte at the controller",
        stored.len(),
        hosts.len()
    );
    union
}

/// (start, end) ms of the charge period of each ledger line `keep` selects.
fn charge_spans(
    ledger: &BTreeMap<String, String>,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> Vec<(i64, i64)> {
    ledger
        .values()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .filter(|v| keep(v))
        .map(|v| {
            (
                ms(v["ChargePeriodStart"].as_str().expect("start")),
                ms(v["ChargePeriodEnd"].as_str().expect("end")),
            )
        })
        .collect()
}

/// (start, end) ms of each base line of `vm` in a ledger, in order.
fn base_periods(ledger: &BTreeMap<String, String>, vm: &str) -> Vec<(i64, i64)> {
    let mut out = charge_spans(ledger, |v| v["x_Kind"] == "base" && v["ResourceName"] == vm);
    out.sort();
    out
}

#[test]
#[ignore = "needs root/QEMU"]
fn three_namespaced_hosts_one_controller_and_a_placed_migration_billed_once() {
    require_root("three_namespaced_hosts_one_controller_and_a_placed_migration_billed_once");
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let subnet = (std::process::id() % 200 + 20) as u8;
    let net = netns::Lab::create("fh", subnet, 4).expect("network namespaces");

    // The controller, in its own namespace; a token per host.
    let database = format!("sqlite://{}/controller.db", dir.path().display());
    let v1 = set_policy(&database, &policy_doc(dir.path(), 40.0));
    assert!(v1.contains("version"), "{v1}");
    let (mut hosts, ctl) = fleet(dir.path(), &net, &database);

    // The lab VM on h1 (its QEMU in h1's namespace), its vCPU on CPU 0.
    let lab = Lab::up(
        "fh",
        &LabOptions {
            workloads: vec!["cpu".into()],
            netns: Some(hosts[0].netns.clone()),
            ..LabOptions::default()
        },
    )
    .expect("lab up");
    let name = lab.names()[0].clone();
    let before = lab.vm(&name).expect("lab VM");
    lab.pin_vcpus(&name, "0").expect("pin");
    // Its next QEMU waits on h2 for the migration the agent will drive.
    let listen = format!("{}:{MIGRATION_PORT}", hosts[1].ip);
    let incoming_pid = lab
        .incoming(&name, &hosts[1].netns, &listen)
        .expect("incoming QEMU on h2");

    // A cgroup VM per host: on h1 the priority VM sharing CPU 0 with the lab VM; on h2
    // and h3 quiet ones. h3 is draining: placement must not choose it.
    let mut web = TestCgroup::new("fh-web").expect("cgroup");
    let mut quiet2 = TestCgroup::new("fh-db").expect("cgroup");
    let mut quiet3 = TestCgroup::new("fh-cache").expect("cgroup");
    web.spin(Some(0)).expect("spin");
    for cg in [&mut quiet2, &mut quiet3] {
        cg.spawn(Command::new("sleep").arg("3600")).expect("sleep");
    }
    let controller = ctl.listen.clone();
    write_config(&hosts[0], &[(&web, "high")], &controller, false);
    write_config(&hosts[1], &[(&quiet2, "normal")], &controller, false);
    write_config(&hosts[2], &[(&quiet3, "normal")], &controller, true);
    let (rt, db) = controller_db(&database);
    // The targets first: h1 asks for a placement as soon as it runs, and the controller
    // places only on hosts whose heartbeat it has (a fleet's agents start in any order;
    // a refused placement is not retried until the pair calms down).
    for h in &mut hosts[1..] {
        h.start(t0);
    }
    for h in &hosts[1..] {
        wait_for_host(&rt, &db, &h.name, &h.log, "a heartbeat with room", |r| {
            r.heartbeat_ms.is_some() && r.free_vcpus >= 1
        });
    }
    hosts[0].start(t0);

    // 1. The fleet policy reaches every agent; a change reaches every agent again.
    let first = wait_for_policy(&rt, &db, &hosts, |v| v.starts_with("fleet@"));
    assert!(first.windows(2).all(|w| w[0] == w[1]), "{first:?}");
    let v2 = set_policy(&database, &policy_doc(dir.path(), 30.0));
    assert!(v2.contains("version"), "{v2}");
    let second = wait_for_policy(&rt, &db, &hosts, |v| {
        v.starts_with("fleet@") && v != first[0]
    });
    eprintln!("policy {} then {} on every host", first[0], second[0]);

    // 2. The contention on h1 is mitigated by a placed migration to h2.
    let log1 = wait_for_log_within(&hosts[0].log, " migrated (", Duration::from_secs(240));
    let applied: Vec<&str> = log1
        .lines()
        .filter(|l| l.contains(" applied: ") && l.contains("migrate "))
        .collect();
    assert_eq!(applied.len(), 1, "one migration applied: {log1}");
    assert!(
        applied[0].contains("placed on h2 (tcp:"),
        "not placed on h2: {}",
        applied[0]
    );
    let after = lab
        .adopt(&name, Duration::from_secs(60))
        .expect("the VM runs on h2");
    assert_eq!(after.pid, incoming_pid);
    assert!(
        !before.alive(),
        "the source QEMU (pid {}) still runs",
        before.pid
    );
    let ns_inode = |path: String| std::fs::metadata(&path).map(|m| m.ino()).ok();
    assert_eq!(
        ns_inode(format!("/proc/{}/ns/net", after.pid)),
        ns_inode(format!("/var/run/netns/{}", hosts[1].netns)),
        "the new QEMU is not in h2's network namespace"
    );
    if let Some(line) = log1.lines().find(|l| l.contains(" migrated (")) {
        eprintln!("h1: {line}");
    }
    let mut qmp = Qmp::connect(&after.qmp, Duration::from_secs(5)).expect("QMP");
    assert_eq!(
        qmp.execute("query-status", None).expect("status")["status"],
        "running"
    );
    drop(qmp);
    let offset = after.log_len();
    after
        .wait_progress(offset, 3, Duration::from_secs(30))
        .expect("the guest's workload counts on after the migration");
    // h2 bills the VM for a while.
    std::thread::sleep(Duration::from_secs(8));

    // 3. Model bundles the hosts must refuse: golden outputs not reproduced, and bytes
    // that do not hash to their address. Neither is ever reported in force.
    let bad = BadBundles::upload(&database, dir.path());
    controller_cli(&database, &["models", "promote", &bad.mismatch]);
    for h in &hosts {
        let text = wait_for_log(&h.log, &format!("model bundle {}: refused", bad.mismatch));
        assert!(text.contains("window 0 scores"), "{}: {text}", h.name);
    }
    controller_cli(&database, &["models", "rollback"]);
    rt.block_on(bad.alter_stored(&db));
    controller_cli(&database, &["models", "promote", &bad.corrupt]);
    for h in &hosts {
        let text = wait_for_log(
            &h.log,
            &format!("model bundle {}: fetching it", bad.corrupt),
        );
        assert!(text.contains("whose sha256 is"), "{}: {text}", h.name);
    }
    for h in &hosts {
        let row = rt
            .block_on(hosts::get(&db, &h.name))
            .expect("hosts row")
            .expect("registered");
        assert_eq!(
            (row.model_sha, row.shadow_model_sha),
            (None, None),
            "{}: a refused bundle was reported in force",
            h.name
        );
    }

    // 4. Everyone stops cleanly; the controller holds every line.
    for h in &mut hosts {
        h.stop();
    }
    let union = controller_holds_every_line(&rt, &db, &hosts);

    // 5. Billed once: one migrate action, on h1; the VM's base periods on h1 end before
    // those on h2 begin.
    let migrate_actions: BTreeSet<String> = union
        .values()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .filter(|v| v["x_Action"] == "migrate")
        .map(|v| format!("{}:{}", v["x_Host"], v["x_ActionId"]))
        .collect();
    assert_eq!(migrate_actions.len(), 1, "{migrate_actions:?}");
    assert!(
        migrate_actions.iter().all(|a| a.starts_with("\"h1\":")),
        "{migrate_actions:?}"
    );
    let on_h1 = base_periods(&agent_ledger(&hosts[0].ledger()), &name);
    let on_h2 = base_periods(&agent_ledger(&hosts[1].ledger()), &name);
    assert!(
        !on_h1.is_empty() && !on_h2.is_empty(),
        "h1 {on_h1:?}, h2 {on_h2:?}"
    );
    let h1_end = on_h1.iter().map(|p| p.1).max().unwrap_or(0);
    let h2_start = on_h2.iter().map(|p| p.0).min().unwrap_or(0);
    eprintln!(
        "{name}: billed on h1 until {h1_end}, on h2 from {h2_start} ({} ms between)",
        h2_start - h1_end
    );
    assert!(
        h1_end <= h2_start,
        "{name} billed on both hosts for {} ms",
        h1_end - h2_start
    );
    assert!(
        on_h2.iter().all(|p| p.0 >= h2_start) && on_h3_is_silent(&hosts[2], &name),
        "h3 billed the VM"
    );

    // The controller joins the two hosts' lines by the VM's uuid, and finds no second
    // billed twice.
    let billing: Vec<(String,)> = rt
        .block_on(
            sqlx::query_as(
                "SELECT DISTINCT host_id FROM ledger_lines WHERE vm_uuid = $1 AND kind = 'base' ORDER BY host_id",
            )
            .bind(&before.uuid)
            .fetch_all(db.pool()),
        )
        .expect("ledger rows by uuid");
    assert_eq!(billing, vec![("h1".into(),), ("h2".into(),)]);
    let doubled = rt
        .block_on(ingest::double_billed_vms(&db))
        .expect("double-billed query");
    assert!(doubled.is_empty(), "billed twice: {doubled:?}");

    // 6. The reservation: on h2, and the room taken once the VM arrived.
    let rows: Vec<(String, String, String)> = rt
        .block_on(
            sqlx::query_as("SELECT source_host, target_host, state FROM reservations")
                .fetch_all(db.pool()),
        )
        .expect("reservations");
    assert_eq!(
        rows,
        vec![("h1".into(), "h2".into(), "consumed".into())],
        "controller log: {}",
        std::fs::read_to_string(&ctl.log).unwrap_or_default()
    );
}

/// The third host never billed the migrated VM.
fn on_h3_is_silent(h3: &Host, vm: &str) -> bool {
    base_periods(&agent_ledger(&h3.ledger()), vm).is_empty()
}

/// Like [`wait_for_log`], for longer than its 40 s.
fn wait_for_log_within(log: &Log, text: &str, within: Duration) -> String {
    let started = Instant::now();
    loop {
        if started.elapsed() + Duration::from_secs(40) >= within {
            return wait_for_log(log, text);
        }
        let all = log_text(log);
        if all.contains(text) {
            return all;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A window of time (ms since the epoch) a fault lasted.
#[derive(Debug, Clone, Copy)]
struct Window {
    what: &'static str,
    from: i64,
    to: i64,
}

impl Window {
    /// How long `fault` took.
    fn during(what: &'static str, fault: impl FnOnce()) -> Self {
        let from = now_ms();
        fault();
        Self {
            what,
            from,
            to: now_ms(),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The time covered by any of `spans`, as disjoint sorted spans.
fn union_of(spans: &mut [(i64, i64)]) -> Vec<(i64, i64)> {
    spans.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &(a, b) in spans.iter() {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Action ids the agent's log says it applied (`<id> applied: <reason>`).
fn applied_ids(log: &Log) -> BTreeSet<String> {
    log_text(log)
        .lines()
        .filter_map(|l| {
            let (head, _) = l.split_once(" applied: ")?;
            Some(head.rsplit(' ').next()?.to_owned())
        })
        .collect()
}

/// Faults (issue 17): three hosts in namespaces, each with a priority VM and a CPU
/// neighbour on one CPU, report to a controller on PostgreSQL while the controller is
/// SIGKILLed 40 times during ingest, PostgreSQL is stopped in immediate mode, and one
/// host's link is cut for two minutes. The agents keep mitigating throughout (each
/// fault window is covered by each host's billed mitigation), and at the end the
/// controller holds every host's ledger byte for byte (nothing lost, nothing doubled)
/// and a `done` phase for every action each agent applied. (Acknowledgements lost
/// after the commit: `fleet_agent.rs`, on both databases.)
#[test]
#[ignore = "needs root/QEMU"]
fn agents_keep_mitigating_and_lose_nothing_through_controller_kills_a_database_crash_and_a_cut_link(
) {
    require_root("agents_keep_mitigating_and_lose_nothing_through_controller_kills_a_database_crash_and_a_cut_link");
    let dir = tempfile::tempdir().expect("tempdir");
    let pg = Postgres::ensure().expect("PostgreSQL");
    let tcp_url = pg.fresh_database("fleet_faults").expect("database");
    // The controller runs in a namespace: it reaches the cluster by its unix socket.
    let database = Postgres::via_socket(&tcp_url);
    let subnet = (std::process::id() % 200 + 20) as u8 + 1;
    let net = netns::Lab::create("ff", subnet, 4).expect("network namespaces");
    let (mut hosts, mut ctl) = fleet(dir.path(), &net, &database);
    let mut cgroups = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let mut web = TestCgroup::new(&format!("ff-web{}", i + 1)).expect("cgroup");
        let mut batch = TestCgroup::new(&format!("ff-batch{}", i + 1)).expect("cgroup");
        web.spin(Some(i % 2)).expect("spin");
        batch.spin(Some(i % 2)).expect("spin");
        write_config(h, &[(&web, "high"), (&batch, "normal")], &ctl.listen, false);
        cgroups.push((web, batch));
    }
    let t0 = Instant::now();
    for h in &mut hosts {
        h.start(t0);
    }
    for h in &hosts {
        wait_for_log_within(&h.log, " applied: ", Duration::from_secs(60));
    }

    // 1. 40 SIGKILLs of the controller while the agents upload.
    let mut rng = interference_tests::Rng::new(17);
    let kills = Window::during("40 controller SIGKILLs", || {
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(300 + rng.below(900)));
            ctl.kill();
            ctl.start();
        }
    });

    // 2. PostgreSQL stopped in immediate mode (a crash) for 15 s.
    std::thread::sleep(Duration::from_secs(3));
    let crash = Window::during("PostgreSQL down", || {
        pg.kill_immediate().expect("stop PostgreSQL");
        std::thread::sleep(Duration::from_secs(15));
        pg.start().expect("start PostgreSQL");
    });

    // 3. h2's link cut for two minutes.
    std::thread::sleep(Duration::from_secs(3));
    let cut = Window::during("h2 cut off", || {
        net.cut(&net.hosts[2]).expect("cut h2");
        std::thread::sleep(Duration::from_secs(120));
        net.restore(&net.hosts[2]).expect("restore h2");
    });
    let windows = [kills, crash, cut];
    eprintln!("faults: {windows:?}");

    // Every host catches up (its heartbeat after the link came back says no backlog).
    // After two minutes cut off, the agent's backoff may be at its 60 s ceiling: its
    // next attempt can come a minute after the link is back.
    let (rt, db) = controller_db(&database);
    let restored = now_ms();
    for h in &hosts {
        let within = Duration::from_secs(150);
        wait_for_host_within(&rt, &db, &h.name, &h.log, "caught up", within, |r| {
            r.heartbeat_ms.is_some_and(|t| t > restored + 2_000) && r.backlog_items == 0
        });
    }
    for h in &mut hosts {
        h.stop();
    }

    // Nothing lost, nothing doubled.
    controller_holds_every_line(&rt, &db, &hosts);

    // Every applied action has its `done` phase, once.
    for h in &hosts {
        let applied = applied_ids(&h.log);
        let done: Vec<(String,)> = rt
            .block_on(
                sqlx::query_as(
                    "SELECT action_id FROM action_phases WHERE host_id = $1 AND phase = 'done' ORDER BY action_id",
                )
                .bind(&h.name)
                .fetch_all(db.pool()),
            )
            .expect("phases");
        let done: BTreeSet<String> = done.into_iter().map(|(id,)| id).collect();
        assert!(!applied.is_empty(), "{} applied nothing", h.name);
        assert_eq!(
            done, applied,
            "{}: done phases against applied actions",
            h.name
        );
    }

    // Mitigating throughout: each fault window is covered, on each host, by billed time
    // of a mitigation in effect.
    for h in &hosts {
        let ledger = agent_ledger(&h.ledger());
        let mut spans = charge_spans(&ledger, |v| v["x_ActionId"].is_string());
        let in_effect = union_of(&mut spans);
        for w in &windows {
            let covered: i64 = in_effect
                .iter()
                .map(|&(a, b)| (b.min(w.to) - a.max(w.from)).max(0))
                .sum();
            let share = covered as f64 / (w.to - w.from) as f64;
            eprintln!(
                "{}: {:.0}% of \"{}\" under a billed mitigation",
                h.name,
                share * 100.0,
                w.what
            );
            assert!(
                share >= 0.9,
                "{}: only {:.0}% of \"{}\" under a mitigation: {}",
                h.name,
                share * 100.0,
                w.what,
                log_text(&h.log)
            );
        }
    }
    drop(cgroups);
    pg.drop_database(&tcp_url);
}

/// A customer-API call from inside `from`'s namespace: (status, JSON body).
fn api(
    from: &netns::Host,
    base: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let (url, token, method) = (format!("{base}{path}"), token.to_owned(), method.to_owned());
    netns::Lab::run_in(from, move || async move {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = reqwest::Client::new()
            .request(method, url)
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(serde_json::Value::Null)))
    })
    .join()
    .expect("API thread")
    .expect("API request")
}

/// Log lines from line `from` on.
fn lines_from(log: &Log, from: usize) -> Vec<(f64, String)> {
    log.lock()
        .map(|l| l[from.min(l.len())..].to_vec())
        .unwrap_or_default()
}

fn log_len(log: &Log) -> usize {
    log.lock().map(|l| l.len()).unwrap_or(0)
}

/// Waits until a line from `from` on satisfies `ok`; returns it.
fn wait_line(
    log: &Log,
    from: usize,
    what: &str,
    within: Duration,
    ok: impl Fn(&str) -> bool,
) -> String {
    let started = Instant::now();
    loop {
        if let Some((_, l)) = lines_from(log, from).into_iter().find(|(_, l)| ok(l)) {
            return l;
        }
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?} (from line {from}); the log's last 40 lines:\n{}",
            lines_from(log, log_len(log).saturating_sub(40))
                .iter()
                .map(|(_, l)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until every change the agent applied has been rolled back (a calmed pair's
/// mitigations undone: the next phase starts from the VMs' own settings).
fn wait_settled(log: &Log) {
    let started = Instant::now();
    loop {
        let lines = lines_from(log, 0);
        let applied = lines.iter().filter(|(_, l)| l.contains(" applied: "));
        let (undo, change): (Vec<_>, Vec<_>) = applied.partition(|(_, l)| l.contains("roll back"));
        if undo.len() == change.len() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{} changes, {} rollbacks after 90 s",
            change.len(),
            undo.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The agent's ledger lines of `customer` of `kind` charged from `since_ms` on.
fn lines_of(ledger: &Path, customer: &str, kind: &str, since_ms: i64) -> Vec<serde_json::Value> {
    agent_ledger(ledger)
        .values()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("ledger line"))
        .filter(|v| {
            v["BillingAccountId"] == customer
                && v["x_Kind"] == kind
                && ms(v["ChargePeriodStart"].as_str().expect("start")) >= since_ms
        })
        .collect()
}

/// Customers' influence through the customer API, on real agents (issue 18): on h1
/// two CPU-bound VMs share one CPU (fi-x, customer fi-x-co, one thread; fi-y, fi-y-co,
/// two); h2 runs a quiet VM. A first round without requests finds which one the
/// scheduler makes the victim (V) and which the aggressor (A). Then each request goes
/// through the API (from the controller's namespace), reaches both hosts in their
/// desired state, and shows in h1's ledger and in the API:
/// 1. A's customer asks priority for A: A is protected although it is the aggressor,
///    V reduced (and credited as a good neighbour); when the request ends the
///    mitigation is rolled back and is not made for A again.
/// 2. V's customer opts V out of being a donor: under a new priority request of A, V is
///    not reduced (only A is boosted) and earns no credit.
/// 3. V's customer sets a monthly cap on interference charges that round 0 already
///    exceeded: the contention goes on, and nothing is charged to it any more.
///
/// Settings besides the test fixtures' (see the module's doc): a fleet policy with a
/// 2 s cooldown (the phases follow each other within seconds; the default 30 s would
/// hold the next phase's first change) and an SLA tier for priority requests.
#[test]
#[ignore = "needs root/QEMU"]
fn customers_influence_which_vm_is_reduced_protected_and_charged_on_real_hosts() {
    require_root("customers_influence_which_vm_is_reduced_protected_and_charged_on_real_hosts");
    let dir = tempfile::tempdir().expect("tempdir");
    let subnet = (std::process::id() % 200 + 20) as u8 + 2;
    let net = netns::Lab::create("fi", subnet, 3).expect("network namespaces");
    let database = format!("sqlite://{}/controller.db", dir.path().display());
    let doc = dir.path().join("fleet.toml");
    std::fs::write(
        &doc,
        "[policy]\ncooldown = \"2s\"\n\n[fleet.tiers.gold]\npriority_hours_per_month = 10\nmax_priority_share = 1.0\n",
    )
    .expect("doc");
    set_policy(&database, &doc);
    let mut tokens = BTreeMap::new();
    for vm in ["fi-x", "fi-y"] {
        let customer = format!("{vm}-co");
        controller_cli(&database, &["customers", "set-tier", &customer, "gold"]);
        let token = controller_cli(
            &database,
            &[
                "tokens",
                "create",
                "--customer",
                &customer,
                "--scope",
                "write",
                "--expires",
                "1h",
            ],
        );
        tokens.insert(vm.to_owned(), token.trim().to_owned());
    }
    let (mut hosts, ctl) = fleet(dir.path(), &net, &database);
    let base = format!("http://{}", ctl.listen);
    let from = &net.hosts[0];
    let call = |vm: &str, method: &str, path: &str, body: Option<serde_json::Value>| {
        api(from, &base, &tokens[vm], method, path, body)
    };

    let mut x = TestCgroup::new("fi-x").expect("cgroup");
    let mut y = TestCgroup::new("fi-y").expect("cgroup");
    let quiet = TestCgroup::new("fi-q").expect("cgroup");
    write_config(
        &hosts[0],
        &[(&x, "normal"), (&y, "normal")],
        &ctl.listen,
        false,
    );
    write_config(&hosts[1], &[(&quiet, "normal")], &ctl.listen, false);
    let t0 = Instant::now();
    for h in &mut hosts {
        h.start(t0);
    }
    let (h1_log, h2_log, ledger) = (
        hosts[0].log.clone(),
        hosts[1].log.clone(),
        hosts[0].ledger(),
    );
    let contend = |x: &mut TestCgroup, y: &mut TestCgroup| {
        x.spin(Some(0)).expect("spin");
        y.spin(Some(0)).expect("spin");
        y.spin(Some(0)).expect("spin");
    };
    let calm = |x: &mut TestCgroup, y: &mut TestCgroup| {
        x.stop_all();
        y.stop_all();
    };
    let applied = |l: &str| l.contains(" applied: ") && !l.contains("roll back");

    // 0. No request: who is the victim here.
    contend(&mut x, &mut y);
    let first = wait_line(
        &h1_log,
        0,
        "a first mitigation",
        Duration::from_secs(60),
        |l| applied(l) && l.contains(" (victim) slowed by "),
    );
    let (v, a) = if first.contains("fi-x (victim) slowed by fi-y") {
        ("fi-x", "fi-y")
    } else {
        ("fi-y", "fi-x")
    };
    let (vc, ac) = (format!("{v}-co"), format!("{a}-co"));
    eprintln!("victim {v}, aggressor {a}: {first}");
    calm(&mut x, &mut y);
    wait_settled(&h1_log);
    let vm_id = |vm: &str| -> String {
        let started = Instant::now();
        loop {
            let (status, vms) = call(vm, "GET", "/v1/vms", None);
            assert_eq!(status, 200, "{vms}");
            if let Some(found) = vms["vms"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["name"] == vm)
            {
                return found["id"].as_str().expect("id").to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{vm} not in the API: {vms}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let (v_id, a_id) = (vm_id(v), vm_id(a));

    // 1. A priority request makes the aggressor protected, for its duration only.
    let (mark, h2_mark) = (log_len(&h1_log), log_len(&h2_log));
    let (status, answer) = call(
        a,
        "POST",
        &format!("/v1/vms/{a_id}/priority"),
        Some(serde_json::json!({"hours": 0.01})),
    );
    assert_eq!(status, 201, "{answer}");
    for (log, from) in [(&h1_log, mark), (&h2_log, h2_mark)] {
        wait_line(
            log,
            from,
            "the request reaching every host",
            Duration::from_secs(30),
            |l| l.contains("customers' requests") && l.contains("priority_requests=1"),
        );
    }
    let phase1_ms = now_ms();
    contend(&mut x, &mut y);
    let granted = wait_line(
        &h1_log,
        mark,
        "an action for the priority request",
        Duration::from_secs(40),
        |l| applied(l) && l.contains("priority request until"),
    );
    assert!(granted.contains(&format!("so {v} is reduced")), "{granted}");
    wait_line(
        &h1_log,
        mark,
        "the end of the request",
        Duration::from_secs(60),
        |l| l.contains(&format!("the priority request that protected {a} ended")),
    );
    let ended = log_len(&h1_log);
    std::thread::sleep(Duration::from_secs(8));
    let again: Vec<String> = lines_from(&h1_log, ended)
        .into_iter()
        .map(|(_, l)| l)
        .filter(|l| applied(l) && l.contains("priority request"))
        .collect();
    assert!(again.is_empty(), "protected by an ended request: {again:?}");
    calm(&mut x, &mut y);
    wait_settled(&h1_log);
    let credits = lines_of(&ledger, &vc, "credit", phase1_ms);
    assert!(
        credits
            .iter()
            .any(|c| c["x_Role"] == "good_neighbour"
                && c["BilledCost"].as_f64().expect("cost") < 0.0),
        "{v} was credited as a good neighbour: {credits:?}"
    );
    let charged = lines_of(&ledger, &ac, "charge", phase1_ms);
    assert!(
        charged.iter().any(|c| c["ResourceName"] == a),
        "{ac} paid for {a}'s protection: {charged:?}"
    );
    let (_, actions) = call(a, "GET", "/v1/actions", None);
    assert!(
        actions["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .any(|x| x["vm"] == a && x["role"] == "protected"),
        "{actions}"
    );

    // 2. V opted out of being a donor: under a new request of A's, V is left alone.
    let mark = log_len(&h1_log);
    let (status, answer) = call(
        v,
        "PUT",
        &format!("/v1/vms/{v_id}/preferences"),
        Some(serde_json::json!({"no_donor": true})),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = call(
        a,
        "POST",
        &format!("/v1/vms/{a_id}/priority"),
        Some(serde_json::json!({"hours": 0.05})),
    );
    assert_eq!(status, 201, "{answer}");
    wait_line(
        &h1_log,
        mark,
        "the opt-out and the request on h1",
        Duration::from_secs(30),
        |l| {
            l.contains("customers' requests")
                && l.contains("no_donor_vms=1")
                && l.contains("priority_requests=1")
        },
    );
    let phase2_ms = now_ms();
    contend(&mut x, &mut y);
    let boost = wait_line(
        &h1_log,
        mark,
        "the priority VM boosted alone",
        Duration::from_secs(40),
        |l| applied(l) && l.contains(&format!("{v} opted out of being a donor")),
    );
    assert!(boost.contains(&format!("boost {a}")), "{boost}");
    std::thread::sleep(Duration::from_secs(8));
    let reduced: Vec<String> = lines_from(&h1_log, mark)
        .into_iter()
        .map(|(_, l)| l)
        .filter(|l| {
            applied(l)
                && ["cut", "pin", "balloon"]
                    .iter()
                    .any(|verb| l.contains(&format!("{verb} {v}")))
        })
        .collect();
    assert!(reduced.is_empty(), "{v} was reduced: {reduced:?}");
    let (status, answer) = call(a, "DELETE", &format!("/v1/vms/{a_id}/priority"), None);
    assert_eq!(status, 200, "{answer}");
    calm(&mut x, &mut y);
    wait_settled(&h1_log);
    let credits = lines_of(&ledger, &vc, "credit", phase2_ms);
    assert!(
        !credits.is_empty(),
        "{vc} has the credit lines of the boosts"
    );
    for c in &credits {
        assert_eq!(c["BilledCost"].as_f64(), Some(0.0), "{c}");
        assert!(
            c["ChargeDescription"]
                .as_str()
                .expect("words")
                .contains("opted this VM out of being a donor"),
            "{c}"
        );
    }

    // 3. V's customer caps its charges below what round 0 already cost it.
    let mark = log_len(&h1_log);
    let (status, answer) = call(
        v,
        "PUT",
        "/v1/preferences",
        Some(serde_json::json!({"monthly_charge_cap": "0.000001"})),
    );
    assert_eq!(status, 200, "{answer}");
    wait_line(
        &h1_log,
        mark,
        "the cap on h1",
        Duration::from_secs(30),
        |l| {
            l.contains("customers' requests") && l.contains(&format!("capped_customers=[\"{vc}\"]"))
        },
    );
    let (_, prefs) = call(v, "GET", "/v1/preferences", None);
    assert_eq!(prefs["capped"], true, "{prefs}");
    let phase3_ms = now_ms();
    contend(&mut x, &mut y);
    wait_line(
        &h1_log,
        mark,
        "the cap holding the pair back",
        Duration::from_secs(40),
        |l| l.contains(&format!("charge cap: {vc}")),
    );
    std::thread::sleep(Duration::from_secs(10));
    let acted: Vec<String> = lines_from(&h1_log, mark)
        .into_iter()
        .map(|(_, l)| l)
        .filter(|l| applied(l))
        .collect();
    assert!(acted.is_empty(), "acted for a capped customer: {acted:?}");
    calm(&mut x, &mut y);
    let charges = lines_of(&ledger, &vc, "charge", phase3_ms);
    assert!(charges.is_empty(), "charged past the cap: {charges:?}");
    let (_, audit) = call(v, "GET", "/v1/audit", None);
    assert_eq!(
        audit["entries"].as_array().expect("entries").len(),
        2,
        "{audit}"
    );
    for h in &mut hosts {
        h.stop();
    }
    drop(ctl);
}
