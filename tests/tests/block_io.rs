//! Block I/O attributed by our programs, checked against the cgroup's own accounting.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use interference_tests::oracle::{blkio_service_bytes, rel_diff};
use interference_tests::{real_collector, require_root, vm_for, TestCgroup};

/// A loop device over a file in a temp dir, detached on drop.
struct LoopDevice {
    dev: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopDevice {
    fn new(mib: u64) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("disk.img");
        std::fs::File::create(&file)?.set_len(mib << 20)?;
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&file)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = PathBuf::from(String::from_utf8(out.stdout)?.trim());
        Ok(Self { dev, _dir: dir })
    }

    /// "major:minor" as cgroup files print it.
    fn majmin(&self) -> String {
        let name = self.dev.file_name().unwrap().to_string_lossy().to_string();
        std::fs::read_to_string(format!("/sys/block/{name}/dev"))
            .unwrap()
            .trim()
            .to_string()
    }
}

/// "major:minor" of every block device (loop devices included).
fn all_block_devices() -> Vec<String> {
    std::fs::read_dir("/sys/block")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
                .map(|s| s.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// Direct reads and writes to a loop device from a process in a VM's cgroups: the bytes
/// our programs attribute to the VM agree with blkio.throttle.io_service_bytes within 5%.
#[test]
#[ignore = "needs root/QEMU"]
fn block_io_bytes_match_cgroup_accounting() {
    require_root("block_io_bytes_match_cgroup_accounting");
    let disk = LoopDevice::new(64).unwrap();
    let mut cg = TestCgroup::new("blk").unwrap();
    let Some(blkio) = cg.dir("blkio").map(|p| p.to_path_buf()) else {
        panic!(
            "block_io_bytes_match_cgroup_accounting needs the cgroup v1 blkio hierarchy, missing on kernel {}",
            interference_tests::kernel_release()
        );
    };
    // blk-throttle only accounts bytes for devices with a rule: give every block device
    // a limit far above what it can do, so the cgroup's own accounting is complete.
    let devices = all_block_devices();
    for dev in &devices {
        for f in [
            "blkio.throttle.read_bps_device",
            "blkio.throttle.write_bps_device",
        ] {
            std::fs::write(blkio.join(f), format!("{dev} {}", 1u64 << 40)).unwrap();
        }
    }
    // The VM's one long-lived process is registered; dd, started later, is attributed
    // through the VM's cgroup v2 id.
    let holder = cg.spawn(Command::new("sleep").arg("60")).unwrap();
    let vms = [vm_for(&cg, &[holder])];
    let mut c = real_collector().unwrap();
    c.track(&vms).unwrap();
    let before = std::fs::read_to_string(blkio.join("blkio.throttle.io_service_bytes")).unwrap();
    let dev = disk.dev.display().to_string();
    let mut write = Command::new("dd");
    write.args([
        "if=/dev/zero",
        &format!("of={dev}"),
        "bs=64k",
        "count=400",
        "oflag=direct",
    ]);
    let mut read = Command::new("dd");
    read.args([
        &format!("if={dev}"),
        "of=/dev/null",
        "bs=128k",
        "count=150",
        "iflag=direct",
    ]);
    for cmd in [&mut write, &mut read] {
        let pid = cg.spawn(cmd).unwrap();
        while std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let s = c.sample(&vms).unwrap();
    let io = s[0].block_io.clone().unwrap();
    let after = std::fs::read_to_string(blkio.join("blkio.throttle.io_service_bytes")).unwrap();
    let total = |text: &str| {
        devices.iter().fold((0, 0), |(r, w), d| {
            let (dr, dw) = blkio_service_bytes(text, d);
            (r + dr, w + dw)
        })
    };
    let (r0, w0) = total(&before);
    let (r1, w1) = total(&after);
    let (kr, kw) = (r1 - r0, w1 - w0);
    let (lr, lw) = blkio_service_bytes(&after, &disk.majmin());
    eprintln!("loop device alone: read {lr} write {lw}");
    eprintln!(
        "ours read {} write {}; blkio read {kr} write {kw}; {io:?}",
        io.read_bytes, io.write_bytes
    );
    assert!(
        kw >= 400 * 65536 && kr >= 150 * 131072,
        "dd did its I/O: {kr} {kw}"
    );
    assert!(
        rel_diff(io.write_bytes as f64, kw as f64) < 0.05,
        "write {} vs {kw}",
        io.write_bytes
    );
    assert!(
        rel_diff(io.read_bytes as f64, kr as f64) < 0.05,
        "read {} vs {kr}",
        io.read_bytes
    );
    assert!(io.write_ops >= 400 && io.read_ops >= 150, "{io:?}");
    let lat: u64 = io.latency_histogram.iter().sum();
    assert_eq!(
        lat,
        io.read_ops + io.write_ops + io.other_ops,
        "one latency per operation"
    );
    assert!(io.latency_seconds > 0.0);
}
