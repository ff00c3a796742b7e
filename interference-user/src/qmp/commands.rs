//! QMP commands that change a running VM: virtio-balloon targets, the guest
//! statistics polling that reports what the guest can spare, and live migration. The
//! enforcement stage changes VMs with them; the telemetry's balloon probe turns the
//! statistics polling on. Read-only commands are in `queries`.

use serde_json::json;

use super::{QmpClient, QmpError};

impl QmpClient {
    /// `balloon`: ask the guest to shrink to (or grow back to) `target_bytes` of RAM.
    /// QEMU only records the target and returns; the guest driver inflates or
    /// deflates over time (watch `query_balloon` or `BALLOON_CHANGE` events). QEMU
    /// 7.2 accepts a target while no driver is active (a VM paused with -S) and
    /// refuses 0 with GenericError "Parameter 'target' expects a size".
    pub fn balloon(&mut self, target_bytes: u64) -> Result<(), QmpError> {
        self.execute("balloon", Some(json!({ "value": target_bytes })))?;
        Ok(())
    }

    /// Make the guest driver report its memory statistics every `seconds` (0: stop),
    /// so that `balloon_stats` on the balloon at QOM path `device` has data.
    pub fn set_balloon_stats_polling(
        &mut self,
        device: &str,
        seconds: u32,
    ) -> Result<(), QmpError> {
        let args = json!({
            "path": device,
            "property": "guest-stats-polling-interval",
            "value": seconds,
        });
        self.execute("qom-set", Some(args))?;
        Ok(())
    }

    /// `migrate`: start a live migration to `uri` ("tcp:host:port",
    /// "unix:/path"). Returns once started; follow it with `query_migrate`.
    pub fn migrate(&mut self, uri: &str) -> Result<(), QmpError> {
        self.execute("migrate", Some(json!({ "uri": uri })))?;
        Ok(())
    }

    /// `migrate_cancel`: abandon the migration in progress; the VM keeps running
    /// here. A no-op when none is.
    pub fn migrate_cancel(&mut self) -> Result<(), QmpError> {
        self.execute("migrate_cancel", None)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::qmp::DEFAULT_BALLOON_PATH;
    use crate::testing::qmp::{FakeQmp, RealQemu};

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn commands_send_what_qemu_expects() {
        let fake = FakeQmp::serve(|mut p| {
            p.handshake();
            let id = p.expect("balloon", Some(json!({"value": 1u64 << 30})));
            p.reply(&id, json!({}));
            let args = json!({"path": DEFAULT_BALLOON_PATH,
                "property": "guest-stats-polling-interval", "value": 2});
            let id = p.expect("qom-set", Some(args));
            p.reply(&id, json!({}));
            let id = p.expect("migrate", Some(json!({"uri": "tcp:10.0.0.2:4444"})));
            p.error(
                &id,
                "GenericError",
                "Failed to connect socket: Connection refused",
            );
            let id = p.expect("migrate_cancel", None);
            p.reply(&id, json!({}));
            p.wait_closed();
        });
        let mut qmp = QmpClient::connect(&fake.path, TIMEOUT).unwrap();
        qmp.balloon(1 << 30).unwrap();
        qmp.set_balloon_stats_polling(DEFAULT_BALLOON_PATH, 2)
            .unwrap();
        let err = qmp.migrate("tcp:10.0.0.2:4444").unwrap_err();
        assert!(
            err.to_string().ends_with(
                "`migrate` failed: Failed to connect socket: Connection refused (GenericError)"
            ),
            "{err}"
        );
        qmp.migrate_cancel().unwrap();
        drop(qmp);
        fake.join();
    }

    /// What QEMU 7.2 does with a balloon no guest driver serves (-S, no kernel).
    #[test]
    #[ignore = "needs root/QEMU"]
    fn real_qemu_balloon_without_a_guest() {
        let qemu = RealQemu::start("real_qemu_balloon_without_a_guest", &[]);
        let mut qmp = QmpClient::connect(&qemu.qmp, TIMEOUT).unwrap();
        qmp.balloon(32 << 20).unwrap();
        assert_eq!(
            qmp.query_balloon().unwrap(),
            64 << 20,
            "nothing inflates without a driver"
        );
        let err = qmp.balloon(0).unwrap_err();
        assert_eq!(err.class(), Some("GenericError"), "{err}");
        eprintln!("balloon(0): {err}");
        qmp.set_balloon_stats_polling(DEFAULT_BALLOON_PATH, 2)
            .unwrap();
        let stats = qmp.balloon_stats(DEFAULT_BALLOON_PATH).unwrap();
        assert_eq!(stats.last_update, None, "{stats:?}");
    }

    /// A same-host live migration between two paused QEMUs: it completes, the
    /// source ends in "postmigrate", the destination holds the VM.
    #[test]
    #[ignore = "needs root/QEMU"]
    fn real_qemu_migration_completes() {
        let source = RealQemu::start("real_qemu_migration_completes", &[]);
        let incoming = source.path("migrate.sock");
        let uri = format!("unix:{}", incoming.display());
        let dest = RealQemu::start("real_qemu_migration_completes", &["-incoming", &uri]);
        let until = Instant::now() + Duration::from_secs(20);
        while !incoming.exists() {
            assert!(Instant::now() < until, "no incoming socket: {}", dest.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut src = QmpClient::connect(&source.qmp, TIMEOUT).unwrap();
        let mut dst = QmpClient::connect(&dest.qmp, TIMEOUT).unwrap();
        assert_eq!(dst.query_status().unwrap().status, "inmigrate");
        src.migrate(&uri).unwrap();
        let status = loop {
            let status = src.query_migrate().unwrap();
            if status.finished() {
                break status;
            }
            assert!(Instant::now() < until, "migration stuck: {status:?}");
            std::thread::sleep(Duration::from_millis(50));
        };
        eprintln!("migration: {status:?}");
        assert_eq!(status.status, "completed", "{status:?}");
        assert_eq!(src.query_status().unwrap().status, "postmigrate");
        let events: Vec<String> = src.take_events().into_iter().map(|e| e.name).collect();
        eprintln!("source events: {events:?}");
        let dst_status = dst.query_status().unwrap();
        eprintln!("destination after migration: {dst_status:?}");
        assert!(!dst_status.running);
    }
}
