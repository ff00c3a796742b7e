//! Connecting to a unix socket within a time limit, which std cannot do.
//!
//! A blocking `connect(2)` to a unix socket whose listen backlog is full waits until
//! the listener accepts. That is QEMU's normal state while another client (libvirt,
//! an operator's `socat`) holds the monitor: QEMU serves one client per QMP socket
//! and listens with a backlog of one. Linux bounds that wait by the socket's send
//! timeout (SO_SNDTIMEO), so we create the socket ourselves, set the timeout, then
//! connect; the kernel answers EAGAIN when it expires.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Instant;

/// How a bounded connect failed.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The backlog stayed full until the deadline.
    Timeout,
    Io(io::Error),
}

/// A connected stream to the unix socket at `path`, or `Timeout` once `deadline`
/// passes while the listener's backlog is full.
pub(crate) fn connect(path: &Path, deadline: Instant) -> Result<UnixStream, ConnectError> {
    let (addr, len) = sockaddr(path).map_err(ConnectError::Io)?;
    // SAFETY: socket(2) takes no pointers; a negative result is checked below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(ConnectError::Io(io::Error::last_os_error()));
    }
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    let stream = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnectError::Timeout);
        }
        stream
            .set_write_timeout(Some(left))
            .map_err(ConnectError::Io)?;
        // SAFETY: `addr` is an initialised sockaddr_un of which `len` bytes are used,
        // and it outlives the call.
        let rc = unsafe {
            libc::connect(
                stream.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast::<libc::sockaddr>(),
                len,
            )
        };
        if rc == 0 {
            return Ok(stream);
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            // A signal cut the wait short: the socket is still unconnected, try again.
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Err(ConnectError::Timeout),
            _ => return Err(ConnectError::Io(err)),
        }
    }
}

/// `path` as a sockaddr_un and the length to pass to connect(2).
fn sockaddr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain old data for which all zero bytes are valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    // One byte stays for the terminating NUL.
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a unix socket path has at most {} bytes, this one has {}",
                addr.sun_path.len() - 1,
                bytes.len()
            ),
        ));
    }
    if bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a unix socket path cannot contain a NUL byte",
        ));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    // At most sizeof(sockaddr_un), checked above: the cast cannot truncate.
    Ok((addr, len as libc::socklen_t))
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;
    use std::time::Duration;

    use super::*;

    #[test]
    fn connects_and_reports_missing_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let deadline = Instant::now() + Duration::from_secs(5);
        match connect(&path, deadline) {
            Err(ConnectError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
        let _listener = UnixListener::bind(&path).unwrap();
        connect(&path, deadline).unwrap();
    }

    /// QEMU's state while another client holds the monitor: the backlog is full and
    /// nobody accepts. The connect must give up at the deadline, not hang.
    #[test]
    fn full_backlog_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = UnixListener::bind(&path).unwrap();
        // SAFETY: listen(2) on a socket we own; a backlog of 0 lets one connection
        // wait, the next one blocks.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        let soon = || Instant::now() + Duration::from_millis(200);
        let mut pending = Vec::new();
        let started = Instant::now();
        let outcome = loop {
            match connect(&path, soon()) {
                Ok(s) => pending.push(s),
                Err(e) => break e,
            }
            assert!(pending.len() < 8, "the backlog never filled");
        };
        assert!(matches!(outcome, ConnectError::Timeout), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn rejects_paths_that_do_not_fit() {
        let long = Path::new("/tmp").join("x".repeat(120));
        let deadline = Instant::now() + Duration::from_secs(1);
        match connect(&long, deadline) {
            Err(ConnectError::Io(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
                assert!(e.to_string().contains("at most 107 bytes"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
}
