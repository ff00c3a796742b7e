//! The client against a scripted fake QMP server.

use std::time::Instant;

use serde_json::json;

use super::*;
use crate::testing::qmp::{FakeQmp, GREETING};

const LONG: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(200);

#[test]
fn handshake_and_execute() {
    let fake = FakeQmp::serve(|mut p| {
        p.handshake();
        let id = p.expect("query-status", None);
        p.reply(
            &id,
            json!({"status": "prelaunch", "singlestep": false, "running": false}),
        );
        let id = p.expect("qom-get", Some(json!({"path": "/a", "property": "b"})));
        p.reply(&id, json!(7));
        p.wait_closed();
    });
    let mut qmp = QmpClient::connect(&fake.path, LONG).unwrap();
    assert_eq!(qmp.greeting().version, (7, 2, 22));
    assert_eq!(
        qmp.execute("query-status", None).unwrap()["status"],
        "prelaunch"
    );
    let args = json!({"path": "/a", "property": "b"});
    assert_eq!(qmp.execute("qom-get", Some(args)).unwrap(), 7);
    drop(qmp);
    fake.join();
}

/// Events before and between replies, several messages in one write: all events
/// are kept in order, the reply is found.
#[test]
fn events_are_collected_while_waiting() {
    let fake = FakeQmp::serve(|mut p| {
        p.handshake();
        let id = p.expect("quit", None);
        p.event("STOP", json!({}));
        let shutdown = json!({"event": "SHUTDOWN", "data": {"guest": false}});
        p.send(&format!(
            "{shutdown}\r\n{}\r\n",
            json!({"return": {}, "id": id})
        ));
        p.wait_closed();
    });
    let mut qmp = QmpClient::connect(&fake.path, LONG).unwrap();
    assert_eq!(qmp.execute("quit", None).unwrap(), json!({}));
    let names: Vec<String> = qmp.take_events().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["STOP", "SHUTDOWN"]);
    assert!(qmp.take_events().is_empty());
    drop(qmp);
    fake.join();
}

#[test]
fn event_buffer_is_bounded() {
    let fake = FakeQmp::serve(|mut p| {
        p.handshake();
        let id = p.expect("query-status", None);
        let mut burst = String::new();
        for i in 0..MAX_EVENTS + 6 {
            burst += &format!(
                "{}\r\n",
                json!({"event": "BALLOON_CHANGE", "data": {"actual": i}})
            );
        }
        p.send(&burst);
        p.reply(&id, json!({"status": "running", "running": true}));
        p.wait_closed();
    });
    let mut qmp = QmpClient::connect(&fake.path, LONG).unwrap();
    qmp.execute("query-status", None).unwrap();
    let events = qmp.take_events();
    assert_eq!((events.len(), qmp.dropped_events()), (MAX_EVENTS, 6));
    assert_eq!(events[0].data["actual"], 6, "the oldest are dropped");
    drop(qmp);
    fake.join();
}

#[test]
fn reply_to_another_id_is_skipped() {
    let fake = FakeQmp::serve(|mut p| {
        p.handshake();
        let id = p.expect("query-status", None);
        p.send_json(json!({"return": {"stale": true}, "id": 999}));
        p.reply(&id, json!({"fresh": true}));
        p.wait_closed();
    });
    let mut qmp = QmpClient::connect(&fake.path, LONG).unwrap();
    assert_eq!(
        qmp.execute("query-status", None).unwrap(),
        json!({"fresh": true})
    );
    drop(qmp);
    fake.join();
}

/// QEMU's own refusal names the command, class and reason; the connection stays
/// usable.
#[test]
fn command_error_then_more_commands() {
    let fake = FakeQmp::serve(|mut p| {
        p.handshake();
        let id = p.expect("query-balloon", None);
        p.error(
            &id,
            "DeviceNotActive",
            "No balloon device has been activated",
        );
        let id = p.expect("query-status", None);
        p.reply(&id, json!({}));
        p.wait_closed();
    });
    let mut qmp = QmpClient::connect(&fake.path, LONG).unwrap();
    let err = qmp.execute("query-balloon", None).unwrap_err();
    assert_eq!(err.class(), Some("DeviceNotActive"));
    assert_eq!(
        err.to_string(),
        format!(
            "QMP socket {}: `query-balloon` failed: No balloon device has been activated (DeviceNotActive)",
            fake.path.display()
        )
    );
    assert!(!err.vanished());
    qmp.execute("query-status", None).unwrap();
    drop(qmp);
    fake.join();
}

/// A server that accepts and never writes: connect gives up at its deadline and
/// says what it waited for.
#[test]
fn silent_server_times_out_on_the_greeting() {
    let fake = FakeQmp::serve(|mut p| p.wait_closed());
    let started = Instant::now();
    let err = QmpClient::connect(&fake.path, SHORT).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(
        matches!(err, QmpError::Timeout { after, .. } if after == SHORT),
        "{err:?}"
    );
    assert!(
        text.contains("did not answer with a greeting") && text.ends_with("within 200ms"),
        "{text}"
    );
    fake.join();
}

/// Greeting and negotiation fine, then silence: the command times out, and the
/// client refuses to send anything else on that connection.
#[test]
fn silent_reply_times_out_and_poisons_the_client() {
    let fake = FakeQmp::serve(|mut p| {
        p.handshake();
        p.expect("query-balloon", None);
        p.wait_closed();
    });
    let mut qmp = QmpClient::connect(&fake.path, SHORT).unwrap();
    let started = Instant::now();
    let err = qmp.execute("query-balloon", None).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        err.to_string(),
        format!(
            "QMP socket {} did not answer `query-balloon` within 200ms",
            fake.path.display()
        )
    );
    let started = Instant::now();
    let again = qmp.execute("query-status", None).unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_millis(50));
    assert!(
        again.contains("not sending `query-status`: the connection failed earlier")
            && again.contains("connect again"),
        "{again}"
    );
    drop(qmp);
    fake.join();
}

/// Bytes trickling in (a space every 20 ms, which QMP allows between messages)
/// would reset a per-read timeout forever; the call's deadline still holds.
#[test]
fn trickling_server_still_times_out() {
    let fake = FakeQmp::serve(|mut p| {
        p.handshake();
        p.expect("query-status", None);
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until && p.try_send(" ") {
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let mut qmp = QmpClient::connect(&fake.path, SHORT).unwrap();
    let started = Instant::now();
    let err = qmp.execute("query-status", None).unwrap_err();
    assert!(matches!(err, QmpError::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    drop(qmp);
    fake.join();
}

#[test]
fn server_closing_mid_reply() {
    let fake = FakeQmp::serve(|mut p| {
        p.handshake();
        p.expect("query-cpus-fast", None);
        p.send(r#"{"return": [{"cpu-index": 0, "thr"#);
    });
    let mut qmp = QmpClient::connect(&fake.path, LONG).unwrap();
    let err = qmp.execute("query-cpus-fast", None).unwrap_err();
    assert!(err.vanished(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "QMP socket {} closed the connection during `query-cpus-fast`",
            fake.path.display()
        )
    );
    fake.join();
}

/// The reply cut into pieces that arrive apart, the greeting glued to nothing.
#[test]
fn split_messages() {
    let fake = FakeQmp::serve(|mut p| {
        let (a, b) = GREETING.split_at(10);
        p.send(a);
        std::thread::sleep(Duration::from_millis(30));
        p.send(b);
        p.send("\r\n");
        let id = p.expect("qmp_capabilities", None);
        p.reply(&id, json!({}));
        let id = p.expect("query-balloon", None);
        let reply = format!("{}\r\n", json!({"return": {"actual": 67108864}, "id": id}));
        for chunk in reply.as_bytes().chunks(7) {
            p.send(std::str::from_utf8(chunk).unwrap());
            std::thread::sleep(Duration::from_millis(5));
        }
        p.wait_closed();
    });
    let mut qmp = QmpClient::connect(&fake.path, LONG).unwrap();
    assert_eq!(
        qmp.execute("query-balloon", None).unwrap()["actual"],
        67108864
    );
    drop(qmp);
    fake.join();
}

#[test]
fn not_a_qmp_server() {
    let fake = FakeQmp::serve(|mut p| {
        p.send("{\"hello\": \"world\"}\n");
        p.wait_closed();
    });
    let err = QmpClient::connect(&fake.path, LONG).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "QMP socket {}: expected the QMP greeting, got {{\"hello\":\"world\"}}",
            fake.path.display()
        )
    );
    fake.join();

    let fake = FakeQmp::serve(|mut p| {
        p.send("SSH-2.0-OpenSSH_9.2\r\n");
        p.wait_closed();
    });
    let err = QmpClient::connect(&fake.path, LONG).unwrap_err();
    assert!(matches!(err, QmpError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("invalid JSON"), "{err}");
    fake.join();
}

/// A reply that is neither return, error nor event.
#[test]
fn unexpected_message() {
    let fake = FakeQmp::serve(|mut p| {
        p.handshake();
        let id = p.expect("query-status", None);
        p.send_json(json!({"id": id, "surprise": 1}));
        p.wait_closed();
    });
    let mut qmp = QmpClient::connect(&fake.path, LONG).unwrap();
    let err = qmp.execute("query-status", None).unwrap_err().to_string();
    assert!(
        err.contains("expected the reply to `query-status`, got"),
        "{err}"
    );
    drop(qmp);
    fake.join();
}

#[test]
fn missing_socket_is_a_vanished_vm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.qmp");
    let err = QmpClient::connect(&path, SHORT).unwrap_err();
    assert!(err.vanished(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot connect to QMP socket {}", path.display())
    );
}

/// A socket file left behind by a QEMU that exited: connection refused.
#[test]
fn stale_socket_is_a_vanished_vm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.qmp");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let err = QmpClient::connect(&path, SHORT).unwrap_err();
    assert!(err.vanished(), "{err:?}");
}

/// Several commands in one round-trip: all sent before any reply is read, replies
/// matched by id whatever their order, events kept, a refused command failing
/// alone.
#[test]
fn pipelined_commands() {
    let fake = FakeQmp::serve(|mut p| {
        p.handshake();
        let a = p.expect("query-balloon", None);
        let b = p.expect("qom-get", Some(json!({"path": "/a", "property": "b"})));
        let c = p.expect("query-status", None);
        p.event("BALLOON_CHANGE", json!({"actual": 1}));
        p.reply(&b, json!(7));
        p.send_json(json!({"return": {"stale": true}, "id": 999}));
        p.error(
            &a,
            "DeviceNotActive",
            "No balloon device has been activated",
        );
        p.reply(&c, json!({"status": "running", "running": true}));
        let id = p.expect("query-status", None);
        p.reply(&id, json!({}));
        p.wait_closed();
    });
    let mut qmp = QmpClient::connect(&fake.path, LONG).unwrap();
    let results = qmp
        .execute_pipelined(vec![
            ("query-balloon", None),
            ("qom-get", Some(json!({"path": "/a", "property": "b"}))),
            ("query-status", None),
        ])
        .unwrap();
    assert_eq!(results.len(), 3);
    let err = results[0].as_ref().unwrap_err();
    assert_eq!(err.class(), Some("DeviceNotActive"));
    assert!(err.to_string().contains("`query-balloon` failed"), "{err}");
    assert_eq!(results[1].as_ref().unwrap(), &json!(7));
    assert_eq!(results[2].as_ref().unwrap()["status"], "running");
    assert_eq!(qmp.take_events()[0].name, "BALLOON_CHANGE");
    assert!(qmp.execute_pipelined(vec![]).unwrap().is_empty());
    qmp.execute("query-status", None).unwrap();
    drop(qmp);
    fake.join();
}

/// One deadline for the lot: a missing second reply times out the call and
/// poisons the client, as for a single command.
#[test]
fn pipelined_commands_time_out_together() {
    let fake = FakeQmp::serve(|mut p| {
        p.handshake();
        let a = p.expect("query-balloon", None);
        p.expect("query-status", None);
        p.reply(&a, json!({"actual": 1}));
        p.wait_closed();
    });
    let mut qmp = QmpClient::connect(&fake.path, SHORT).unwrap();
    let started = Instant::now();
    let err = qmp
        .execute_pipelined(vec![("query-balloon", None), ("query-status", None)])
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        err.to_string(),
        format!(
            "QMP socket {} did not answer `query-balloon`, `query-status` within 200ms",
            fake.path.display()
        )
    );
    let again = qmp.execute("query-status", None).unwrap_err().to_string();
    assert!(again.contains("the connection failed earlier"), "{again}");
    drop(qmp);
    fake.join();
}
