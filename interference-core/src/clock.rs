//! Wall-clock time as the journal, the ledger, actions and samples stamp it:
//! milliseconds since the Unix epoch (0 if the clock is set before 1970).

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
