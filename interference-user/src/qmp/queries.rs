//! Typed commands that only read a VM's state (and `quit`, which tools and tests need
//! to end a QEMU cleanly). Commands that change a running VM are in `commands`.

use serde_json::{json, Value};

use super::client::QmpClient;
use super::error::QmpError;
use super::types::{BalloonStats, CpuInfo, MigrationStatus, VmRunState};

/// Where libvirt (and our lab) put the balloon: `-device virtio-balloon-pci,id=balloon0`.
pub const DEFAULT_BALLOON_PATH: &str = "/machine/peripheral/balloon0";

/// QOM containers that hold user-created devices: with an id, and without one.
const DEVICE_CONTAINERS: [&str; 2] = ["/machine/peripheral", "/machine/peripheral-anon"];

fn guest_stats_args(device: &str) -> Value {
    json!({"path": device, "property": "guest-stats"})
}

impl QmpClient {
    /// `query-status`: is the guest running, and QEMU's run state.
    pub fn query_status(&mut self) -> Result<VmRunState, QmpError> {
        self.typed("query-status", None)
    }

    /// `query-cpus-fast`: every vCPU with its host thread id, in vCPU order. Unlike
    /// the deprecated `query-cpus` it does not interrupt the vCPUs.
    pub fn query_cpus_fast(&mut self) -> Result<Vec<CpuInfo>, QmpError> {
        let mut cpus: Vec<CpuInfo> = self.typed("query-cpus-fast", None)?;
        cpus.sort_by_key(|c| c.cpu_index);
        Ok(cpus)
    }

    /// `query-balloon`: the guest's memory size now, in bytes, as the balloon driver
    /// reports it. QEMU answers `DeviceNotActive` when the VM has no balloon.
    pub fn query_balloon(&mut self) -> Result<u64, QmpError> {
        let reply = self.execute("query-balloon", None)?;
        self.balloon_actual(&reply)
    }

    /// The guest's memory statistics from the balloon device at QOM path `device`
    /// (usually [`DEFAULT_BALLOON_PATH`], else see [`find_balloon`](Self::find_balloon)).
    /// All None until the guest driver reports, which needs polling enabled
    /// (`set_balloon_stats_polling`).
    pub fn balloon_stats(&mut self, device: &str) -> Result<BalloonStats, QmpError> {
        let reply = self.execute("qom-get", Some(guest_stats_args(device)))?;
        self.guest_stats(&reply)
    }

    /// Seconds between the guest driver's statistics reports for the balloon at QOM
    /// path `device` (`guest-stats-polling-interval`); 0 while polling is off. Set it
    /// with `set_balloon_stats_polling`.
    pub fn balloon_stats_polling(&mut self, device: &str) -> Result<u32, QmpError> {
        let args = json!({"path": device, "property": "guest-stats-polling-interval"});
        let reply = self.execute("qom-get", Some(args))?;
        reply
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| self.bad_reply("qom-get", &reply, "not a number of seconds"))
    }

    /// [`query_balloon`](Self::query_balloon) and
    /// [`balloon_stats`](Self::balloon_stats) in one round-trip (pipelined), for a
    /// caller that polls both.
    pub fn balloon_with_stats(&mut self, device: &str) -> Result<(u64, BalloonStats), QmpError> {
        let mut replies = self
            .execute_pipelined(vec![
                ("query-balloon", None),
                ("qom-get", Some(guest_stats_args(device))),
            ])?
            .into_iter();
        let (Some(actual), Some(stats)) = (replies.next(), replies.next()) else {
            unreachable!("execute_pipelined returns one result per command")
        };
        let actual = self.balloon_actual(&actual?)?;
        let stats = self.guest_stats(&stats?)?;
        Ok((actual, stats))
    }

    /// The QOM path of the VM's virtio-balloon device, whatever its id (or none), or
    /// None when the VM has no balloon.
    pub fn find_balloon(&mut self) -> Result<Option<String>, QmpError> {
        for container in DEVICE_CONTAINERS {
            let children = match self.execute("qom-list", Some(json!({"path": container}))) {
                Ok(children) => children,
                // peripheral-anon only exists once a device without an id does.
                Err(e) if e.class() == Some("DeviceNotFound") => continue,
                Err(e) => return Err(e),
            };
            let list = children
                .as_array()
                .ok_or_else(|| self.bad_reply("qom-list", &children, "not a list"))?;
            let balloon = list.iter().find(|c| {
                c["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("child<virtio-balloon"))
            });
            if let Some(name) = balloon.and_then(|c| c["name"].as_str()) {
                return Ok(Some(format!("{container}/{name}")));
            }
        }
        Ok(None)
    }

    /// `query-migrate`: status "none" until a migration was started.
    pub fn query_migrate(&mut self) -> Result<MigrationStatus, QmpError> {
        let reply = self.execute("query-migrate", None)?;
        Ok(MigrationStatus::from_reply(&reply))
    }

    /// `quit`: QEMU exits. A connection closed before the reply arrived counts as
    /// success, since exiting is what was asked.
    pub fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit", None) {
            Ok(_) | Err(QmpError::Closed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn balloon_actual(&self, reply: &Value) -> Result<u64, QmpError> {
        reply["actual"]
            .as_u64()
            .ok_or_else(|| self.bad_reply("query-balloon", reply, "no `actual` byte count"))
    }

    fn guest_stats(&self, reply: &Value) -> Result<BalloonStats, QmpError> {
        if !reply["stats"].is_object() {
            return Err(self.bad_reply("qom-get", reply, "no `stats` object in guest-stats"));
        }
        Ok(BalloonStats::from_guest_stats(reply))
    }

    /// Run `command` and decode its reply into `T`.
    fn typed<T: serde::de::DeserializeOwned>(
        &mut self,
        command: &str,
        args: Option<Value>,
    ) -> Result<T, QmpError> {
        let reply = self.execute(command, args)?;
        serde_json::from_value(reply.clone())
            .map_err(|e| self.bad_reply(command, &reply, &e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::qmp::FakeQmp;

    const LONG: Duration = Duration::from_secs(5);

    #[test]
    fn typed_queries() {
        let fake = FakeQmp::serve(|mut p| {
            p.handshake();
            let id = p.expect("query-status", None);
            p.reply(
                &id,
                json!({"status": "running", "singlestep": false, "running": true}),
            );
            let id = p.expect("query-cpus-fast", None);
            p.reply(&id, json!([
                {"thread-id": 12, "qom-path": "/machine/unattached/device[2]", "cpu-index": 1, "target": "x86_64"},
                {"thread-id": 11, "qom-path": "/machine/unattached/device[0]", "cpu-index": 0, "target": "x86_64"}
            ]));
            let id = p.expect("query-balloon", None);
            p.reply(&id, json!({"actual": 67108864}));
            let args = json!({"path": DEFAULT_BALLOON_PATH, "property": "guest-stats"});
            let id = p.expect("qom-get", Some(args));
            p.reply(&id, json!({"stats": {"stat-free-memory": 5, "stat-total-memory": u64::MAX}, "last-update": 9}));
            let id = p.expect("query-migrate", None);
            p.reply(&id, json!({}));
            p.wait_closed();
        });
        let mut qmp = QmpClient::connect(&fake.path, LONG).unwrap();
        let st = qmp.query_status().unwrap();
        assert_eq!((st.running, st.status.as_str()), (true, "running"));
        let cpus = qmp.query_cpus_fast().unwrap();
        let pairs: Vec<_> = cpus.iter().map(|c| (c.cpu_index, c.thread_id)).collect();
        assert_eq!(pairs, [(0, 11), (1, 12)]);
        assert_eq!(qmp.query_balloon().unwrap(), 64 << 20);
        let stats = qmp.balloon_stats(DEFAULT_BALLOON_PATH).unwrap();
        assert_eq!(
            (stats.free_memory, stats.total_memory, stats.last_update),
            (Some(5), None, Some(9))
        );
        assert_eq!(qmp.query_migrate().unwrap().status, "none");
        drop(qmp);
        fake.join();
    }

    #[test]
    fn replies_that_do_not_decode() {
        let fake = FakeQmp::serve(|mut p| {
            p.handshake();
            let id = p.expect("query-status", None);
            p.reply(&id, json!({"status": 3}));
            p.wait_closed();
        });
        let mut qmp = QmpClient::connect(&fake.path, LONG).unwrap();
        let err = qmp.query_status().unwrap_err().to_string();
        assert!(
            err.contains("`query-status` returned {\"status\":3}: invalid type"),
            "{err}"
        );
        drop(qmp);
        fake.join();
    }

    #[test]
    fn finds_an_anonymous_balloon() {
        let fake = FakeQmp::serve(|mut p| {
            p.handshake();
            let id = p.expect("qom-list", Some(json!({"path": "/machine/peripheral"})));
            p.reply(&id, json!([{"name": "type", "type": "string"}, {"name": "net0", "type": "child<virtio-net-pci>"}]));
            let id = p.expect(
                "qom-list",
                Some(json!({"path": "/machine/peripheral-anon"})),
            );
            p.reply(
                &id,
                json!([{"name": "device[0]", "type": "child<virtio-balloon-pci>"}]),
            );
            let id = p.expect("qom-list", Some(json!({"path": "/machine/peripheral"})));
            p.reply(&id, json!([]));
            let id = p.expect(
                "qom-list",
                Some(json!({"path": "/machine/peripheral-anon"})),
            );
            p.error(
                &id,
                "DeviceNotFound",
                "Device '/machine/peripheral-anon' not found",
            );
            p.wait_closed();
        });
        let mut qmp = QmpClient::connect(&fake.path, LONG).unwrap();
        assert_eq!(
            qmp.find_balloon().unwrap().as_deref(),
            Some("/machine/peripheral-anon/device[0]")
        );
        assert_eq!(qmp.find_balloon().unwrap(), None);
        drop(qmp);
        fake.join();
    }

    #[test]
    fn quit_tolerates_a_closed_connection() {
        let fake = FakeQmp::serve(|mut p| {
            p.handshake();
            p.expect("quit", None);
            p.event(
                "SHUTDOWN",
                json!({"guest": false, "reason": "host-qmp-quit"}),
            );
        });
        let mut qmp = QmpClient::connect(&fake.path, LONG).unwrap();
        qmp.quit().unwrap();
        assert_eq!(qmp.take_events()[0].name, "SHUTDOWN");
        fake.join();
    }
}
