//! `interference forecast --replay`: a trace through the agent's own forecaster
//! (docs/forecast.md, section 8; `scripts/forecast/replay.py` is the reference).
//!
//! One round per trace row, exactly as the agent at the end of a step, on the trace's
//! own clock (its minute 0 a Monday 00:00, its step the model's): each VM's value is
//! recorded as the step's only tick, the step is closed in the same [`RollupStore`]
//! (an empty cell is a step without a tick: forward fill; before a VM's first value it
//! does not exist), every existing VM is forecast in one batch by the same
//! [`Forecaster`], and one JSONL line is printed per VM per horizon:
//! `{"vm", "minute", "horizon_min", "forecast"}`, `minute` being the target's.
//!
//! One known difference from `replay.py`: a VM whose cells stay empty for more than
//! `HISTORY_STEPS` (2040) rows is dropped and starts again at its next value, as the
//! contract's section 3 says and the agent does; `replay.py` forward-fills it forever.
//! No trace in the repository has such a gap (the golden one's is 30 rows).
//!
//! Streaming: rows are read, forecast and written one at a time. An error in the file
//! stops the replay with the file, line and column named; the lines of the rows before
//! it have been written.

pub mod jsonl;
pub mod trace;

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use thiserror::Error;

use crate::clock::{Clock, ClockError};
use crate::forecaster::Forecaster;
use crate::horizon::{Horizon, HorizonError, SubStep};
use crate::model::RunError;
use crate::rollup::RollupStore;
use trace::{Row, TraceReader};

/// Minutes per day on a trace's clock.
const DAY_MINUTES: i64 = 1440;

/// Errors name the trace (and line, column); the cause is the error's source, so print
/// the chain (`{:#}` with anyhow).
#[derive(Debug, Error)]
pub enum ReplayError {
    #[error("cannot open trace {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read trace {}:{line}", path.display())]
    Read {
        path: PathBuf,
        line: u64,
        #[source]
        source: io::Error,
    },
    #[error("trace {}: header: {what}", path.display())]
    Header { path: PathBuf, what: String },
    #[error("trace {}:{line}: {what}", path.display())]
    Row {
        path: PathBuf,
        line: u64,
        what: String,
    },
    #[error("trace {}:{line}, column {column} ({name:?}): {what}", path.display())]
    Cell {
        path: PathBuf,
        line: u64,
        /// 1-based, `minute` being column 1.
        column: usize,
        name: String,
        what: String,
    },
    #[error("trace {}: {what}", path.display())]
    Step { path: PathBuf, what: String },
    #[error("trace {}", path.display())]
    Horizon {
        path: PathBuf,
        #[source]
        source: HorizonError,
    },
    #[error("trace {}:{line}: the model's run failed", path.display())]
    Model {
        path: PathBuf,
        line: u64,
        #[source]
        source: RunError,
    },
    #[error("cannot write the replay's output")]
    Write(#[source] io::Error),
}

impl ReplayError {
    /// A write to a closed pipe (`... | head`): the CLI treats it as success.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, ReplayError::Write(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub rows: u64,
    pub vms: usize,
    pub lines: u64,
    /// The trace's step, in minutes.
    pub step_minutes: i64,
}

/// Replays the trace at `path` (CSV, gzip or not) through `forecaster`, writing JSONL
/// lines for `horizons` to `out`.
pub fn replay_file(
    path: &Path,
    horizons: &[Horizon],
    forecaster: &mut Forecaster,
    out: &mut dyn Write,
) -> Result<ReplaySummary, ReplayError> {
    let reader = TraceReader::open(path)?;
    replay(reader, horizons, forecaster, out)
}

/// Replays an opened trace (see the module comment).
pub fn replay(
    mut reader: TraceReader,
    horizons: &[Horizon],
    forecaster: &mut Forecaster,
    out: &mut dyn Write,
) -> Result<ReplaySummary, ReplayError> {
    let path = reader.path().to_path_buf();
    let Some(first) = reader.next_row()? else {
        return Err(ReplayError::Step {
            path,
            what: "no rows: the step cannot be told".to_string(),
        });
    };
    let second = reader.next_row()?;
    let step_minutes = match &second {
        Some(s) => s.minute - first.minute,
        None => {
            return Err(ReplayError::Step {
                path,
                what: "a single row: the step cannot be told from it".to_string(),
            })
        }
    };
    let clock = trace_clock(&path, step_minutes, first.minute)?;
    let columns: Vec<(usize, i64)> = horizons
        .iter()
        .map(|h| {
            let column =
                h.column(clock.step(), SubStep::Refuse)
                    .map_err(|source| ReplayError::Horizon {
                        path: path.clone(),
                        source,
                    })?;
            Ok((column, (column as i64 + 1) * step_minutes))
        })
        .collect::<Result<_, ReplayError>>()?;

    let vms = reader.vms().to_vec();
    let mut state = Replayer {
        path,
        vms,
        columns,
        step_minutes,
        previous_minute: None,
        store: RollupStore::in_memory(&clock),
        out: BufWriter::with_capacity(1 << 16, out),
        text: String::new(),
        summary: ReplaySummary {
            step_minutes,
            ..ReplaySummary::default()
        },
    };
    state.row(&first, forecaster)?;
    if let Some(second) = second {
        state.row(&second, forecaster)?;
    }
    while let Some(row) = reader.next_row()? {
        state.row(&row, forecaster)?;
    }
    state.out.flush().map_err(ReplayError::Write)?;
    state.summary.vms = state.store.len();
    Ok(state.summary)
}

/// The trace's clock: steps of `step_minutes`, which must make the model's day, and
/// minute 0 at the origin.
fn trace_clock(path: &Path, step_minutes: i64, first_minute: i64) -> Result<Clock, ReplayError> {
    let step_error = |what: String| ReplayError::Step {
        path: path.to_path_buf(),
        what,
    };
    if step_minutes <= 0 {
        return Err(step_error(format!(
            "minutes must increase: the first two rows are {step_minutes} min apart"
        )));
    }
    if first_minute.rem_euclid(step_minutes) != 0 {
        return Err(step_error(format!(
            "the first minute {first_minute} is not a multiple of the step of {step_minutes} min"
        )));
    }
    Clock::new(
        Duration::from_secs(step_minutes as u64 * 60),
        Duration::from_secs(DAY_MINUTES as u64 * 60),
        UNIX_EPOCH,
        crate::contract::DAY_STEPS,
    )
    .map_err(|e: ClockError| {
        step_error(format!(
            "the trace's step is {step_minutes} min: a day of {DAY_MINUTES} min is not the \
             model's {} steps ({e})",
            crate::contract::DAY_STEPS
        ))
    })
}

/// The replay's running state.
struct Replayer<'w> {
    path: PathBuf,
    vms: Vec<String>,
    /// Output column and horizon in minutes, in the `--horizon` order.
    columns: Vec<(usize, i64)>,
    step_minutes: i64,
    previous_minute: Option<i64>,
    store: RollupStore,
    out: BufWriter<&'w mut dyn Write>,
    text: String,
    summary: ReplaySummary,
}

impl Replayer<'_> {
    fn row(&mut self, row: &Row, forecaster: &mut Forecaster) -> Result<(), ReplayError> {
        if let Some(prev) = self.previous_minute {
            if row.minute - prev != self.step_minutes {
                return Err(ReplayError::Row {
                    path: self.path.clone(),
                    line: row.line,
                    what: format!(
                        "minute {} follows minute {prev}: minutes must increase by the trace's \
                         step of {} min",
                        row.minute, self.step_minutes
                    ),
                });
            }
        }
        self.previous_minute = Some(row.minute);
        let step = row.minute.div_euclid(self.step_minutes);
        for (vm, value) in self.vms.iter().zip(&row.values) {
            if let Some(v) = value {
                self.store.record(vm, step, *v);
            }
        }
        self.store.close_step(step);
        let store = &self.store;
        let born = self
            .vms
            .iter()
            .map(String::as_str)
            .filter(|vm| store.get(vm).is_some());
        let round = forecaster.round(store, step, born);
        if let Some(source) = round.run_error {
            return Err(ReplayError::Model {
                path: self.path.clone(),
                line: row.line,
                source,
            });
        }
        self.text.clear();
        for f in &round.forecasts {
            for &(column, horizon_min) in &self.columns {
                // As the reference: null where L + S * out is not finite.
                let value = match &f.scaled_output {
                    Some(out) => {
                        let x = f.level + f.scale * f64::from(out[column]);
                        x.is_finite().then_some(x.max(0.0))
                    }
                    None => Some(f.at(column)),
                };
                jsonl::push_line(
                    &mut self.text,
                    &f.vm,
                    row.minute + horizon_min,
                    horizon_min,
                    value,
                );
                self.summary.lines += 1;
            }
        }
        self.out
            .write_all(self.text.as_bytes())
            .map_err(ReplayError::Write)?;
        self.summary.rows += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn run(text: &str, horizons: &str) -> Result<String, ReplayError> {
        let reader =
            TraceReader::from_reader(Cursor::new(text.as_bytes().to_vec()), Path::new("t.csv"))?;
        let horizons = crate::horizon::parse_list(horizons).expect("horizons");
        let mut out = Vec::new();
        let mut f = Forecaster::without_model();
        replay(reader, &horizons, &mut f, &mut out)?;
        Ok(String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn lines_in_row_then_column_then_horizon_order_from_birth_on() {
        let out = run("minute,a,b\n0,1,\n5,3,2\n10,,4\n", "1h,5m").expect("replay");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2 + 4 + 4);
        assert_eq!(
            lines[0],
            "{\"vm\": \"a\", \"minute\": 60, \"horizon_min\": 60, \"forecast\": 1.0}"
        );
        assert!(lines[1].contains("\"minute\": 5, \"horizon_min\": 5"));
        assert!(lines[2].starts_with("{\"vm\": \"a\", \"minute\": 65"));
        assert!(lines[4].starts_with("{\"vm\": \"b\", \"minute\": 65"));
        // Row 10: a is forward-filled (3), its level the median of 1, 3, 3.
        assert_eq!(
            lines[6],
            "{\"vm\": \"a\", \"minute\": 70, \"horizon_min\": 60, \"forecast\": 3.0}"
        );
    }

    /// The error and its sources, as the CLI prints them.
    fn chain(e: &ReplayError) -> String {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text += &format!(": {s}");
            source = s.source();
        }
        text
    }

    #[test]
    fn a_wrong_step_or_horizon_is_refused() {
        let e = run("minute,a\n0,1\n1,1\n", "5m").unwrap_err().to_string();
        assert!(e.contains("1 min") && e.contains("288"), "{e}");
        let e = chain(&run("minute,a\n0,1\n5,1\n", "7m").unwrap_err());
        assert!(e.contains("7m") && e.contains("t.csv"), "{e}");
        let e = chain(&run("minute,a\n0,1\n5,1\n", "30s").unwrap_err());
        assert!(e.contains("30s"), "{e}");
        let e = run("minute,a\n0,1\n", "5m").unwrap_err().to_string();
        assert!(e.contains("single row"), "{e}");
        let e = run("minute,a\n3,1\n8,1\n", "5m").unwrap_err().to_string();
        assert!(e.contains("multiple"), "{e}");
    }

    #[test]
    fn non_monotonic_minutes_name_the_line() {
        let e = run("minute,a\n0,1\n5,1\n10,1\n10,1\n", "5m")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.csv:5") && e.contains("minute 10 follows minute 10"),
            "{e}"
        );
        let e = run("minute,a\n5,1\n0,1\n", "5m").unwrap_err().to_string();
        assert!(e.contains("increase"), "{e}");
    }
}
