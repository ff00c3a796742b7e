//! What QEMU's replies mean, decoded into plain types. Pure: tests feed it the JSON
//! that QEMU 7.2 sent (see `real_qemu_tests`), no socket involved.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// QEMU's `{"QMP": {"version": ..., "capabilities": [...]}}`, sent on connect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QmpGreeting {
    /// (major, minor, micro), e.g. (7, 2, 22).
    pub version: (u32, u32, u32),
    /// The distribution's build, e.g. "Debian 1:7.2+dfsg-7+deb12u18+b3".
    pub package: String,
    /// Optional protocol features on offer (QEMU 7.2: "oob"); we enable none.
    pub capabilities: Vec<String>,
}

impl QmpGreeting {
    /// Decode the greeting's inner object (the value of "QMP"); missing parts stay
    /// empty, since only the key's presence makes the peer a QMP server.
    pub fn from_qmp(qmp: &Map<String, Value>) -> Self {
        let qemu = &qmp.get("version").unwrap_or(&Value::Null)["qemu"];
        let part = |k: &str| {
            qemu[k]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0)
        };
        Self {
            version: (part("major"), part("minor"), part("micro")),
            package: qmp.get("version").unwrap_or(&Value::Null)["package"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            capabilities: qmp
                .get("capabilities")
                .and_then(Value::as_array)
                .map(|caps| {
                    caps.iter()
                        .filter_map(|c| c.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// An asynchronous message: `{"event": "SHUTDOWN", "data": {...}, "timestamp": ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    pub name: String,
    /// Null when the event carries no data.
    pub data: Value,
    /// When QEMU emitted it (host clock), if it said.
    pub timestamp: Option<SystemTime>,
}

impl QmpEvent {
    /// The event in `msg`, or None when `msg` is not an event.
    pub fn from_message(msg: &Map<String, Value>) -> Option<Self> {
        let name = msg.get("event")?.as_str()?.to_owned();
        let ts = msg.get("timestamp").unwrap_or(&Value::Null);
        let timestamp = match (ts["seconds"].as_u64(), ts["microseconds"].as_u64()) {
            (Some(s), Some(us)) => {
                UNIX_EPOCH.checked_add(Duration::from_secs(s) + Duration::from_micros(us))
            }
            _ => None,
        };
        Some(Self {
            name,
            data: msg.get("data").cloned().unwrap_or(Value::Null),
            timestamp,
        })
    }
}

/// `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRunState {
    pub running: bool,
    /// QEMU's RunState: "running", "paused", "prelaunch" (started with -S, never
    /// run), "inmigrate", "postmigrate", "shutdown", "guest-panicked", ...
    pub status: String,
}

/// One vCPU from `query-cpus-fast`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CpuInfo {
    pub cpu_index: u32,
    /// The host thread that runs this vCPU (a tid under `/proc/<pid>/task`).
    pub thread_id: u32,
    pub qom_path: String,
}

/// The guest's memory statistics, read from the balloon device's `guest-stats`.
/// Each field is None until the guest's balloon driver has reported it: QEMU sends
/// u64::MAX for a statistic it has not received. Sizes in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonStats {
    /// `last-update`: seconds since the epoch of the guest's last report; None if it
    /// never reported (no driver, or polling not enabled).
    pub last_update: Option<u64>,
    /// `stat-free-memory`: memory the guest does not use at all.
    pub free_memory: Option<u64>,
    /// `stat-total-memory`: memory the guest sees (less what the balloon holds).
    pub total_memory: Option<u64>,
    /// `stat-available-memory`: the guest's estimate of what it could give up
    /// without swapping (MemAvailable).
    pub available_memory: Option<u64>,
    /// `stat-disk-caches`: page cache the guest could drop.
    pub disk_caches: Option<u64>,
    /// `stat-swap-in` / `stat-swap-out`: bytes swapped since guest boot.
    pub swap_in: Option<u64>,
    pub swap_out: Option<u64>,
    /// `stat-major-faults` / `stat-minor-faults`: counts since guest boot.
    pub major_faults: Option<u64>,
    pub minor_faults: Option<u64>,
}

impl BalloonStats {
    /// Decode the value of `qom-get guest-stats`.
    pub fn from_guest_stats(v: &Value) -> Self {
        let stat = |k: &str| v["stats"][k].as_u64().filter(|n| *n != u64::MAX);
        Self {
            last_update: v["last-update"].as_u64().filter(|t| *t != 0),
            free_memory: stat("stat-free-memory"),
            total_memory: stat("stat-total-memory"),
            available_memory: stat("stat-available-memory"),
            disk_caches: stat("stat-disk-caches"),
            swap_in: stat("stat-swap-in"),
            swap_out: stat("stat-swap-out"),
            major_faults: stat("stat-major-faults"),
            minor_faults: stat("stat-minor-faults"),
        }
    }
}

/// `query-migrate`: where an outgoing (or incoming) migration stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationStatus {
    /// "none" (never migrated: QEMU then sends an empty object), "setup", "active",
    /// "device", "completed", "failed", "cancelling", "cancelled", ...
    pub status: String,
    /// `total-time`: ms since the migration started (or its whole duration).
    pub total_time_ms: Option<u64>,
    /// `expected-downtime` while active, `downtime` once completed (ms).
    pub expected_downtime_ms: Option<u64>,
    pub downtime_ms: Option<u64>,
    /// `ram.transferred`, `ram.remaining`, `ram.total` (bytes).
    pub ram_transferred: Option<u64>,
    pub ram_remaining: Option<u64>,
    pub ram_total: Option<u64>,
    /// `error-desc`: why a migration failed.
    pub error_desc: Option<String>,
}

impl MigrationStatus {
    pub fn from_reply(v: &Value) -> Self {
        Self {
            status: v["status"].as_str().unwrap_or("none").to_owned(),
            total_time_ms: v["total-time"].as_u64(),
            expected_downtime_ms: v["expected-downtime"].as_u64(),
            downtime_ms: v["downtime"].as_u64(),
            ram_transferred: v["ram"]["transferred"].as_u64(),
            ram_remaining: v["ram"]["remaining"].as_u64(),
            ram_total: v["ram"]["total"].as_u64(),
            error_desc: v["error-desc"].as_str().map(str::to_owned),
        }
    }

    /// The migration has ended, one way or the other.
    pub fn finished(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn greeting_of_qemu_7_2() {
        let v = json!({"version": {"qemu": {"micro": 22, "minor": 2, "major": 7},
            "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]});
        let g = QmpGreeting::from_qmp(v.as_object().unwrap());
        assert_eq!(g.version, (7, 2, 22));
        assert_eq!(g.package, "Debian 1:7.2+dfsg-7+deb12u18+b3");
        assert_eq!(g.capabilities, vec!["oob"]);
        assert_eq!(QmpGreeting::from_qmp(&Map::new()), QmpGreeting::default());
    }

    #[test]
    fn events() {
        let v = json!({"timestamp": {"seconds": 1795638783, "microseconds": 833933},
            "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}});
        let e = QmpEvent::from_message(v.as_object().unwrap()).unwrap();
        assert_eq!(e.name, "SHUTDOWN");
        assert_eq!(e.data["reason"], "host-qmp-quit");
        let t = e.timestamp.unwrap().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(t, Duration::from_micros(1_795_638_783_833_933));
        let bare = QmpEvent::from_message(json!({"event": "STOP"}).as_object().unwrap()).unwrap();
        assert_eq!((bare.data, bare.timestamp), (Value::Null, None));
        assert!(QmpEvent::from_message(json!({"return": {}}).as_object().unwrap()).is_none());
    }

    /// QEMU 7.2 with -S and no guest driver: every statistic is u64::MAX, never
    /// updated.
    #[test]
    fn balloon_stats_without_a_driver_are_none() {
        let max = u64::MAX;
        let v = json!({"stats": {"stat-htlb-pgalloc": max, "stat-swap-out": max,
            "stat-available-memory": max, "stat-free-memory": max, "stat-total-memory": max,
            "stat-swap-in": max, "stat-disk-caches": max, "stat-major-faults": max,
            "stat-minor-faults": max, "stat-htlb-pgfail": max}, "last-update": 0});
        assert_eq!(BalloonStats::from_guest_stats(&v), BalloonStats::default());
    }

    #[test]
    fn balloon_stats_from_a_guest() {
        let v = json!({"stats": {"stat-free-memory": 1000, "stat-total-memory": 4000,
            "stat-available-memory": 2500, "stat-swap-in": 0, "stat-swap-out": u64::MAX},
            "last-update": 1795638783});
        let s = BalloonStats::from_guest_stats(&v);
        assert_eq!(s.last_update, Some(1_795_638_783));
        assert_eq!(
            (s.free_memory, s.total_memory, s.available_memory),
            (Some(1000), Some(4000), Some(2500))
        );
        assert_eq!(
            (s.swap_in, s.swap_out, s.disk_caches),
            (Some(0), None, None)
        );
    }

    #[test]
    fn migration_status() {
        let none = MigrationStatus::from_reply(&json!({}));
        assert_eq!(none.status, "none");
        assert!(!none.finished());
        let done = MigrationStatus::from_reply(&json!({"status": "completed", "total-time": 120,
            "downtime": 8, "ram": {"transferred": 1_000_000, "remaining": 0, "total": 67_108_864}}));
        assert!(done.finished());
        assert_eq!(
            (
                done.total_time_ms,
                done.downtime_ms,
                done.ram_remaining,
                done.ram_total
            ),
            (Some(120), Some(8), Some(0), Some(67_108_864))
        );
        let failed =
            MigrationStatus::from_reply(&json!({"status": "failed", "error-desc": "boom"}));
        assert_eq!(failed.error_desc.as_deref(), Some("boom"));
    }

    #[test]
    fn cpus_fast_as_qemu_7_2_sends_it() {
        let v = json!([{"thread-id": 27813, "props": {"core-id": 0, "thread-id": 0, "socket-id": 0},
            "qom-path": "/machine/unattached/device[0]", "cpu-index": 0, "target": "x86_64"}]);
        let cpus: Vec<CpuInfo> = serde_json::from_value(v).unwrap();
        assert_eq!(
            cpus,
            vec![CpuInfo {
                cpu_index: 0,
                thread_id: 27813,
                qom_path: "/machine/unattached/device[0]".into()
            }]
        );
    }
}
