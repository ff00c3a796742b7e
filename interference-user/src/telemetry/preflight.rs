//! Checks made before loading anything, so that a missing privilege or kernel feature
//! is one clear line naming what is missing, not a verifier dump.

use std::path::Path;

use thiserror::Error;

use super::btf::VMLINUX_BTF;

const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
const CAP_SYS_ADMIN: u32 = 21;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PreflightError {
    #[error(
        "interference needs root, or the capabilities {missing} (missing), to load its eBPF programs and read perf counters"
    )]
    Privileges { missing: String },
    #[error(
        "{path} not found: the kernel has no BTF; boot a kernel built with CONFIG_DEBUG_INFO_BTF=y (needed for tp_btf programs and field offsets)"
    )]
    NoBtf { path: String },
}

/// Effective capabilities from the `CapEff:` line of /proc/self/status.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// What is missing from `cap_eff` to load and attach tracing programs. CAP_SYS_ADMIN
/// covers both on kernels older than 5.8, which have neither CAP_BPF nor CAP_PERFMON.
pub fn missing_caps(cap_eff: u64) -> Vec<&'static str> {
    let has = |c: u32| cap_eff & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) {
        return vec![];
    }
    let mut missing = vec![];
    if !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    missing
}

/// Runs every check against this host.
pub fn check_host() -> Result<(), PreflightError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = parse_cap_eff(&status).unwrap_or(0);
    let missing = missing_caps(cap_eff);
    if !missing.is_empty() {
        return Err(PreflightError::Privileges {
            missing: missing.join(" and "),
        });
    }
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(PreflightError::NoBtf {
            path: VMLINUX_BTF.into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_everything() {
        assert!(missing_caps(0x000001ffffffffff).is_empty());
    }

    #[test]
    fn names_each_missing_capability() {
        assert_eq!(missing_caps(0), vec!["CAP_BPF", "CAP_PERFMON"]);
        assert_eq!(missing_caps(1 << CAP_BPF), vec!["CAP_PERFMON"]);
        let err = PreflightError::Privileges {
            missing: missing_caps(0).join(" and "),
        };
        assert!(err
            .to_string()
            .contains("CAP_BPF and CAP_PERFMON (missing)"));
    }

    #[test]
    fn parses_status() {
        let s = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(s), Some(0x1ffffffffff));
    }
}
