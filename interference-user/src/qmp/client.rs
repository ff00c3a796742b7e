//! A blocking QMP client: one connection, one command at a time, every call bounded
//! by the client's timeout.
//!
//! Blocking keeps it simple for the agent's tick loop, which asks a few questions per
//! VM per tick. A call that fails on the transport (timeout, closed, bad bytes)
//! leaves the client refusing further calls: a late reply or a half-written command
//! could otherwise pair the next question with the wrong answer. The caller drops it
//! and connects again (QEMU serves one client per socket, so the old one must go).

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tracing::{debug, warn};

use super::connect::{self, ConnectError};
use super::error::QmpError;
use super::framing::{snippet, Conn, Deadline};
use super::types::{QmpEvent, QmpGreeting};

/// Events kept for `take_events`; older ones are dropped (and counted) beyond this,
/// so a client nobody drains cannot grow without bound.
pub const MAX_EVENTS: usize = 1024;

const BUSY_HINT: &str =
    "QEMU serves one client per QMP socket: is another one, such as libvirt, connected?";

/// A connection to one QEMU's QMP socket, past the capabilities negotiation.
#[derive(Debug)]
pub struct QmpClient {
    conn: Conn,
    timeout: Duration,
    greeting: QmpGreeting,
    next_id: u64,
    events: VecDeque<QmpEvent>,
    dropped_events: u64,
    /// Why the connection can no longer be used, once it cannot.
    broken: Option<String>,
}

impl QmpClient {
    /// Connect to the socket at `path`, read QEMU's greeting and leave capabilities
    /// negotiation mode. `timeout` bounds this whole exchange, and then each later call.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let deadline = Deadline::after(timeout);
        let stream = match connect::connect(path, deadline.at) {
            Ok(stream) => stream,
            Err(ConnectError::Timeout) => {
                return Err(QmpError::Timeout {
                    path: path.to_path_buf(),
                    what: format!("our connection (its backlog is full; {BUSY_HINT})"),
                    after: timeout,
                })
            }
            Err(ConnectError::Io(source)) => {
                return Err(QmpError::Connect {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let mut conn = Conn::new(stream, path);
        let first = conn.recv(&deadline, &format!("with a greeting ({BUSY_HINT})"))?;
        let greeting = match first.get("QMP") {
            Some(Value::Object(qmp)) => QmpGreeting::from_qmp(qmp),
            _ => {
                let got = snippet(Value::Object(first).to_string().as_bytes());
                return Err(conn.protocol(format!("expected the QMP greeting, got {got}")));
            }
        };
        let mut client = Self {
            conn,
            timeout,
            greeting,
            next_id: 1,
            events: VecDeque::new(),
            dropped_events: 0,
            broken: None,
        };
        client.call("qmp_capabilities", None, &deadline)?;
        Ok(client)
    }

    /// Run `command` and return its `return` value. Events that arrive meanwhile are
    /// kept for [`take_events`](Self::take_events).
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let deadline = Deadline::after(self.timeout);
        self.call(command, arguments, &deadline)
    }

    /// The events received so far, oldest first; the buffer is emptied.
    pub fn take_events(&mut self) -> Vec<QmpEvent> {
        self.events.drain(..).collect()
    }

    /// Events dropped because more than [`MAX_EVENTS`] were waiting.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events
    }

    pub fn greeting(&self) -> &QmpGreeting {
        &self.greeting
    }

    pub fn path(&self) -> &Path {
        self.conn.path()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The time limit of each later call (a migration command may deserve more).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// A `Protocol` error for a reply that does not decode, for the typed helpers.
    pub(crate) fn bad_reply(&self, command: &str, reply: &Value, why: &str) -> QmpError {
        let got = snippet(reply.to_string().as_bytes());
        self.conn
            .protocol(format!("`{command}` returned {got}: {why}"))
    }

    /// Run several commands in one round-trip: all are sent, then the replies are
    /// read, within one timeout for the lot. QEMU answers a monitor's commands in
    /// order, so this costs one wait for the monitor instead of one per command.
    /// Each command gets its own result, in order: a command QEMU refuses (`Command`
    /// error) does not stop the others. The outer error is a transport failure,
    /// after which the client is unusable as with [`execute`](Self::execute).
    pub fn execute_pipelined(
        &mut self,
        commands: Vec<(&str, Option<Value>)>,
    ) -> Result<Vec<Result<Value, QmpError>>, QmpError> {
        let deadline = Deadline::after(self.timeout);
        self.guarded(commands, &deadline)
    }

    fn call(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        deadline: &Deadline,
    ) -> Result<Value, QmpError> {
        let mut results = self.guarded(vec![(command, arguments)], deadline)?;
        results.pop().expect("one reply per command")
    }

    /// `exchange`, refused once the connection has failed, and marking it failed
    /// when a transport error happens.
    fn guarded(
        &mut self,
        commands: Vec<(&str, Option<Value>)>,
        deadline: &Deadline,
    ) -> Result<Vec<Result<Value, QmpError>>, QmpError> {
        if let Some(why) = &self.broken {
            let names = command_names(&commands);
            return Err(self.conn.protocol(format!(
                "not sending {names}: the connection failed earlier ({why}); drop this client and connect again"
            )));
        }
        let result = self.exchange(commands, deadline);
        if let Err(e) = &result {
            if e.breaks_connection() {
                self.broken = Some(e.to_string());
            }
        }
        result
    }

    /// Send every command, then read until each has its reply.
    fn exchange(
        &mut self,
        commands: Vec<(&str, Option<Value>)>,
        deadline: &Deadline,
    ) -> Result<Vec<Result<Value, QmpError>>, QmpError> {
        let what = command_names(&commands);
        let first_id = self.next_id;
        self.next_id += commands.len() as u64;
        let names: Vec<String> = commands.iter().map(|(c, _)| (*c).to_owned()).collect();
        for (i, (command, arguments)) in commands.into_iter().enumerate() {
            let mut msg = json!({ "execute": command, "id": first_id + i as u64 });
            if let Some(args) = arguments {
                msg["arguments"] = args;
            }
            self.conn.send(&msg, deadline, &what)?;
        }
        let mut results: Vec<Option<Result<Value, QmpError>>> =
            names.iter().map(|_| None).collect();
        // QEMU answers in order; the oldest unanswered command is the one at hand.
        let mut pending = 0;
        while pending < results.len() {
            let mut reply = self.conn.recv(deadline, &what)?;
            if let Some(event) = QmpEvent::from_message(&reply) {
                self.push_event(event);
                continue;
            }
            // QEMU echoes our id; a reply without one answers a command it could not
            // parse, which can only be ours (the oldest unanswered).
            let index = match reply.get("id") {
                None => pending,
                Some(id) => match id
                    .as_u64()
                    .and_then(|n| n.checked_sub(first_id))
                    .and_then(|i| usize::try_from(i).ok())
                    .filter(|i| *i < results.len() && results[*i].is_none())
                {
                    Some(i) => i,
                    None => {
                        debug!(path = %self.path().display(), "skipping a reply to an earlier command (id {id})");
                        continue;
                    }
                },
            };
            let command = &names[index];
            let result = if let Some(ret) = reply.remove("return") {
                Ok(ret)
            } else if let Some(err) = reply.get("error") {
                let text = |k: &str| err[k].as_str().unwrap_or("(none given)").to_owned();
                Err(QmpError::Command {
                    path: self.path().to_path_buf(),
                    command: command.clone(),
                    class: text("class"),
                    desc: text("desc"),
                })
            } else {
                return Err(self.conn.protocol(unexpected(command, reply)));
            };
            results[index] = Some(result);
            while pending < results.len() && results[pending].is_some() {
                pending += 1;
            }
        }
        Ok(results.into_iter().flatten().collect())
    }

    fn push_event(&mut self, event: QmpEvent) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
            if self.dropped_events == 0 {
                warn!(
                    path = %self.path().display(),
                    "more than {MAX_EVENTS} QMP events waiting; dropping the oldest"
                );
            }
            self.dropped_events += 1;
        }
        self.events.push_back(event);
    }
}

/// "`a`" or "`a`, `b`", for error texts.
fn command_names(commands: &[(&str, Option<Value>)]) -> String {
    let names: Vec<String> = commands.iter().map(|(c, _)| format!("`{c}`")).collect();
    names.join(", ")
}

fn unexpected(command: &str, reply: Map<String, Value>) -> String {
    let got = snippet(Value::Object(reply).to_string().as_bytes());
    format!("expected the reply to `{command}`, got {got}")
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
