//! Append-only JSONL files that survive a crash, shared by the enforcement journal and
//! the billing ledger: one writer at a time (an exclusive `flock`), whole lines
//! appended with one `write(2)` and synced, so a crash can only tear the last line,
//! which the next writer cuts off.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd as _;

/// Take an exclusive, non-blocking lock on `file` (held until it is closed).
/// `ErrorKind::WouldBlock` when another process holds it.
pub fn lock_exclusive(file: &File) -> io::Result<()> {
    // SAFETY: flock only reads the descriptor number, which `file` keeps open.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a lock error means another process holds the lock.
pub fn is_locked(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EWOULDBLOCK)
}

/// The length of `bytes` up to and including its last newline.
pub fn complete_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
}

/// Cut a torn last line off `file`, whose content is `bytes`; returns the length of
/// the complete lines, and how many bytes were cut (0: nothing was torn).
pub fn cut_torn_tail(file: &File, bytes: &[u8]) -> io::Result<(usize, usize)> {
    let good = complete_len(bytes);
    if good < bytes.len() {
        file.set_len(good as u64)?;
        file.sync_all()?;
    }
    Ok((good, bytes.len() - good))
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Seek as _};

    use super::*;

    #[test]
    fn a_torn_tail_is_cut_and_a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":").unwrap();
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        lock_exclusive(&f).unwrap();
        let other = File::open(&path).unwrap();
        assert!(is_locked(&lock_exclusive(&other).unwrap_err()));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(cut_torn_tail(&f, &bytes).unwrap(), (8, 5));
        let mut text = String::new();
        f.rewind().unwrap();
        f.read_to_string(&mut text).unwrap();
        assert_eq!(text, "{\"a\":1}\n");
        assert_eq!(cut_torn_tail(&f, text.as_bytes()).unwrap(), (8, 0));
    }
}
