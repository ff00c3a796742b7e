//! JSONL sample files: one [`VmSample`] per line, appended every tick.
//!
//! This is the raw record (docs/samples.md): features for training and replay are
//! recomputed from it, so it holds deltas exactly as the collector produced them. Each
//! tick's lines are flushed before `write_all` returns, so a reader following the file
//! sees whole ticks. A line cut short by a crash is closed with a newline when the file
//! is opened again, so it stays one undecodable line instead of spoiling the next one;
//! [`SampleReader`] reports it with its line number and the caller may skip it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::telemetry::VmSample;

#[derive(Debug, Error)]
pub enum SampleFileError {
    #[error("cannot {op} sample file {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}:{line}: not a sample", path.display())]
    Decode {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode a sample of VM {vm} for {}", path.display())]
    Encode {
        vm: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SampleFileError + 'a {
    move |source| SampleFileError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Appends samples to a JSONL file.
pub struct SampleWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl SampleWriter {
    /// Opens `path` for appending, creating it and its directory as needed.
    pub fn open(path: &Path) -> Result<Self, SampleFileError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_err("create the directory of", path))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(io_err("open", path))?;
        if ends_mid_line(&mut file).map_err(io_err("read", path))? {
            file.write_all(b"\n")
                .map_err(io_err("repair the last line of", path))?;
        }
        Ok(SampleWriter {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one tick's samples, one line each, and flushes them to the file.
    pub fn write_all(&mut self, samples: &[VmSample]) -> Result<(), SampleFileError> {
        for s in samples {
            serde_json::to_writer(&mut self.out, s).map_err(|source| {
                if source.is_io() {
                    SampleFileError::Io {
                        op: "write",
                        path: self.path.clone(),
                        source: source.into(),
                    }
                } else {
                    SampleFileError::Encode {
                        vm: s.vm.clone(),
                        path: self.path.clone(),
                        source,
                    }
                }
            })?;
            self.out
                .write_all(b"\n")
                .map_err(io_err("write", &self.path))?;
        }
        self.out.flush().map_err(io_err("write", &self.path))
    }
}

/// True when the file is not empty and its last byte is not a newline.
fn ends_mid_line(file: &mut File) -> io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// Reads a JSONL sample file line by line; empty lines are skipped.
pub struct SampleReader {
    path: PathBuf,
    lines: io::Lines<BufReader<File>>,
    line: usize,
}

impl SampleReader {
    pub fn open(path: &Path) -> Result<Self, SampleFileError> {
        let file = File::open(path).map_err(io_err("open", path))?;
        Ok(SampleReader {
            path: path.to_path_buf(),
            lines: BufReader::new(file).lines(),
            line: 0,
        })
    }
}

impl Iterator for SampleReader {
    type Item = Result<VmSample, SampleFileError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let text = match self.lines.next()? {
                Ok(t) => t,
                Err(e) => return Some(Err(io_err("read", &self.path)(e))),
            };
            self.line += 1;
            if text.trim().is_empty() {
                continue;
            }
            return Some(
                serde_json::from_str(&text).map_err(|source| SampleFileError::Decode {
                    path: self.path.clone(),
                    line: self.line,
                    source,
                }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Priority;
    use crate::telemetry::*;

    fn sample(vm: &str, ts: u64) -> VmSample {
        VmSample {
            schema: SAMPLE_SCHEMA,
            timestamp_ms: ts,
            interval_seconds: 5.0,
            host: "kvm-1".into(),
            vm: vm.into(),
            uuid: None,
            customer: Some("acme".into()),
            workload: Some("web".into()),
            priority: Priority::Low,
            runqueue: Latency {
                waits: 3,
                wait_seconds: 0.001,
                max_seconds: 0.0005,
                preemptions: 1,
                preempted_seconds: 0.0002,
                histogram: vec![0, 1, 2],
            },
            vcpus: vec![VcpuSample {
                vcpu: 1,
                tid: 99,
                latency: Latency::default(),
            }],
            other_threads: Latency::default(),
            preempted_by: vec![Preemption {
                by: "host".into(),
                count: 1,
                seconds: 0.0002,
            }],
            block_io: Some(BlockIo::default()),
            cpu: Some(CpuUsage {
                usage_seconds: 0.1,
                ..Default::default()
            }),
            memory: None,
            psi: Some(Psi::default()),
            llc: None,
            threads: 4,
            cpus: Some(vec![0, 1]),
        }
    }

    #[test]
    fn round_trip_across_ticks_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("new/dir/samples.jsonl");
        let first = [sample("a", 1), sample("b", 1)];
        let mut w = SampleWriter::open(&path).unwrap();
        w.write_all(&first).unwrap();
        // Flushed: visible before the writer is dropped.
        let read: Vec<VmSample> = SampleReader::open(&path)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(read, first);
        drop(w);
        let mut w = SampleWriter::open(&path).unwrap();
        w.write_all(&[sample("a", 2)]).unwrap();
        let read: Vec<VmSample> = SampleReader::open(&path)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(read.len(), 3);
        assert_eq!(read[2], sample("a", 2));
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "one sample per line");
    }

    #[test]
    fn a_torn_last_line_is_isolated_on_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("samples.jsonl");
        let line = serde_json::to_string(&sample("a", 1)).unwrap();
        fs::write(&path, format!("{line}\n{}", &line[..20])).unwrap();
        SampleWriter::open(&path)
            .unwrap()
            .write_all(&[sample("b", 2)])
            .unwrap();
        let read: Vec<_> = SampleReader::open(&path).unwrap().collect();
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].as_ref().unwrap().vm, "a");
        let err = read[1].as_ref().unwrap_err();
        assert!(err.to_string().contains("samples.jsonl:2"), "{err}");
        assert_eq!(read[2].as_ref().unwrap().vm, "b");
    }

    #[test]
    fn errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let blocker = tmp.path().join("file");
        fs::write(&blocker, "").unwrap();
        let path = blocker.join("samples.jsonl");
        let err = SampleWriter::open(&path).err().unwrap();
        assert!(err.to_string().contains("samples.jsonl"), "{err}");
        let err = SampleReader::open(&tmp.path().join("missing.jsonl"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("missing.jsonl"), "{err}");
    }
}
