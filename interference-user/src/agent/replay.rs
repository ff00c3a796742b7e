//! Recorded samples back into ticks, so the scoring the agent runs live can be run on
//! a recording (`interference score --replay`, the evaluation protocol, golden tests):
//! same code, same numbers.
//!
//! A samples file (`interference collect --samples`, the dataset recorder) holds one
//! `VmSample` line per VM per tick, stamped with the tick's end. A tick is the samples
//! of one timestamp, in time order; of two lines of one VM at one timestamp the later
//! one in the file wins. A line cut short by a crash is skipped with a warning, as the
//! trainer does; any other unreadable line is an error naming it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::export::jsonl::{SampleFileError, SampleReader};
use crate::telemetry::VmSample;

/// The ticks of the samples file at `path`, oldest first.
pub fn read_ticks(path: &Path) -> Result<Vec<Vec<VmSample>>, SampleFileError> {
    let mut ticks: BTreeMap<u64, Vec<VmSample>> = BTreeMap::new();
    for s in SampleReader::open(path)? {
        match s {
            Ok(s) => {
                let tick = ticks.entry(s.timestamp_ms).or_default();
                tick.retain(|t| t.vm != s.vm);
                tick.push(s);
            }
            Err(e @ SampleFileError::Decode { .. }) => tracing::warn!("{e}; skipped"),
            Err(e) => return Err(e),
        }
    }
    Ok(ticks.into_values().collect())
}

/// The collector interval a recording was made at: the median of its samples'
/// `interval_seconds` (which jitter around it), rounded to 10 ms. None when empty.
pub fn recorded_interval(ticks: &[Vec<VmSample>]) -> Option<Duration> {
    let mut v: Vec<f64> = ticks
        .iter()
        .flatten()
        .map(|s| s.interval_seconds)
        .filter(|x| x.is_finite() && *x > 0.0)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    let centis = (median * 100.0).round().max(1.0) as u64;
    Some(Duration::from_millis(centis * 10))
}
