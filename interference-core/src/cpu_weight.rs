//! CPU weight scales: cgroup v2 `cpu.weight` (1..=10000, default 100) and cgroup v1
//! `cpu.shares` (2..=262144, default 1024).
//!
//! The policy speaks v2 weights; a v1 host gets them as shares through
//! [`weight_to_shares`], which is systemd's `cgroup_cpu_weight_to_shares()`
//! (src/core/cgroup.c) — what `CPUWeight=` becomes on a legacy hierarchy, and the
//! conversion an operator will compare our `cpu.shares` with. Its inverse,
//! [`shares_to_weight`], is systemd's `cgroup_cpu_shares_to_weight()`. Both divide in
//! integers, so a round trip can lose one step (see the tests): the journal records the
//! file's own text, never a converted value, so restoring is exact regardless.
//!
//! runc converts the other way (OCI `shares` to `cpu.weight`) and has done it two ways;
//! both are here for operators who compare with containers on the same host:
//! - [`runc_shares_to_weight_linear`]: runc <= 1.2 and opencontainers/cgroups
//!   `ConvertCPUSharesToCgroupV2Value` (utils.go): `1 + ((shares - 2) * 9999) / 262142`.
//!   It maps the default 1024 shares to weight 39, not 100 (kubernetes#131216);
//! - [`runc_shares_to_weight`]: its replacement (runc PR #4785, crun #1721), a quadratic
//!   in log2(shares) through (2, 1), (1024, 100) and (262144, 10000), rounded up.

/// cgroup v2 `cpu.weight` bounds and default (kernel `CGROUP_WEIGHT_*`).
pub const WEIGHT_MIN: u64 = 1;
pub const WEIGHT_DEFAULT: u64 = 100;
pub const WEIGHT_MAX: u64 = 10_000;

/// cgroup v1 `cpu.shares` bounds and default (kernel `MIN_SHARES`, `MAX_SHARES`,
/// `NICE_0_LOAD`).
pub const SHARES_MIN: u64 = 2;
pub const SHARES_DEFAULT: u64 = 1024;
pub const SHARES_MAX: u64 = 262_144;

/// v2 weight -> v1 shares, as systemd: `CLAMP(weight * 1024 / 100, 2, 262144)`.
pub fn weight_to_shares(weight: u64) -> u64 {
    (weight.saturating_mul(SHARES_DEFAULT) / WEIGHT_DEFAULT).clamp(SHARES_MIN, SHARES_MAX)
}

/// v1 shares -> v2 weight, as systemd: `CLAMP(shares * 100 / 1024, 1, 10000)`.
pub fn shares_to_weight(shares: u64) -> u64 {
    (shares.saturating_mul(WEIGHT_DEFAULT) / SHARES_DEFAULT).clamp(WEIGHT_MIN, WEIGHT_MAX)
}

/// runc <= 1.2 (opencontainers/cgroups `ConvertCPUSharesToCgroupV2Value` before the
/// fix): linear from [2, 262144] onto [1, 10000]; 0 means "unset" and stays 0. Inputs
/// below 2 are taken as 2 (Go's unsigned arithmetic would wrap).
pub fn runc_shares_to_weight_linear(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.clamp(SHARES_MIN, SHARES_MAX) - 2) * 9999) / 262_142
}

/// runc's current conversion (opencontainers/cgroups `ConvertCPUSharesToCgroupV2Value`
/// after runc PR #4785): with `l = log2(shares)`,
/// `ceil(10^((l*l + 125*l) / 612 - 7/34))`, 1 at or below 2 shares, 10000 at or above
/// 262144; 0 means "unset" and stays 0.
pub fn runc_shares_to_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        s if s <= SHARES_MIN => WEIGHT_MIN,
        s if s >= SHARES_MAX => WEIGHT_MAX,
        s => {
            let l = (s as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            // In range by construction (the curve is monotonic between the clamps).
            10f64.powf(exponent).ceil() as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_weight_to_shares_edges() {
        assert_eq!(weight_to_shares(WEIGHT_DEFAULT), SHARES_DEFAULT);
        assert_eq!(weight_to_shares(WEIGHT_MIN), 10);
        assert_eq!(weight_to_shares(WEIGHT_MAX), 102_400);
        assert_eq!(weight_to_shares(0), SHARES_MIN, "clamped up");
        assert_eq!(weight_to_shares(400), 4096);
        assert_eq!(weight_to_shares(50), 512);
        assert_eq!(weight_to_shares(3), 30, "3 * 10.24 rounds down");
        assert_eq!(weight_to_shares(u64::MAX), SHARES_MAX, "no overflow");
    }

    #[test]
    fn systemd_shares_to_weight_edges() {
        assert_eq!(shares_to_weight(SHARES_DEFAULT), WEIGHT_DEFAULT);
        assert_eq!(shares_to_weight(SHARES_MIN), WEIGHT_MIN);
        assert_eq!(shares_to_weight(SHARES_MAX), WEIGHT_MAX, "25600 clamped");
        assert_eq!(shares_to_weight(4096), 400);
        assert_eq!(shares_to_weight(u64::MAX), WEIGHT_MAX);
    }

    /// weight -> shares -> weight loses at most one step (integer division twice);
    /// it is exact for every multiple of 25 (shares then a multiple of 256).
    #[test]
    fn weight_round_trip_within_one() {
        let mut inexact = 0;
        for w in WEIGHT_MIN..=WEIGHT_MAX {
            let back = shares_to_weight(weight_to_shares(w));
            assert!(back == w || back + 1 == w, "{w} -> {back}");
            if w.is_multiple_of(25) {
                assert_eq!(back, w, "{w}");
            }
            inexact += usize::from(back != w);
        }
        eprintln!("weight round trip inexact for {inexact} of 10000 weights");
    }

    /// shares -> weight -> shares lands within one weight step (10.24 shares) below.
    #[test]
    fn shares_round_trip_within_one_weight_step() {
        for s in SHARES_MIN..=SHARES_MAX {
            let w = shares_to_weight(s);
            let back = weight_to_shares(w);
            if s <= 10 {
                assert_eq!(w, 1, "{s}");
            } else if s < 102_400 {
                assert!(back <= s && s - back <= 11, "{s} -> {w} -> {back}");
            } else {
                assert_eq!(w, WEIGHT_MAX, "{s}");
            }
        }
    }

    #[test]
    fn runc_linear_maps_the_default_to_39() {
        assert_eq!(runc_shares_to_weight_linear(0), 0);
        assert_eq!(runc_shares_to_weight_linear(2), 1);
        assert_eq!(runc_shares_to_weight_linear(1024), 39);
        assert_eq!(runc_shares_to_weight_linear(262_144), 10_000);
        assert_eq!(runc_shares_to_weight_linear(1), 1, "below the range");
    }

    #[test]
    fn runc_log_fits_min_default_max_and_is_monotonic() {
        assert_eq!(runc_shares_to_weight(0), 0);
        assert_eq!(runc_shares_to_weight(1), 1);
        assert_eq!(runc_shares_to_weight(2), 1);
        assert_eq!(runc_shares_to_weight(1024), 100);
        assert_eq!(runc_shares_to_weight(262_144), 10_000);
        let mut last = 1;
        for s in 3..SHARES_MAX {
            let w = runc_shares_to_weight(s);
            assert!((last..=WEIGHT_MAX).contains(&w), "{s} -> {w} after {last}");
            last = w;
        }
    }
}
