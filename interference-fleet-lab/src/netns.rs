//! Hosts as Linux network namespaces on one machine: a bridge in the root namespace
//! (no address, so nothing routes beyond it), and per host a namespace with a veth pair
//! whose outer end is on the bridge. Traffic stays between these namespaces. A host's
//! link can be cut (`ip link set <veth> down`) and restored, and async code can run
//! inside a namespace ([`Lab::run_in`]: a thread that joins the namespace and runs its
//! own tokio runtime, so every socket it opens lives there).
//!
//! Needs root and iproute2. Everything is torn down on drop.

use std::fs::File;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::is_root;

/// One namespaced host.
#[derive(Debug, Clone)]
pub struct Host {
    /// Namespace name (`iflab-<tag>-<i>`).
    pub netns: String,
    /// Its address on the bridge.
    pub ip: String,
    /// The veth end on the bridge side (cut this to isolate the host).
    pub outer: String,
}

pub struct Lab {
    pub bridge: String,
    pub hosts: Vec<Host>,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run ip (apt-get install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Lab {
    /// `n` hosts, `10.213.<subnet>.1 ..= .n`, on a new bridge. `tag` (a few letters)
    /// keeps concurrent labs apart; `subnet` too.
    pub fn create(tag: &str, subnet: u8, n: usize) -> Result<Self> {
        if !is_root() {
            bail!("the network-namespace lab needs root (ip netns, veth, bridge)");
        }
        let bridge = format!("ifbr-{tag}");
        let mut lab = Self {
            bridge: bridge.clone(),
            hosts: Vec::new(),
        };
        let _ = ip(&["link", "del", &bridge]);
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 1..=n {
            let netns = format!("iflab-{tag}-{i}");
            let outer = format!("ifv-{tag}-{i}");
            let inner = format!("ifi-{tag}-{i}");
            let _ = ip(&["netns", "del", &netns]);
            let _ = ip(&["link", "del", &outer]);
            ip(&["netns", "add", &netns])?;
            lab.hosts.push(Host {
                netns: netns.clone(),
                ip: format!("10.213.{subnet}.{i}"),
                outer: outer.clone(),
            });
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ])?;
            ip(&["link", "set", &inner, "netns", &netns])?;
            ip(&["link", "set", &outer, "master", &bridge])?;
            ip(&["link", "set", &outer, "up"])?;
            let addr = format!("10.213.{subnet}.{i}/24");
            ip(&["-n", &netns, "addr", "add", &addr, "dev", &inner])?;
            ip(&["-n", &netns, "link", "set", &inner, "up"])?;
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    /// Cut a host off the bridge.
    pub fn cut(&self, host: &Host) -> Result<()> {
        ip(&["link", "set", &host.outer, "down"])
    }

    pub fn restore(&self, host: &Host) -> Result<()> {
        ip(&["link", "set", &host.outer, "up"])
    }

    /// Runs `make()`'s future on a thread inside `host`'s namespace, on a runtime of
    /// its own; returns its output.
    pub fn run_in<F, Fut, T>(host: &Host, make: F) -> std::thread::JoinHandle<Result<T>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>>,
        T: Send + 'static,
    {
        let netns = host.netns.clone();
        std::thread::spawn(move || {
            enter(&netns)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("runtime in the namespace")?;
            rt.block_on(make())
        })
    }
}

/// `program` run in the named network namespace and nowhere else: `nsenter --net`
/// changes only the network namespace (`ip netns exec` also remounts /sys, which hides
/// /sys/fs/cgroup from an agent or a lab script), then execs `program`, so the child's
/// pid is the program's.
pub fn command_in(netns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/var/run/netns/{netns}"))
        .arg("--")
        .arg(program);
    c
}

/// Moves the calling thread into a named network namespace.
pub fn enter(netns: &str) -> Result<()> {
    let path = format!("/var/run/netns/{netns}");
    let f = File::open(&path).with_context(|| format!("cannot open {path}"))?;
    // SAFETY: setns on a namespace file descriptor we own; it changes only this
    // thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!("setns({path}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = ip(&["link", "del", &h.outer]);
            let _ = ip(&["netns", "del", &h.netns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
