//! Atomic replacement of a metrics file, for node_exporter's textfile collector.
//!
//! node_exporter may read the file at any moment, so it must only ever see a complete
//! old or a complete new version: the new contents go to `<file>.tmp.<pid>` in the same
//! directory (same filesystem, so the rename is atomic; a name not ending in `.prom`, so
//! the collector ignores it), are fsynced, and are renamed over the file. The directory
//! is fsynced too, so the rename survives a crash.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
#[error("cannot {op} {}", path.display())]
pub struct TextfileError {
    /// What failed: "create", "write", "sync", "rename", ...
    pub op: &'static str,
    /// The file the operation was about (the temporary file for create/write/sync).
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Replaces `path` with `contents` atomically (see the module doc). Creates the
/// directory if needed. On failure the temporary file is removed and `path` is unchanged.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), TextfileError> {
    fn err<'a>(op: &'static str, p: &'a Path) -> impl FnOnce(io::Error) -> TextfileError + 'a {
        move |source| TextfileError {
            op,
            path: p.to_path_buf(),
            source,
        }
    }
    let Some(file_name) = path.file_name() else {
        return Err(err("name", path)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the metrics path has no file name",
        )));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(err("create directory", dir))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);

    let result = (|| {
        let mut f = File::create(&tmp).map_err(err("create", &tmp))?;
        f.write_all(contents).map_err(err("write", &tmp))?;
        f.sync_all().map_err(err("sync", &tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(err("rename into place", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("sync directory", dir))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub/interference.prom");
        write_atomic(&path, b"a 1\n").unwrap();
        write_atomic(&path, b"a 2\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "a 2\n");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["interference.prom"]);
    }

    #[test]
    fn failure_names_the_file_and_leaves_the_old_one() {
        let tmp = tempfile::tempdir().unwrap();
        // A directory where the file should be: the rename fails.
        let path = tmp.path().join("metrics.prom");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), "x").unwrap();
        let e = write_atomic(&path, b"a 1\n").unwrap_err();
        assert!(e.to_string().contains("metrics.prom"), "{e}");
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["metrics.prom"], "no temporary left behind");
    }

    /// A reader polling the file while it is replaced sees only whole versions.
    #[test]
    fn a_reader_never_sees_a_partial_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("interference.prom");
        let a = "a 1\n".repeat(50_000);
        let b = "b 2\n".repeat(70_000);
        write_atomic(&path, a.as_bytes()).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (path, a, b, done) = (path.clone(), a.clone(), b.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !done.load(Ordering::Relaxed) {
                    let s = fs::read_to_string(&path).unwrap();
                    assert!(s == a || s == b, "partial file of {} bytes", s.len());
                    reads += 1;
                }
                reads
            })
        };
        for i in 0..100 {
            write_atomic(
                &path,
                if i % 2 == 0 {
                    b.as_bytes()
                } else {
                    a.as_bytes()
                },
            )
            .unwrap();
        }
        done.store(true, Ordering::Relaxed);
        let reads = reader.join().unwrap();
        assert!(reads > 0);
    }
}
