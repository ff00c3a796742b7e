//! Reading small kernel files (cgroupfs, procfs) cheaply: the agent reads about two
//! thousand of them a tick on a host of 64 VMs with v1 hierarchies.
//!
//! `std::fs::read_to_string` costs an `open` (a walk of the whole path), `statx` and
//! `lseek` to size its buffer (these files say they are empty), and reads that start
//! at 32 bytes; on a cgroup's `tasks` file every read walks the cgroup's tasks again.
//! Here a directory is opened once and its files relative to it, and every file is
//! read through one reused buffer of at least 4 KiB: `open`, `read`, `read` (0: the
//! end) and `close`.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `path` opened as a directory to open files relative to (symlinks followed, as a
/// path read would).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The whole file `name` in the directory `dir`, read through `buf` (kept for the
/// next file), as text. Not UTF-8 is an error (`InvalidData`), as for
/// `read_to_string`.
pub fn read_at(dir: &OwnedFd, name: &str, buf: &mut Vec<u8>) -> io::Result<String> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `dir` is an open descriptor and `c` a NUL-terminated string, both
    // outliving the call.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    read_to_end(unsafe { OwnedFd::from_raw_fd(fd) }, buf)
}

/// Everything left in `fd`, through `buf`, as text.
fn read_to_end(fd: OwnedFd, buf: &mut Vec<u8>) -> io::Result<String> {
    let mut file = std::fs::File::from(fd);
    buf.clear();
    // Read until end of file: a short read of a seq_file is not the end.
    loop {
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(buf.capacity().max(4096));
        }
        let len = buf.len();
        let spare = buf.capacity() - len;
        buf.resize(len + spare, 0);
        match file.read(&mut buf[len..]) {
            Ok(0) => {
                buf.truncate(len);
                break;
            }
            Ok(n) => buf.truncate(len + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(len),
            Err(e) => {
                buf.truncate(len);
                return Err(e);
            }
        }
    }
    String::from_utf8(buf.clone()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The whole file at `path`, read through `buf` (see [`read_at`]).
pub fn read_file(path: &Path, buf: &mut Vec<u8>) -> io::Result<String> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    read_to_end(unsafe { OwnedFd::from_raw_fd(fd) }, buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_whole_files_of_any_size_relative_to_a_directory_and_says_what_failed() {
        let dir = tempfile::tempdir().unwrap();
        let big: String = (0..3000).map(|i| format!("{i}\n")).collect();
        std::fs::write(dir.path().join("big"), &big).unwrap();
        std::fs::write(dir.path().join("small"), "12\n").unwrap();
        std::fs::write(dir.path().join("empty"), "").unwrap();
        std::fs::write(dir.path().join("binary"), [0xff, 0xfe]).unwrap();
        std::os::unix::fs::symlink(dir.path().join("small"), dir.path().join("link")).unwrap();
        let fd = open_dir(dir.path()).unwrap();
        let mut buf = Vec::new();
        assert_eq!(read_at(&fd, "big", &mut buf).unwrap(), big);
        assert_eq!(read_at(&fd, "small", &mut buf).unwrap(), "12\n");
        assert_eq!(read_at(&fd, "empty", &mut buf).unwrap(), "");
        assert_eq!(
            read_at(&fd, "missing", &mut buf).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            read_at(&fd, "binary", &mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // Never through a symlink at the last component.
        assert_eq!(
            read_at(&fd, "link", &mut buf).unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
        assert_eq!(read_file(&dir.path().join("big"), &mut buf).unwrap(), big);
        assert_eq!(
            read_file(&dir.path().join("link"), &mut buf).unwrap(),
            "12\n"
        );
        assert_eq!(
            open_dir(&dir.path().join("small"))
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENOTDIR)
        );
        // A kernel file that says it is empty and is not.
        assert!(read_file(Path::new("/proc/self/status"), &mut buf)
            .unwrap()
            .contains("Pid:"));
    }
}
