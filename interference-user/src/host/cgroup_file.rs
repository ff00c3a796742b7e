//! Reading and writing one cgroup file, the way the kernel wants it: a value is read
//! trimmed; a value is written with one `write(2)` (cgroup files take one value per
//! write), newline-terminated as `echo` writes it (so that an empty value, a v2 cpuset
//! that inherits its parent's, is a real write), never following a symlink at the last
//! component. Where a write may go at all is [`super::guard`]'s business.

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// A cgroup file's text, trimmed.
pub fn read_value(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned())
}

/// Write `value` to the cgroup file `path` (see the module doc).
pub fn write_value(path: &Path, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(format!("{value}\n").as_bytes())
}
