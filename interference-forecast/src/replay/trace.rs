//! A streaming reader of utilisation traces in the format of `../shared/traces/`
//! (docs/forecast.md, section 8; `scripts/forecast/trace.py` is the Python reader).
//!
//! A header `minute,<vm>,...`, then one row per point: the point's minute from the
//! trace's start (a Monday 00:00 of the trace's clock) and each VM's value in percent
//! of its allocated cores, an empty cell being a missing value. gzip when the file
//! starts with gzip's magic bytes (a `.gz` name). Rows are read one at a time, so a
//! month of a thousand VMs never sits in memory; every error names the file, the line
//! and, for a cell, the column.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::ReplayError;

/// One data row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based line number in the (decompressed) file.
    pub line: u64,
    pub minute: i64,
    /// One per VM column; `None` for an empty cell.
    pub values: Vec<Option<f64>>,
}

/// Reads a trace row by row.
pub struct TraceReader {
    path: PathBuf,
    lines: io::Lines<Box<dyn BufRead>>,
    line: u64,
    vms: Vec<String>,
}

impl std::fmt::Debug for TraceReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceReader")
            .field("path", &self.path)
            .field("line", &self.line)
            .field("vms", &self.vms.len())
            .finish()
    }
}

impl TraceReader {
    /// Opens a trace file (gzip or plain) and reads its header.
    pub fn open(path: &Path) -> Result<Self, ReplayError> {
        let file = File::open(path).map_err(|source| ReplayError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_reader(file, path)
    }

    /// Reads a trace from any reader; `path` names it in errors.
    pub fn from_reader(reader: impl Read + 'static, path: &Path) -> Result<Self, ReplayError> {
        let mut buffered = BufReader::new(reader);
        let gzip = buffered
            .fill_buf()
            .map(|b| b.starts_with(&[0x1f, 0x8b]))
            .map_err(|source| ReplayError::Read {
                path: path.to_path_buf(),
                line: 1,
                source,
            })?;
        let text: Box<dyn BufRead> = if gzip {
            Box::new(BufReader::new(MultiGzDecoder::new(buffered)))
        } else {
            Box::new(buffered)
        };
        let mut r = Self {
            path: path.to_path_buf(),
            lines: text.lines(),
            line: 0,
            vms: Vec::new(),
        };
        let header = r
            .next_line()?
            .ok_or_else(|| r.header_error("the file is empty"))?;
        let cells: Vec<&str> = header.trim().split(',').collect();
        if cells.first() != Some(&"minute") {
            return Err(r.header_error(&format!(
                "the first column must be `minute`, not {:?}",
                cells.first().copied().unwrap_or_default()
            )));
        }
        let vms: Vec<String> = cells[1..].iter().map(|c| c.to_string()).collect();
        if vms.is_empty() {
            return Err(r.header_error("no VM columns after `minute`"));
        }
        if let Some((i, name)) = vms
            .iter()
            .enumerate()
            .find(|(i, name)| name.is_empty() || vms[..*i].contains(name))
        {
            return Err(r.header_error(&format!(
                "column {} ({name:?}) is empty or names a VM twice",
                i + 2
            )));
        }
        r.vms = vms;
        Ok(r)
    }

    /// The VM columns, in the file's order.
    pub fn vms(&self) -> &[String] {
        &self.vms
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn header_error(&self, what: &str) -> ReplayError {
        ReplayError::Header {
            path: self.path.clone(),
            what: what.to_string(),
        }
    }

    fn next_line(&mut self) -> Result<Option<String>, ReplayError> {
        match self.lines.next() {
            None => Ok(None),
            Some(Ok(l)) => {
                self.line += 1;
                Ok(Some(l))
            }
            Some(Err(source)) => Err(ReplayError::Read {
                path: self.path.clone(),
                line: self.line + 1,
                source,
            }),
        }
    }

    /// The next data row (blank lines are skipped), `None` at the end.
    pub fn next_row(&mut self) -> Result<Option<Row>, ReplayError> {
        loop {
            let Some(text) = self.next_line()? else {
                return Ok(None);
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            return self.parse_row(text).map(Some);
        }
    }

    fn parse_row(&self, text: &str) -> Result<Row, ReplayError> {
        let cells: Vec<&str> = text.split(',').collect();
        if cells.len() != self.vms.len() + 1 {
            return Err(ReplayError::Row {
                path: self.path.clone(),
                line: self.line,
                what: format!(
                    "{} cells, the header has {}",
                    cells.len(),
                    self.vms.len() + 1
                ),
            });
        }
        let cell_error = |column: usize, what: String| ReplayError::Cell {
            path: self.path.clone(),
            line: self.line,
            column: column + 1,
            name: if column == 0 {
                "minute".to_string()
            } else {
                self.vms[column - 1].clone()
            },
            what,
        };
        let minute_text = cells[0].trim();
        let minute = match minute_text.parse::<i64>() {
            Ok(m) => m,
            Err(_) => match minute_text.parse::<f64>() {
                Ok(m) if m.is_finite() && m.fract() == 0.0 && m.abs() < 9e15 => m as i64,
                _ => {
                    return Err(cell_error(
                        0,
                        format!("{minute_text:?} is not a whole number of minutes"),
                    ))
                }
            },
        };
        let mut values = Vec::with_capacity(self.vms.len());
        for (i, cell) in cells[1..].iter().enumerate() {
            let cell = cell.trim();
            if cell.is_empty() {
                values.push(None);
                continue;
            }
            match cell.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => values.push(Some(v)),
                Ok(v) => {
                    return Err(cell_error(
                        i + 1,
                        format!("{v} is not a utilisation (a finite percentage >= 0)"),
                    ))
                }
                Err(_) => return Err(cell_error(i + 1, format!("{cell:?} is not a number"))),
            }
        }
        Ok(Row {
            line: self.line,
            minute,
            values,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn reader(text: &str) -> Result<TraceReader, ReplayError> {
        TraceReader::from_reader(
            io::Cursor::new(text.as_bytes().to_vec()),
            Path::new("t.csv"),
        )
    }

    #[test]
    fn rows_with_missing_cells() {
        let mut r = reader("minute,a,b\n0,1.5,\n\n5,,2\n").expect("valid");
        assert_eq!(r.vms(), ["a", "b"]);
        let row = r.next_row().expect("ok").expect("row");
        assert_eq!(
            (row.line, row.minute, row.values.clone()),
            (2, 0, vec![Some(1.5), None])
        );
        let row = r.next_row().expect("ok").expect("row");
        assert_eq!((row.line, row.minute), (4, 5));
        assert!(r.next_row().expect("ok").is_none());
    }

    #[test]
    fn gzip_is_detected_by_its_magic() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"minute,a\n0,3\n").expect("gzip");
        let bytes = gz.finish().expect("gzip");
        let mut r =
            TraceReader::from_reader(io::Cursor::new(bytes), Path::new("t.csv.gz")).expect("valid");
        assert_eq!(
            r.next_row().expect("ok").expect("row").values,
            vec![Some(3.0)]
        );
    }

    #[test]
    fn bad_header_and_cells_are_named() {
        let e = reader("time,a\n").unwrap_err().to_string();
        assert!(e.contains("t.csv") && e.contains("`minute`"), "{e}");
        let e = reader("minute,a,a\n").unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
        let e = reader("").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let mut r = reader("minute,a,b\n0,1,x\n").expect("header ok");
        let e = r.next_row().unwrap_err().to_string();
        assert!(
            e.contains("t.csv:2")
                && e.contains("column 3")
                && e.contains("\"b\"")
                && e.contains("\"x\""),
            "{e}"
        );
        let mut r = reader("minute,a\n0,-1\n").expect("header ok");
        assert!(r.next_row().unwrap_err().to_string().contains("-1"));
        let mut r = reader("minute,a\n0.5,1\n").expect("header ok");
        assert!(r.next_row().unwrap_err().to_string().contains("minute"));
        let mut r = reader("minute,a\n0,1,2\n").expect("header ok");
        assert!(r.next_row().unwrap_err().to_string().contains("3 cells"));
    }
}
