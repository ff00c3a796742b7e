//! A test probe for the enforcement stage, for places the full agent does not go: the
//! lab guests of tests/tests/lab_enforce_v2.rs run it (bundled with the host's loader
//! and libraries by scripts/guest-bundle.sh) to apply actions to real cgroup v2 files.
//!
//! ```text
//! enforce_probe apply JOURNAL VM.json ACTION.json   # one JSON Outcome on stdout
//! enforce_probe restore JOURNAL                     # one JSON line: the restore report
//! ```
//!
//! VM.json is an `inventory::Vm`, ACTION.json a `policy::Action`. Exit status 0 when
//! the command ran (whatever the outcome says), 2 on bad usage, 1 on other errors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use interference::agent::{restore, Overrides, Settings};
use interference::config::Config;
use interference::enforce::{Enforcer, EnforcerOptions};
use interference::inventory::{Mounts, Vm};
use interference::policy::Action;
use serde_json::json;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["apply", journal, vm, action] => {
            apply(Path::new(journal), Path::new(vm), Path::new(action))
        }
        ["restore", journal] => restore_cmd(Path::new(journal)),
        _ => {
            eprintln!("usage: enforce_probe apply JOURNAL VM.json ACTION.json | enforce_probe restore JOURNAL");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("enforce_probe: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn apply(journal: &Path, vm: &Path, action: &Path) -> Result<()> {
    let vm: Vm = read_json(vm)?;
    let action: Action = read_json(action)?;
    let options = EnforcerOptions {
        journal: PathBuf::from(journal),
        ..EnforcerOptions::default()
    };
    let mounts = Mounts::read(Path::new("/proc"))?;
    let mut enforcer = Enforcer::open(options, mounts)?;
    for refused in enforcer.set_vms(std::slice::from_ref(&vm)) {
        eprintln!("enforce_probe: {refused}");
    }
    let outcome = enforcer.apply(&action, &vm);
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}

fn restore_cmd(journal: &Path) -> Result<()> {
    // The enforcement stage alone: nothing is billed.
    let settings = Settings::resolve(
        Overrides {
            journal: Some(journal.to_path_buf()),
            no_ledger: true,
            ..Overrides::default()
        },
        Config::default(),
        Mounts::read(Path::new("/proc"))?,
        "localhost",
    )?;
    let report = restore(&settings)?;
    let line = json!({
        "outcomes": report.outcomes,
        "restored": report.restored(),
        "failures": report.failures().count(),
        "left_in_effect": report.left_in_effect,
        "clean": report.is_clean(),
    });
    println!("{line}");
    Ok(())
}
