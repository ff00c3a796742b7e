//! Test helpers: a scripted fake QMP server, and a real paused QEMU when the host
//! has one.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

/// The greeting QEMU 7.2 on Debian 12 sends.
pub const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}"#;

/// A unix socket in a temporary directory served by one thread running `script`
/// on the first connection.
pub struct FakeQmp {
    _dir: TempDir,
    pub path: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl FakeQmp {
    pub fn serve(script: impl FnOnce(Peer) + Send + 'static) -> Self {
        Self::serve_each(vec![Box::new(script)])
    }

    /// Like `serve` for a client that connects more than once: the i-th script runs
    /// on the i-th connection, one connection after the other.
    pub fn serve_each(scripts: Vec<Box<dyn FnOnce(Peer) + Send>>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let thread = std::thread::spawn(move || {
            for script in scripts {
                let (stream, _) = listener.accept().unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let reader = BufReader::new(stream.try_clone().unwrap());
                script(Peer {
                    reader,
                    writer: stream,
                });
            }
        });
        Self {
            _dir: dir,
            path,
            thread: Some(thread),
        }
    }

    /// Wait for the script to finish, failing the test if it panicked.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            if let Err(panic) = t.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// The server's side of the connection.
pub struct Peer {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Peer {
    /// Raw bytes, exactly as given.
    pub fn send(&mut self, raw: &str) {
        self.writer.write_all(raw.as_bytes()).unwrap();
    }

    /// Raw bytes; false once the client has hung up.
    pub fn try_send(&mut self, raw: &str) -> bool {
        self.writer.write_all(raw.as_bytes()).is_ok()
    }

    /// One message, CRLF-terminated as QEMU does.
    pub fn send_json(&mut self, msg: Value) {
        self.send(&format!("{msg}\r\n"));
    }

    /// Greeting and capabilities negotiation, as QEMU does them.
    pub fn handshake(&mut self) {
        self.send(&format!("{GREETING}\r\n"));
        let id = self.expect("qmp_capabilities", None);
        self.reply(&id, json!({}));
    }

    /// The next command, which must be `command` with `arguments`; returns its id.
    pub fn expect(&mut self, command: &str, arguments: Option<Value>) -> Value {
        let msg = self
            .recv()
            .unwrap_or_else(|| panic!("closed while waiting for `{command}`"));
        assert_eq!(msg["execute"], command, "{msg}");
        assert_eq!(msg.get("arguments"), arguments.as_ref(), "{msg}");
        msg["id"].clone()
    }

    /// The next message from the client, None when it closed the connection.
    pub fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line).unwrap() {
            0 => None,
            _ => Some(serde_json::from_str(&line).unwrap()),
        }
    }

    pub fn reply(&mut self, id: &Value, ret: Value) {
        self.send_json(json!({"return": ret, "id": id}));
    }

    pub fn error(&mut self, id: &Value, class: &str, desc: &str) {
        self.send_json(json!({"id": id, "error": {"class": class, "desc": desc}}));
    }

    pub fn event(&mut self, name: &str, data: Value) {
        self.send_json(
            json!({"timestamp": {"seconds": 1795638783, "microseconds": 833933},
            "event": name, "data": data}),
        );
    }

    /// Block until the client hangs up.
    pub fn wait_closed(&mut self) {
        while self.recv().is_some() {}
    }
}

/// A real QEMU, paused before it ran anything (-S), so it needs no kernel or disk:
/// 2 vCPUs, 64 MiB, a virtio-balloon with id `balloon0`, QMP on a unix socket.
/// Killed when dropped.
pub struct RealQemu {
    pub dir: TempDir,
    pub qmp: PathBuf,
    pub child: Child,
}

impl RealQemu {
    /// None (with the reason on stderr) when qemu-system-x86_64 cannot be run here.
    pub fn start(test: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let qmp = dir.path().join("q.sock");
        let log = std::fs::File::create(dir.path().join("qemu.log")).unwrap();
        let spawned = Command::new("qemu-system-x86_64")
            .args([
                "-accel",
                "tcg",
                "-machine",
                "pc",
                "-nodefaults",
                "-display",
                "none",
            ])
            .args([
                "-S",
                "-m",
                "64",
                "-smp",
                "2",
                "-name",
                "guest=qmptest,debug-threads=on",
            ])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .args(["-device", "virtio-balloon-pci,id=balloon0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        // A test that cannot run fails (scripts/setup.sh installs QEMU).
        let child =
            spawned.unwrap_or_else(|e| panic!("{test}: cannot run qemu-system-x86_64: {e}"));
        let mut qemu = Self { dir, qmp, child };
        qemu.wait_for_socket();
        qemu
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn wait_for_socket(&mut self) {
        let until = Instant::now() + Duration::from_secs(20);
        while !self.qmp.exists() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "QEMU exited ({status}) before creating its QMP socket: {}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < until,
                "no QMP socket after 20 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("qemu.log")).unwrap_or_default()
    }

    /// Wait (up to 10 s) for QEMU to exit by itself.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "QEMU did not exit: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The comm of thread `tid` of this QEMU, None if there is no such thread.
    pub fn thread_name(&self, tid: u32) -> Option<String> {
        let path = Path::new("/proc")
            .join(self.pid().to_string())
            .join("task")
            .join(tid.to_string())
            .join("comm");
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim_end().to_owned())
    }
}

impl Drop for RealQemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
