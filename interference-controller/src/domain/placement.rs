//! Where a migrating VM goes. Filter: a fresh heartbeat, not draining, the same CPU
//! model as the source (live migration needs it), not the source, not excluded, a
//! migration URI, and room for the VM after the reservations already held there.
//! Weigh: the room left after the VM (the tighter of vCPUs and memory, as a share of
//! the host) and how quiet the host is (its recent peak Contention Score); ties go to
//! the host name, so the choice is deterministic.

use std::collections::BTreeMap;

/// A host as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub host: String,
    pub cpu_model: Option<String>,
    pub migration_uri: Option<String>,
    pub total_vcpus: i64,
    pub total_memory_mib: i64,
    pub free_vcpus: i64,
    pub free_memory_mib: i64,
    /// Held by reservations not yet counted by the host's own heartbeat.
    pub reserved_vcpus: i64,
    pub reserved_memory_mib: i64,
    /// 0-100.
    pub contention: f64,
    pub heartbeat_ms: Option<i64>,
    pub draining: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub source_host: String,
    pub cpu_model: Option<String>,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub exclude: Vec<String>,
}

/// Why a host was not chosen (counted in the refusal message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    Source,
    Excluded,
    StaleHeartbeat,
    Draining,
    NoMigrationUri,
    CpuModel,
    NoRoom,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "the source itself",
            Self::Excluded => "excluded by the request",
            Self::StaleHeartbeat => "no fresh heartbeat",
            Self::Draining => "draining",
            Self::NoMigrationUri => "no migration URI",
            Self::CpuModel => "another CPU model",
            Self::NoRoom => "no room after reservations",
        }
    }
}

/// The best target, or how many hosts each filter turned away.
pub fn choose<'a>(
    candidates: &'a [Candidate],
    need: &Need,
    now_ms: i64,
    fresh_ms: i64,
) -> Result<&'a Candidate, BTreeMap<Refusal, usize>> {
    let mut refused: BTreeMap<Refusal, usize> = BTreeMap::new();
    let mut best: Option<(&Candidate, f64)> = None;
    for c in candidates {
        let refusal = if c.host == need.source_host {
            Some(Refusal::Source)
        } else if need.exclude.contains(&c.host) {
            Some(Refusal::Excluded)
        } else if c.heartbeat_ms.is_none_or(|h| now_ms - h > fresh_ms) {
            Some(Refusal::StaleHeartbeat)
        } else if c.draining {
            Some(Refusal::Draining)
        } else if c.migration_uri.as_deref().is_none_or(str::is_empty) {
            Some(Refusal::NoMigrationUri)
        } else if need.cpu_model.is_some() && c.cpu_model != need.cpu_model {
            Some(Refusal::CpuModel)
        } else if c.free_vcpus - c.reserved_vcpus < need.vcpus
            || c.free_memory_mib - c.reserved_memory_mib < need.memory_mib
        {
            Some(Refusal::NoRoom)
        } else {
            None
        };
        if let Some(r) = refusal {
            *refused.entry(r).or_default() += 1;
            continue;
        }
        let score = weight(c, need);
        let better = match best {
            None => true,
            Some((b, s)) => score > s + 1e-12 || ((score - s).abs() <= 1e-12 && c.host < b.host),
        };
        if better {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c).ok_or(refused)
}

/// 0.6 x room left (tighter of CPU and memory, as a share) + 0.4 x quietness.
fn weight(c: &Candidate, need: &Need) -> f64 {
    let share = |free: i64, reserved: i64, want: i64, total: i64| {
        if total <= 0 {
            0.0
        } else {
            ((free - reserved - want) as f64 / total as f64).clamp(0.0, 1.0)
        }
    };
    let room = share(c.free_vcpus, c.reserved_vcpus, need.vcpus, c.total_vcpus).min(share(
        c.free_memory_mib,
        c.reserved_memory_mib,
        need.memory_mib,
        c.total_memory_mib,
    ));
    let quiet = 1.0 - (c.contention / 100.0).clamp(0.0, 1.0);
    0.6 * room + 0.4 * quiet
}

/// "no host can take 4 vCPUs and 8192 MiB: 2 no fresh heartbeat, 1 draining".
pub fn refusal_message(need: &Need, refused: &BTreeMap<Refusal, usize>) -> String {
    let mut parts: Vec<String> = refused
        .iter()
        .map(|(r, n)| format!("{n} {}", r.as_str()))
        .collect();
    if parts.is_empty() {
        parts.push("no other host is registered".into());
    }
    format!(
        "no host can take {} vCPUs and {} MiB: {}",
        need.vcpus,
        need.memory_mib,
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> Candidate {
        Candidate {
            host: name.into(),
            cpu_model: Some("EPYC".into()),
            migration_uri: Some(format!("tcp:{name}:4444")),
            total_vcpus: 32,
            total_memory_mib: 65536,
            free_vcpus: 16,
            free_memory_mib: 32768,
            reserved_vcpus: 0,
            reserved_memory_mib: 0,
            contention: 10.0,
            heartbeat_ms: Some(1_000_000),
            draining: false,
        }
    }

    fn need() -> Need {
        Need {
            source_host: "src".into(),
            cpu_model: Some("EPYC".into()),
            vcpus: 4,
            memory_mib: 8192,
            exclude: vec![],
        }
    }

    #[test]
    fn filters_say_why() {
        let mut hosts = vec![
            host("src"),
            host("stale"),
            host("drain"),
            host("intel"),
            host("full"),
            host("held"),
            host("nouri"),
        ];
        hosts[1].heartbeat_ms = Some(1_000_000 - 60_000);
        hosts[2].draining = true;
        hosts[3].cpu_model = Some("Xeon".into());
        hosts[4].free_vcpus = 2;
        hosts[5].reserved_memory_mib = 30_000;
        hosts[6].migration_uri = None;
        let refused = choose(&hosts, &need(), 1_000_000, 30_000).expect_err("none fits");
        assert_eq!(
            refusal_message(&need(), &refused),
            "no host can take 4 vCPUs and 8192 MiB: 1 the source itself, 1 no fresh heartbeat, 1 draining, 1 no migration URI, 1 another CPU model, 2 no room after reservations"
        );
    }

    #[test]
    fn prefers_room_then_quiet_then_name() {
        let mut a = host("a");
        let mut b = host("b");
        let c = host("c");
        a.free_vcpus = 8; // less room
        b.contention = 90.0; // busy
        let hosts = vec![a, b, c.clone()];
        assert_eq!(
            choose(&hosts, &need(), 1_000_000, 30_000).map(|h| h.host.as_str()),
            Ok("c")
        );
        let twins = vec![host("z"), host("y")];
        assert_eq!(
            choose(&twins, &need(), 1_000_000, 30_000).map(|h| h.host.as_str()),
            Ok("y")
        );
        let mut n = need();
        n.exclude = vec!["y".into()];
        assert_eq!(
            choose(&twins, &n, 1_000_000, 30_000).map(|h| h.host.as_str()),
            Ok("z")
        );
    }
}
