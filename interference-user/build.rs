//! Embeds the eBPF object built by `cargo xtask build-ebpf`, when it exists. Without it
//! the binary still builds (so `cargo test` needs no nightly), and commands that load
//! the programs say how to build them.
use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ebpf_object)");
    println!("cargo::rerun-if-env-changed=INTERFERENCE_EBPF_OBJECT");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let object = std::env::var("INTERFERENCE_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| manifest.join("../target/bpfel-unknown-none/release/interference"));
    println!("cargo::rerun-if-changed={}", object.display());
    if object.is_file() {
        println!("cargo::rustc-cfg=ebpf_object");
        println!(
            "cargo::rustc-env=INTERFERENCE_EBPF_OBJECT_PATH={}",
            object.display()
        );
    }
}
