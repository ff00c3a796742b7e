//! A controller as a child process: started (in a network namespace if asked), ready
//! when `/healthz` answers, stopped with SIGKILL like a crash.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

#[derive(Debug, Clone)]
pub struct ControllerSpec {
    pub binary: PathBuf,
    pub database: String,
    /// `127.0.0.1:7171`
    pub listen: String,
    /// Run inside `ip netns exec <ns>`.
    pub netns: Option<String>,
    /// Where stderr goes (appended).
    pub log: Option<PathBuf>,
}

pub struct ControllerProcess {
    pub spec: ControllerSpec,
    child: Option<Child>,
}

impl ControllerProcess {
    pub async fn start(spec: ControllerSpec) -> Result<Self> {
        let mut p = Self { spec, child: None };
        p.spawn().await?;
        Ok(p)
    }

    async fn spawn(&mut self) -> Result<()> {
        let s = &self.spec;
        let mut cmd = match &s.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&s.binary);
                c
            }
            None => Command::new(&s.binary),
        };
        cmd.args(["--database", &s.database, "serve", "--listen", &s.listen])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        match &s.log {
            Some(path) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                cmd.stderr(f);
            }
            None => {
                cmd.stderr(Stdio::null());
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", s.binary.display()))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30)).await
    }

    /// Until `/healthz` answers (from this process's network namespace: for a
    /// controller in another namespace, call from there or skip).
    pub async fn wait_ready(&mut self, within: Duration) -> Result<()> {
        if self.spec.netns.is_some() {
            // Not reachable from here; the caller checks from inside the namespace.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return self.check_alive();
        }
        let deadline = Instant::now() + within;
        loop {
            if healthz(&self.spec.listen).await {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "controller on {} not ready after {within:?}",
                    self.spec.listen
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("controller exited early: {status}");
            }
        }
        Ok(())
    }

    /// SIGKILL, and wait for it to be gone.
    pub async fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill().context("SIGKILL")?;
            child.wait().await?;
        }
        Ok(())
    }

    pub async fn restart(&mut self) -> Result<()> {
        self.kill().await?;
        self.spawn().await
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }
}

/// GET /healthz over a plain TCP connection.
pub async fn healthz(addr: &str) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(buf.starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// The controller binary next to a test binary (`target/<profile>/`).
pub fn binary_near(test_exe: &Path, name: &str) -> Option<PathBuf> {
    let mut dir = test_exe.parent()?;
    if dir.ends_with("deps") {
        dir = dir.parent()?;
    }
    let p = dir.join(name);
    p.exists().then_some(p)
}
