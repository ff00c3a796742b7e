//! `cargo xtask build-ebpf`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

#[derive(clap::Args)]
pub struct Options {
    /// Build without optimisations (the verifier may reject debug builds).
    #[arg(long)]
    debug: bool,
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    let root = workspace_root();
    let ebpf_dir = root.join("interference-ebpf");
    which("bpf-linker").context(
        "bpf-linker is not installed: run ./scripts/setup.sh (it builds bpf-linker against LLVM 22)",
    )?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&ebpf_dir)
        .env("CARGO_TARGET_DIR", root.join("target"))
        // The user's RUSTFLAGS would leak host flags into the bpf build.
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .args(["build", "--bin", "interference"]);
    if !opts.debug {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .with_context(|| format!("running cargo build in {}", ebpf_dir.display()))?;
    if !status.success() {
        bail!("building the eBPF programs failed ({status})");
    }
    let profile = if opts.debug { "debug" } else { "release" };
    let object = root
        .join("target/bpfel-unknown-none")
        .join(profile)
        .join("interference");
    println!("eBPF object: {}", object.display());
    Ok(())
}

fn which(program: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|h| h.join("bin"));
    std::env::split_paths(&path)
        .chain(cargo_bin)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("`{program}` not found in PATH"))
}
