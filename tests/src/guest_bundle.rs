//! The programs a lab guest runs from its share disk: `scripts/guest-bundle.sh` builds
//! the release `interference` and `enforce_probe` with the host's loader and libraries
//! (the guests are busybox systems without glibc), and [`share_dir`] copies that bundle
//! into a fresh share directory, where the guest sees it at `/mnt/share`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::lab::run_bounded;

/// Builds (or finds up to date) the bundle; its directory.
pub fn build() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/guest-bundle.sh");
    let started = Instant::now();
    let out = run_bounded(Command::new("bash").arg(&script), Duration::from_secs(900))
        .expect("running scripts/guest-bundle.sh");
    assert!(
        out.status.success(),
        "scripts/guest-bundle.sh failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    eprintln!(
        "guest bundle {} (build step {:.1?})",
        dir.display(),
        started.elapsed()
    );
    dir
}

/// A new share directory holding the bundle (`/mnt/share/interference`,
/// `/mnt/share/enforce_probe` in the guest) and `files` (name, contents).
pub fn share_dir(files: &[(&str, String)]) -> tempfile::TempDir {
    let bundle = build();
    let dir = tempfile::Builder::new()
        .prefix("ilab-share-")
        .tempdir()
        .expect("share directory");
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", bundle.display()))
        .arg(dir.path())
        .status()
        .expect("running cp");
    assert!(status.success(), "copying {} failed", bundle.display());
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text)
            .unwrap_or_else(|e| panic!("writing {name} into the share: {e}"));
    }
    dir
}
