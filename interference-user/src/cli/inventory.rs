//! `interference inventory`: what the agent would track, without loading anything.

use std::path::Path;

use anyhow::Context as _;
use interference::inventory::Inventory;

use interference::agent::Overrides;

use super::args::ConfigArgs;

#[derive(Debug, clap::Args)]
pub struct InventoryArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// One JSON object per VM instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InventoryArgs) -> anyhow::Result<()> {
    let s = args.config.settings(Overrides::default())?;
    let inventory = Inventory::new(s.config.inventory_options(Path::new("/proc"), s.mounts));
    let vms = inventory.discover().context("discovering VMs")?;
    if args.json {
        for vm in &vms {
            println!("{}", serde_json::to_string(vm)?);
        }
        return Ok(());
    }
    println!(
        "{:<24} {:<8} {:>8} {:>6} {:>7} {:<36} QMP",
        "VM", "SOURCE", "PID", "VCPUS", "THREADS", "UUID"
    );
    for vm in &vms {
        println!(
            "{:<24} {:<8} {:>8} {:>6} {:>7} {:<36} {}",
            vm.name,
            format!("{:?}", vm.source).to_lowercase(),
            vm.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            vm.threads.iter().filter(|t| t.vcpu.is_some()).count(),
            vm.threads.len(),
            vm.uuid.as_deref().unwrap_or("-"),
            vm.qmp_socket
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}
