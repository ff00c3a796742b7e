//! QMP's wire format: JSON objects, one per line (QEMU ends each with CRLF), over a
//! byte stream. A read may return several messages or part of one, so bytes are
//! buffered and cut at newlines.
//!
//! Every wait is bounded by a deadline for the whole call, not per read: a peer that
//! trickles a byte now and then must still time out. Timeouts set on the socket are
//! only the means to wake up at that deadline.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::error::QmpError;

/// A line longer than this is not QMP (QEMU's largest reply, `query-qmp-schema`, is
/// a few hundred KiB); refusing it keeps a broken peer from growing our memory.
pub(crate) const MAX_LINE: usize = 16 << 20;

/// The time budget of one call and what it waits for, for the `Timeout` error.
#[derive(Debug, Clone)]
pub(crate) struct Deadline {
    pub at: Instant,
    pub budget: Duration,
}

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        Self {
            at: Instant::now() + budget,
            budget,
        }
    }

    /// Time left, or None once the deadline has passed.
    fn left(&self) -> Option<Duration> {
        let left = self.at.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}

/// One end of a QMP connection: the stream and the bytes read but not yet framed.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: UnixStream,
    path: PathBuf,
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no newline.
    scanned: usize,
    max_line: usize,
}

impl Conn {
    pub fn new(stream: UnixStream, path: &Path) -> Self {
        Self {
            stream,
            path: path.to_path_buf(),
            buf: Vec::new(),
            scanned: 0,
            max_line: MAX_LINE,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    pub fn set_max_line(&mut self, max: usize) {
        self.max_line = max;
    }

    /// Send one message (a newline is appended).
    pub fn send(&mut self, msg: &Value, deadline: &Deadline, what: &str) -> Result<(), QmpError> {
        let mut bytes = serde_json::to_vec(msg).map_err(|e| self.protocol(format!("{e}")))?;
        bytes.push(b'\n');
        let mut sent = 0;
        while sent < bytes.len() {
            let left = deadline
                .left()
                .ok_or_else(|| self.timeout(deadline, what))?;
            self.stream
                .set_write_timeout(Some(left))
                .map_err(|e| self.io(what, e))?;
            match self.stream.write(&bytes[sent..]) {
                Ok(0) => return Err(self.closed(what)),
                Ok(n) => sent += n,
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_closed(&e) => return Err(self.closed(what)),
                Err(e) => return Err(self.io(what, e)),
            }
        }
        Ok(())
    }

    /// The next message, which must be a JSON object. Blank lines are skipped.
    pub fn recv(
        &mut self,
        deadline: &Deadline,
        what: &str,
    ) -> Result<Map<String, Value>, QmpError> {
        loop {
            while let Some(line) = self.take_line() {
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return match serde_json::from_slice::<Value>(line) {
                    Ok(Value::Object(map)) => Ok(map),
                    Ok(other) => Err(self.protocol(format!(
                        "expected a JSON object, got {}",
                        snippet(other.to_string().as_bytes())
                    ))),
                    Err(e) => Err(self.protocol(format!("invalid JSON ({e}): {}", snippet(line)))),
                };
            }
            if self.buf.len() > self.max_line {
                return Err(self.protocol(format!(
                    "a message longer than {} bytes without a newline",
                    self.max_line
                )));
            }
            self.fill(deadline, what)?;
        }
    }

    /// Read what is available into the buffer, waiting at most until the deadline.
    fn fill(&mut self, deadline: &Deadline, what: &str) -> Result<(), QmpError> {
        let mut chunk = [0u8; 64 << 10];
        loop {
            let left = deadline
                .left()
                .ok_or_else(|| self.timeout(deadline, what))?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| self.io(what, e))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(self.closed(what)),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_closed(&e) => return Err(self.closed(what)),
                Err(e) => return Err(self.io(what, e)),
            }
        }
    }

    /// The first complete line in the buffer, newline removed.
    fn take_line(&mut self) -> Option<Vec<u8>> {
        match self.buf[self.scanned..].iter().position(|b| *b == b'\n') {
            Some(i) => {
                let end = self.scanned + i;
                let line = self.buf[..end].to_vec();
                self.buf.drain(..=end);
                self.scanned = 0;
                Some(line)
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    pub fn timeout(&self, deadline: &Deadline, what: &str) -> QmpError {
        QmpError::Timeout {
            path: self.path.clone(),
            what: what.to_owned(),
            after: deadline.budget,
        }
    }

    pub fn protocol(&self, detail: String) -> QmpError {
        QmpError::Protocol {
            path: self.path.clone(),
            detail,
        }
    }

    fn closed(&self, what: &str) -> QmpError {
        QmpError::Closed {
            path: self.path.clone(),
            what: what.to_owned(),
        }
    }

    fn io(&self, what: &str, source: io::Error) -> QmpError {
        QmpError::Io {
            path: self.path.clone(),
            what: what.to_owned(),
            source,
        }
    }
}

/// What an expired SO_RCVTIMEO / SO_SNDTIMEO looks like (EAGAIN on Linux).
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

/// The start of a message, for error texts.
pub(crate) fn snippet(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    if bytes.len() > MAX {
        format!("{text}...")
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Conn, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (Conn::new(a, Path::new("/run/test.qmp")), b)
    }

    fn soon() -> Deadline {
        Deadline::after(Duration::from_millis(200))
    }

    #[test]
    fn several_messages_in_one_read_and_blank_lines() {
        let (mut conn, mut peer) = pair();
        peer.write_all(b"{\"a\": 1}\r\n\r\n{\"b\": 2}\n{\"c\":")
            .unwrap();
        assert_eq!(conn.recv(&soon(), "x").unwrap()["a"], 1);
        assert_eq!(conn.recv(&soon(), "x").unwrap()["b"], 2);
        peer.write_all(b" 3}\r\n").unwrap();
        assert_eq!(conn.recv(&soon(), "x").unwrap()["c"], 3);
    }

    #[test]
    fn message_split_across_reads() {
        let (mut conn, mut peer) = pair();
        let writer = std::thread::spawn(move || {
            for part in [&b"{\"ret"[..], b"urn\": {\"x\"", b": [1, 2]}}\r", b"\n"] {
                peer.write_all(part).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
            peer
        });
        let msg = conn
            .recv(&Deadline::after(Duration::from_secs(5)), "x")
            .unwrap();
        assert_eq!(msg["return"]["x"][1], 2);
        writer.join().unwrap();
    }

    #[test]
    fn bad_messages_are_protocol_errors() {
        let (mut conn, mut peer) = pair();
        peer.write_all(b"[1, 2]\n{\"a\" 1}\n").unwrap();
        let err = conn.recv(&soon(), "x").unwrap_err().to_string();
        assert_eq!(
            err,
            "QMP socket /run/test.qmp: expected a JSON object, got [1,2]"
        );
        let err = conn.recv(&soon(), "x").unwrap_err().to_string();
        assert!(
            err.contains("invalid JSON") && err.ends_with("{\"a\" 1}"),
            "{err}"
        );
    }

    #[test]
    fn overlong_line_is_refused() {
        let (mut conn, mut peer) = pair();
        conn.set_max_line(100);
        peer.write_all(&[b' '; 300]).unwrap();
        let err = conn.recv(&soon(), "x").unwrap_err().to_string();
        assert!(err.contains("longer than 100 bytes"), "{err}");
    }

    /// A byte every 20 ms would reset a per-read timeout forever; the deadline holds.
    #[test]
    fn trickling_peer_times_out_at_the_deadline() {
        let (mut conn, mut peer) = pair();
        let writer = std::thread::spawn(move || {
            while peer.write_all(b" ").is_ok() {
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let started = Instant::now();
        let err = conn.recv(&soon(), "`query-status`").unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, QmpError::Timeout { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "QMP socket /run/test.qmp did not answer `query-status` within 200ms"
        );
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(1),
            "{took:?}"
        );
        drop(conn);
        writer.join().unwrap();
    }

    #[test]
    fn closed_peer() {
        let (mut conn, mut peer) = pair();
        peer.write_all(b"{\"retu").unwrap();
        drop(peer);
        let err = conn.recv(&soon(), "`quit`").unwrap_err();
        assert!(err.vanished(), "{err:?}");
        assert_eq!(
            err.to_string(),
            "QMP socket /run/test.qmp closed the connection during `quit`"
        );
        let err = conn
            .send(&serde_json::json!({}), &soon(), "`quit`")
            .unwrap_err();
        assert!(matches!(err, QmpError::Closed { .. }), "{err:?}");
    }
}
