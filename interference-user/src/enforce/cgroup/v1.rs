//! cgroup v1 specifics: one hierarchy per controller (or per controller group such as
//! `cpu,cpuacct`), `cpu.shares` for weights, a strict subset rule for cpusets.

use std::path::Path;

use super::{read_value, CgroupError};
use crate::enforce::cpuset::CpuList;
use crate::enforce::weight::weight_to_shares;

/// The weight file and the text to write for a v2-scale `weight`.
pub fn weight_file(weight: u64) -> (&'static str, String) {
    ("cpu.shares", weight_to_shares(weight).to_string())
}

/// Whether a v1 hierarchy carries `controller`.
pub fn has(controllers: &[String], controller: &str) -> bool {
    controllers.iter().any(|c| c == controller)
}

/// The CPUs the cgroup at `dir` may hand to its children: `cpuset.effective_cpus`
/// (what is online of `cpuset.cpus`), or `cpuset.cpus` on kernels without it.
pub fn effective_cpus(dir: &Path) -> Result<CpuList, CgroupError> {
    let effective = dir.join("cpuset.effective_cpus");
    let file = if effective.exists() {
        effective
    } else {
        dir.join("cpuset.cpus")
    };
    super::parse_cpus(&file, &read_value(&file)?)
}
