//! `interference check-config FILE`: what an operator runs before a restart. Every
//! problem of the file at once, each as `file:line:column: field: message`; for a
//! valid file the settings in effect (embedded defaults marked) and the VMs the agent
//! would track on this host, with the reason each is tracked. The exit code is for
//! scripts: 0 valid, 1 problems, 2 bad command line, 4 the file or the host's cgroup
//! mounts cannot be read.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use interference::agent::{Overrides, Settings};
use interference::config::{toml_file, Config, ConfigError};
use interference::inventory::{Inventory, Mounts, Vm, VmSource};

/// Why `check-config` failed, for the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CheckFailed {
    #[error("{}: {count} problem{}", file.display(), if *count == 1 { "" } else { "s" })]
    Invalid { file: PathBuf, count: usize },
    #[error("{0}")]
    Unreadable(String),
}

impl CheckFailed {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid { .. } => 1,
            Self::Unreadable(_) => 4,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The TOML configuration to check (e.g. /etc/interference/agent.toml).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Only the problems and the exit code: no settings, no VMs.
    #[arg(long)]
    pub brief: bool,
}

pub fn run(args: CheckConfigArgs) -> anyhow::Result<()> {
    let file = &args.file;
    let text = std::fs::read_to_string(file)
        .map_err(|e| CheckFailed::Unreadable(format!("cannot read {}: {e}", file.display())))?;
    let mounts = Mounts::read(Path::new("/proc")).map_err(|e| {
        CheckFailed::Unreadable(format!("cannot read this host's cgroup mounts: {e}"))
    })?;
    let config = match Config::parse_all(&text, file, &mounts) {
        Ok(config) => config,
        Err(ConfigError::Toml(e)) => {
            let problems = e.problems();
            for p in &problems {
                println!("{p}");
            }
            return Err(CheckFailed::Invalid {
                file: file.clone(),
                count: problems.len(),
            }
            .into());
        }
        Err(e) => return Err(CheckFailed::Unreadable(e.to_string()).into()),
    };
    // What the file's values add up to (the agent refuses these at start too).
    let settings = match Settings::resolve(
        Overrides::default(),
        config.clone(),
        mounts,
        &Settings::kernel_host_name(),
    ) {
        Ok(s) => s,
        Err(e) => {
            println!("{}: {e}", file.display());
            return Err(CheckFailed::Invalid {
                file: file.clone(),
                count: 1,
            }
            .into());
        }
    };
    let mut out = format!("{}: valid\n", file.display());
    if !args.brief {
        report(&mut out, &config, &settings, &text, file)?;
    }
    // One write: `check-config FILE | head` ends quietly (main treats a broken pipe
    // as success).
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("writing the report")?;
    Ok(())
}

/// The settings in effect and the VMs the agent would track, appended to `out`.
fn report(
    out: &mut String,
    config: &Config,
    settings: &Settings,
    text: &str,
    file: &Path,
) -> anyhow::Result<()> {
    let table = toml::Table::try_from(config).context("showing the settings")?;
    let rendered = toml_file::render_marking_defaults(&table, &toml_file::fields_set(text));
    out.push_str(
        "\n# The settings in effect (`# default`: not in the file, the embedded default)\n\n",
    );
    out.push_str(rendered.trim_start_matches('\n'));
    let inventory = Inventory::new(
        settings
            .config
            .inventory_options(Path::new("/proc"), settings.mounts.clone()),
    );
    let vms = inventory
        .discover()
        .context("discovering this host's VMs")?;
    out.push_str(&format!(
        "\n# The VMs it would track on this host ({})\n\n",
        vms.len()
    ));
    for vm in &vms {
        out.push_str(&format!("{}: {}\n", vm.name, why(vm, config, text, file)));
    }
    if vms.is_empty() {
        out.push_str(&format!(
            "none: no QEMU process{}{} found\n",
            if config.discovery.libvirt {
                ", no libvirt machine cgroup"
            } else {
                ""
            },
            if config.vms.is_empty() {
                ", no [[vm]] declared"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

/// One sentence: where the VM was found, what the agent can act on, and for whom.
fn why(vm: &Vm, config: &Config, text: &str, file: &Path) -> String {
    let found = match vm.source {
        VmSource::Static => {
            let at = config
                .vms
                .iter()
                .position(|s| s.name == vm.name)
                .and_then(|i| toml_file::line_of(text, &format!("vm[{i}]")))
                .map(|line| format!(" at {}:{line}", file.display()))
                .unwrap_or_default();
            format!("declared in [[vm]]{at}")
        }
        VmSource::Qemu => format!(
            "QEMU process {} ([discovery] qemu = true)",
            vm.pid.map_or("?".into(), |p| p.to_string())
        ),
        VmSource::Libvirt => "a libvirt machine cgroup ([discovery] libvirt = true)".to_owned(),
    };
    let cgroups = if vm.cgroups.is_empty() {
        "no cgroup: telemetry only, no cgroup mitigation".to_owned()
    } else {
        let paths: Vec<String> = vm
            .cgroups
            .iter()
            .map(|c| c.path.display().to_string())
            .collect();
        format!("cgroups {}", paths.join(", "))
    };
    let qmp = match &vm.qmp_socket {
        Some(socket) => format!("QMP {}", socket.display()),
        None => "no QMP socket: no balloon or migration".to_owned(),
    };
    let vcpus = vm
        .vcpus()
        .map_or("vCPUs unknown".to_owned(), |n| format!("{n} vCPUs"));
    let customer = vm
        .customer
        .as_deref()
        .map_or("no customer: not billed".to_owned(), |c| {
            format!("customer {c}")
        });
    format!(
        "{found}; {cgroups}; {qmp}; {vcpus}; priority {}; {customer}",
        format!("{:?}", vm.priority).to_lowercase()
    )
}
