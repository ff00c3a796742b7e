//! A QMP socket that answers whatever the input says: the greeting, capabilities
//! negotiation and replies to the queries the agent makes (status, balloon, balloon
//! stats, vCPUs). The client must bound, refuse or ignore each, never panic or hang.
#![no_main]

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use interference::qmp::QmpClient;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path().join("qmp.sock");
    let Ok(listener) = UnixListener::bind(&path) else {
        return;
    };
    let answer = data.to_vec();
    let server = std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.write_all(&answer);
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let mut sink = [0u8; 4096];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        }
    });
    if let Ok(mut client) = QmpClient::connect(&path, Duration::from_millis(200)) {
        let _ = client.query_status();
        let _ = client.query_balloon();
        let _ = client.find_balloon();
        let _ = client.query_cpus_fast();
        let _ = client.take_events();
    }
    let _ = server.join();
});
