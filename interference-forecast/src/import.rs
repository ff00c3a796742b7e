//! History from elsewhere into the agent's rollups: a utilisation trace (the format of
//! `../shared/traces/`, docs/forecast.md section 8) becomes each VM's rollup, so that
//! the forecaster starts with yesterday and last week instead of waiting a week for
//! them. An operator exports the last days of their monitoring per VM; the lab seeds a
//! trace-replaying neighbour with the trace's own past.
//!
//! Placement: **one row is one step of the host's clock**, and the last row lands on
//! `last_step` (the caller picks it: usually the last step that has ended). Earlier rows
//! are placed by their minute, `(minute_last - minute) / trace_step` steps before it,
//! so a gap in the minutes is a gap in the rollup (forward fill, as in the agent). Only
//! the last `HISTORY_STEPS` rows can matter and only they are kept while reading. An
//! empty cell is a step without a value; a VM's first value starts its rollup. Every
//! imported VM replaces the store's rollup of the same name; the store's other VMs are
//! kept as they are.

use std::collections::VecDeque;
use std::path::PathBuf;

use thiserror::Error;

use crate::contract::HISTORY_STEPS;
use crate::replay::trace::{Row, TraceReader};
use crate::replay::ReplayError;
use crate::rollup::{RollupStore, VmRollup};

#[derive(Debug, Error)]
pub enum ImportError {
    #[error(transparent)]
    Trace(#[from] ReplayError),
    #[error("trace {}: no data rows: nothing to import", path.display())]
    Empty { path: PathBuf },
    #[error(
        "trace {}:{line}: minute {minute} is not a whole number of the trace's \
         {step_minutes}-minute steps after the previous row's minute {previous_minute} \
         (minutes must increase by the step, the first two rows' difference)",
        path.display()
    )]
    Uneven {
        path: PathBuf,
        line: u64,
        minute: i64,
        previous_minute: i64,
        step_minutes: i64,
    },
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Rows read, and rows within the rollups' reach (the last `HISTORY_STEPS`).
    pub rows: u64,
    pub rows_kept: usize,
    /// The trace's step, in minutes (1 when the trace has a single row).
    pub step_minutes: i64,
    /// The last row's minute, and the host step it landed on.
    pub last_minute: i64,
    pub last_step: i64,
    /// VMs imported (with at least one value), by name; those that replaced a rollup
    /// the store already had.
    pub imported: Vec<String>,
    pub replaced: Vec<String>,
    /// VMs of the trace without a single value in the kept rows.
    pub without_values: Vec<String>,
}

/// Reads the whole trace and writes its VMs' rollups into `store`, the last row on
/// `last_step` (see the module comment). The store is not saved: the caller does.
pub fn import_trace(
    mut reader: TraceReader,
    store: &mut RollupStore,
    last_step: i64,
) -> Result<ImportSummary, ImportError> {
    let path = reader.path().to_path_buf();
    let mut kept: VecDeque<Row> = VecDeque::with_capacity(HISTORY_STEPS + 1);
    let mut rows = 0u64;
    let mut step_minutes: Option<i64> = None;
    while let Some(row) = reader.next_row()? {
        rows += 1;
        if let Some(prev) = kept.back() {
            let gap = row.minute - prev.minute;
            let step = *step_minutes.get_or_insert(gap);
            if gap <= 0 || step <= 0 || gap % step != 0 {
                return Err(ImportError::Uneven {
                    path,
                    line: row.line,
                    minute: row.minute,
                    previous_minute: prev.minute,
                    step_minutes: step,
                });
            }
        }
        kept.push_back(row);
        if kept.len() > HISTORY_STEPS {
            kept.pop_front();
        }
    }
    let Some(last) = kept.back() else {
        return Err(ImportError::Empty { path });
    };
    let last_minute = last.minute;
    let step_minutes = step_minutes.unwrap_or(1);
    let vms = reader.vms().to_vec();
    let mut summary = ImportSummary {
        rows,
        rows_kept: kept.len(),
        step_minutes,
        last_minute,
        last_step,
        imported: Vec::new(),
        replaced: Vec::new(),
        without_values: Vec::new(),
    };
    for (column, vm) in vms.iter().enumerate() {
        let mut rollup: Option<VmRollup> = None;
        for row in &kept {
            let step = last_step - (last_minute - row.minute) / step_minutes;
            let value = row.values[column].map(|v| v as f32);
            match (&mut rollup, value) {
                (Some(r), v) => {
                    r.push_step(step, v);
                }
                (None, Some(v)) => rollup = Some(VmRollup::new(step, v)),
                (None, None) => {}
            }
        }
        let Some(mut rollup) = rollup else {
            summary.without_values.push(vm.clone());
            continue;
        };
        // A VM whose last cells are empty is filled up to the last row, as the agent
        // fills a step without a tick.
        rollup.push_step(last_step, None);
        if store.insert(vm, rollup) {
            summary.replaced.push(vm.clone());
        }
        summary.imported.push(vm.clone());
    }
    store.mark_closed(last_step);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::clock::Clock;

    fn clock() -> Clock {
        Clock::new(
            Duration::from_secs(2),
            Duration::from_secs(576),
            UNIX_EPOCH,
            288,
        )
        .expect("clock")
    }

    fn reader(text: &str) -> TraceReader {
        TraceReader::from_reader(std::io::Cursor::new(text.to_string()), Path::new("t.csv"))
            .expect("header")
    }

    fn values(store: &RollupStore, vm: &str) -> Vec<f32> {
        store.get(vm).expect("vm").available().collect()
    }

    #[test]
    fn rows_become_steps_ending_on_the_last_step() {
        let mut store = RollupStore::in_memory(&clock());
        let s = import_trace(reader("minute,a,b\n0,1,\n5,2,7\n10,3,8\n"), &mut store, 100)
            .expect("import");
        assert_eq!(values(&store, "a"), [1.0, 2.0, 3.0]);
        assert_eq!(values(&store, "b"), [7.0, 8.0]);
        assert_eq!(store.get("a").expect("a").newest_step(), 100);
        assert_eq!(store.last_closed(), Some(100));
        assert_eq!((s.rows, s.step_minutes, s.last_minute), (3, 5, 10));
        assert_eq!(s.imported, ["a", "b"]);
        assert!(s.replaced.is_empty());
    }

    #[test]
    fn gaps_and_trailing_empty_cells_are_filled_forward() {
        let mut store = RollupStore::in_memory(&clock());
        import_trace(reader("minute,a\n0,1\n5,\n15,4\n20,\n"), &mut store, 10).expect("import");
        // minute 10 is absent (a gap), minutes 5 and 20 are empty cells.
        assert_eq!(values(&store, "a"), [1.0, 1.0, 1.0, 4.0, 4.0]);
        let r = store.get("a").expect("a");
        assert_eq!((r.newest_step(), r.last_seen_step()), (10, 9));
    }

    #[test]
    fn only_the_rollups_reach_is_kept_and_existing_vms_are_replaced() {
        let mut store = RollupStore::in_memory(&clock());
        store.record("a", 5, 50.0);
        store.record("other", 5, 9.0);
        store.close_step(5);
        let mut text = String::from("minute,a\n");
        for i in 0..(HISTORY_STEPS as i64 + 10) {
            text += &format!("{},{}\n", i * 5, i);
        }
        let s = import_trace(reader(&text), &mut store, 3000).expect("import");
        assert_eq!(s.rows_kept, HISTORY_STEPS);
        assert_eq!(s.replaced, ["a"]);
        let a = values(&store, "a");
        assert_eq!(a.len(), HISTORY_STEPS);
        assert_eq!(a[0], 10.0);
        assert_eq!(values(&store, "other"), [9.0]);
        assert_eq!(store.last_closed(), Some(3000));
    }

    #[test]
    fn uneven_minutes_and_empty_traces_are_refused_by_line() {
        let mut store = RollupStore::in_memory(&clock());
        let e =
            import_trace(reader("minute,a\n0,1\n5,2\n7,3\n"), &mut store, 10).expect_err("uneven");
        assert!(e.to_string().starts_with("trace t.csv:4: minute 7"), "{e}");
        let e = import_trace(reader("minute,a\n"), &mut store, 10).expect_err("empty");
        assert!(e.to_string().contains("no data rows"), "{e}");
        assert!(store.is_empty(), "nothing imported on error");
    }
}
