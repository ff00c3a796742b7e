//! cgroup v2 specifics: one hierarchy, controllers enabled per subtree, `cpu.weight`
//! as given, and cpusets that the kernel clips to the parent's effective set.

use std::path::Path;

use super::{read_value, CgroupError};
use crate::enforce::cpuset::CpuList;

/// The weight file and the text to write for `weight`.
pub fn weight_file(weight: u64) -> (&'static str, String) {
    ("cpu.weight", weight.to_string())
}

/// Whether `controller` is enabled for the cgroup at `dir` (listed in its
/// `cgroup.controllers`, i.e. in its parent's `cgroup.subtree_control`). On a hybrid
/// host the unified hierarchy has none.
pub fn enabled(dir: &Path, controller: &str) -> Result<bool, CgroupError> {
    let text = read_value(&dir.join("cgroup.controllers"))?;
    Ok(text.split_whitespace().any(|c| c == controller))
}

/// `cpuset.cpus.effective` of the cgroup at `dir`.
pub fn effective_cpus(dir: &Path) -> Result<CpuList, CgroupError> {
    let file = dir.join("cpuset.cpus.effective");
    super::parse_cpus(&file, &read_value(&file)?)
}
