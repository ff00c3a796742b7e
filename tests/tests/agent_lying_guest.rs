//! A guest that lies in its balloon (issue 20, hostile hosts). The balloon's numbers
//! come from the guest: its driver writes the statistics, and a compromised QEMU or
//! guest can say anything on the monitor. Here a process that passes for QEMU (its
//! `comm` says `qemu-system-x86`, `-m 2048`) spins on the priority VM's CPU and, on
//! its QMP socket, claims a balloon of 64 GiB and statistics with five times more
//! memory available than it has (a guest "using nothing", asking to be squeezed to
//! nothing). The real agent must:
//! - say once that the statistics cannot be true, and once that the balloon claims
//!   more than `-m`;
//! - balloon it (it is the CPU neighbour), never above its 2048 MiB nor below the
//!   configured floor (512 MiB, the default), and give the 2048 MiB back at exit;
//! - bill GiB-hours of memory that was really taken: at most 2048 - 512 MiB an hour.
//!
//! Settings, and why: `[policy] rungs = ["balloon"]`, the balloon rung alone (it is
//! the rung that reads the lie; the default ladder tries weight and pinning first).
//! Everything else is the embedded default.

use std::ffi::OsStr;
use std::io::BufRead as _;
use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use interference::billing::{ledger, LineKind};
use interference_tests::agent::{log_text, vm_toml, Agent, Log};
use interference_tests::{
    dataset_workload, require_root, snapshot_files, start_cpu_workload, TestCgroup,
};

const FILES: &[&str] = &["cpu.shares", "cpuset.cpus", "cpu.weight"];
const MIB: u64 = 1 << 20;
const STARTED_WITH_MIB: u64 = 2048;
const FLOOR_MIB: u64 = 512;

/// The liar: a QMP server that claims 64 GiB until it is ballooned (then it reports
/// the balloon's target, as QEMU would), with statistics that cannot be true, and
/// one thread named like a vCPU busy on CPU 1. Prints `ready`, then
/// `balloon BYTES` for every balloon command.
const LIAR: &str = r#"
import ctypes, json, os, socket, threading, time
libc = ctypes.CDLL(None)
libc.prctl(15, b"qemu-system-x86", 0, 0, 0)
MIB = 1 << 20
path = os.environ["LIAR_QMP"]
state = {"actual": None}
lock = threading.Lock()
def spin():
    # This thread alone on CPU 1, busy in C (ctypes lets go of the GIL for the
    # call), so the monitor's threads answer as fast as QEMU's would.
    os.sched_setaffinity(0, {1})
    libc.prctl(15, b"CPU 0/KVM", 0, 0, 0)
    buf = ctypes.create_string_buffer(1 << 20)
    while True:
        libc.memset(buf, 0, len(buf))
threading.Thread(target=spin, daemon=True).start()
def answer(cmd, args):
    if cmd == "qmp_capabilities" or cmd == "qom-set":
        return {}
    if cmd == "query-status":
        return {"status": "running", "running": True, "singlestep": False}
    if cmd == "query-balloon":
        with lock:
            actual = state["actual"]
        return {"actual": actual if actual is not None else 64 * 1024 * MIB}
    if cmd == "qom-list":
        if args.get("path") == "/machine/peripheral":
            return [{"name": "type", "type": "string"},
                    {"name": "balloon0", "type": "child<virtio-balloon-pci>"}]
        return [{"name": "type", "type": "string"}]
    if cmd == "qom-get" and args.get("property") == "guest-stats-polling-interval":
        return 2
    if cmd == "qom-get" and args.get("property") == "guest-stats":
        total = 2048 * MIB
        return {"stats": {"stat-total-memory": total, "stat-available-memory": 5 * total,
                          "stat-free-memory": 5 * total, "stat-disk-caches": 0},
                "last-update": int(time.time())}
    if cmd == "balloon":
        with lock:
            state["actual"] = args["value"]
        print("balloon", args["value"], flush=True)
        return {}
    return None
def serve(c):
    c.sendall(b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}\r\n')
    buf, dec = "", json.JSONDecoder()
    try:
        while True:
            data = c.recv(65536)
            if not data:
                return
            buf += data.decode()
            while True:
                buf = buf.lstrip()
                if not buf:
                    break
                try:
                    req, end = dec.raw_decode(buf)
                except ValueError:
                    break
                buf = buf[end:]
                ret = answer(req.get("execute"), req.get("arguments") or {})
                msg = ({"return": ret} if ret is not None else
                       {"error": {"class": "CommandNotFound", "desc": "no such command"}})
                if "id" in req:
                    msg["id"] = req["id"]
                c.sendall((json.dumps(msg) + "\r\n").encode())
    except OSError:
        pass
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

#[test]
#[ignore = "needs root/QEMU"]
fn a_guest_lying_in_its_balloon_is_ballooned_within_its_memory_and_the_floor() {
    require_root("a_guest_lying_in_its_balloon_is_ballooned_within_its_memory_and_the_floor");
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = dataset_workload(dir.path());
    let mut victim = TestCgroup::new("prio").expect("cgroup");
    let mut liar_cg = TestCgroup::new("liar").expect("cgroup");
    let mut dirs = victim.dirs.clone();
    dirs.extend(liar_cg.dirs.iter().cloned());
    let original = snapshot_files(&dirs, FILES);

    let qmp = dir.path().join("liar.qmp");
    let mut qmp_arg = std::ffi::OsString::from("unix:");
    qmp_arg.push(&qmp);
    qmp_arg.push(",server=on,wait=off");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg0("qemu-system-x86_64")
        .arg("-c")
        .arg(LIAR)
        .args(["-name", "liar", "-qmp"])
        .arg(&qmp_arg)
        .args(["-smp", "1", "-m", &STARTED_WITH_MIB.to_string()])
        .env("LIAR_QMP", &qmp);
    let (_, out) = liar_cg.spawn_piped(&mut cmd).expect("the liar starts");
    let mut out = std::io::BufReader::new(out);
    let mut line = String::new();
    out.read_line(&mut line).expect("the liar says ready");
    assert_eq!(line.trim(), "ready");
    let balloons: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = balloons.clone();
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            if let Some(v) = l.strip_prefix("balloon ").and_then(|v| v.parse().ok()) {
                if let Ok(mut b) = sink.lock() {
                    b.push(v);
                }
            }
        }
    });

    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        vm_toml(&victim, "high", "acme") + "[policy]\nrungs = [\"balloon\"]\n",
    )
    .expect("config");
    let journal = dir.path().join("journal.jsonl");
    let ledger_dir = dir.path().join("ledger");
    let args: Vec<&OsStr> = vec![
        OsStr::new("--config"),
        cfg.as_os_str(),
        OsStr::new("--journal"),
        journal.as_os_str(),
        OsStr::new("--ledger"),
        ledger_dir.as_os_str(),
    ];
    let t0 = Instant::now();
    start_cpu_workload(&mut victim, &exe, 1, "0:1", 150, t0);
    let log: Log = Default::default();
    let agent = Agent::start(&args, t0, log.clone());

    // Ballooned (within 90 s), then a few ticks more in effect.
    let ballooned = |n: usize| {
        balloons
            .lock()
            .map(|b| b.iter().filter(|v| **v < STARTED_WITH_MIB * MIB).count() >= n)
            .unwrap_or(false)
    };
    while !ballooned(1) && t0.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(12));
    let status = agent.stop();
    let exited_at = t0.elapsed().as_secs_f64();
    // The restore's balloon command comes over the socket as the agent exits.
    std::thread::sleep(Duration::from_millis(500));
    victim.stop_all();
    liar_cg.stop_all();
    let text = log_text(&log);
    assert!(status.success(), "the agent failed:\n{text}");
    let seen: Vec<u64> = balloons.lock().expect("balloons").clone();
    eprintln!(
        "balloon commands (MiB): {:?}",
        seen.iter().map(|v| v / MIB).collect::<Vec<_>>()
    );

    // Said, once each.
    let said = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    let stats_lie = said("cannot be true");
    let size_lie = said("more memory than the 2048 MiB it was started with");
    assert!(
        (1..=2).contains(&stats_lie),
        "the statistics' lie said {stats_lie} times:\n{text}"
    );
    assert!(
        (1..=2).contains(&size_lie),
        "the balloon's lie said {size_lie} times:\n{text}"
    );

    // Ballooned within its memory and the floor, and given it all back.
    assert!(
        ballooned(1),
        "the liar was never ballooned in {exited_at:.0} s:\n{text}"
    );
    for v in &seen {
        assert!(
            (FLOOR_MIB * MIB..=STARTED_WITH_MIB * MIB).contains(v),
            "a balloon of {} MiB, outside {FLOOR_MIB}..={STARTED_WITH_MIB} MiB:\n{text}",
            v / MIB
        );
    }
    assert_eq!(
        seen.last(),
        Some(&(STARTED_WITH_MIB * MIB)),
        "the memory was not given back at exit:\n{text}"
    );
    assert_eq!(
        snapshot_files(&dirs, FILES),
        original,
        "a cgroup value changed"
    );

    // Billed on what was taken: at most 1.5 GiB for each hour.
    let records = ledger::read(&ledger_dir, None).expect("ledger").records;
    let charges: Vec<_> = records
        .iter()
        .filter(|r| r.kind == LineKind::Charge && r.sku_id == "imc-balloon")
        .collect();
    assert!(!charges.is_empty(), "no balloon charge in {records:#?}");
    let most_gib = (STARTED_WITH_MIB - FLOOR_MIB) as f64 / 1024.0;
    for c in &charges {
        let hours = c.duration_seconds / 3600.0;
        assert!(
            c.pricing_quantity <= most_gib * hours * 1.001 + 1e-9,
            "{} GiB-hours billed for {:.1} s: more than {most_gib} GiB was taken: {c:#?}",
            c.pricing_quantity,
            c.duration_seconds
        );
    }
}
