//! Developer tasks: `cargo xtask build-ebpf`, `cargo xtask bench-ebpf`, ...
//!
//! The eBPF crate is its own workspace, built with the nightly pinned in
//! interference-ebpf/rust-toolchain.toml for the `bpfel-unknown-none` target with
//! bpf-linker. The object lands in target/bpfel-unknown-none/release/interference,
//! where interference-user's build script embeds it.

mod build_ebpf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Development tasks for interference")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the eBPF object (pinned nightly, bpf-linker).
    BuildEbpf(build_ebpf::Options),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::BuildEbpf(opts) => build_ebpf::run(&opts),
    }
}
