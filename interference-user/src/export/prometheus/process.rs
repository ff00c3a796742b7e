//! The agent's own footprint, under the names Prometheus' client libraries give it
//! (`process_resident_memory_bytes`, `process_open_fds`), so an operator's usual
//! dashboards and alerts work, and a soak sees a leak as it grows.

use super::text::TextWriter;

/// Resident memory of this process, bytes (`/proc/self/statm`, pages × page size).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// File descriptors this process holds open (`/proc/self/fd`; the listing's own
/// descriptor is not counted).
pub fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(entries.count().saturating_sub(1) as u64)
}

/// Adds both families; one that cannot be read this tick is left out.
pub fn render_process(w: &mut TextWriter) {
    if let Some(rss) = resident_memory_bytes() {
        w.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )
        .sample(&[], rss);
    }
    if let Some(fds) = open_fds() {
        w.gauge("process_open_fds", "Number of open file descriptors.")
            .sample(&[], fds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifty_more_open_files_are_counted() {
        let before = open_fds().expect("fds");
        let files: Vec<std::fs::File> = (0..50)
            .map(|_| std::fs::File::open("/proc/self/statm").expect("open"))
            .collect();
        // Other tests run on other threads of this process and open files too: a
        // margin, not an exact count.
        let during = open_fds().expect("fds");
        drop(files);
        assert!(during >= before + 40, "{before} -> {during}");
    }

    #[test]
    fn resident_memory_agrees_with_the_status_file() {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS");
        let rss = resident_memory_bytes().expect("rss");
        let diff = rss.abs_diff(kib * 1024);
        assert!(diff <= kib * 1024 / 10, "statm {rss} B, status {kib} KiB");
    }
}
