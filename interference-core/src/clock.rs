//! Wall-clock time as the journal, the ledger, actions and samples stamp it:
//! milliseconds since the Unix epoch (0 if the clock is set before 1970), and the
//! steps of that clock, found against the monotonic clock.
//!
//! Stamps stay on the wall clock: invoices are by calendar month in UTC, and a line
//! must say when, in UTC, its time was used. Durations must not follow the wall
//! clock's steps, though (NTP's first sync after boot, an operator's `date -s`, a
//! mis-set hardware clock corrected): billing asks [`take_steps`] every tick and
//! leaves a forward step's span unbilled, since that time did not pass. A step back
//! needs nothing from billing: the stretch of UTC it re-lives was billed once already,
//! and billing holds until the wall clock is past it again (so a step back of `S`
//! leaves up to `S` unbilled, never twice; the step is logged with its size).

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The wall clock now, in milliseconds since the Unix epoch. Every reading is also
/// compared with the monotonic clock, so a step between two readings is found.
pub fn now_ms() -> u64 {
    let wall = wall_ms();
    let mono = Instant::now();
    if let Ok(mut d) = DETECTOR.lock() {
        let origin = *d.origin.get_or_insert(mono);
        let mono_ms = u64::try_from(mono.duration_since(origin).as_millis()).unwrap_or(u64::MAX);
        d.steps.read(wall, mono_ms);
    }
    wall
}

/// The steps found since the last call, oldest first.
pub fn take_steps() -> Vec<Step> {
    DETECTOR
        .lock()
        .map(|mut d| d.steps.take())
        .unwrap_or_default()
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct Detector {
    origin: Option<Instant>,
    steps: StepDetector,
}

static DETECTOR: Mutex<Detector> = Mutex::new(Detector {
    origin: None,
    steps: StepDetector::new(),
});

/// The wall clock moved by more than the monotonic clock between two readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Where the wall clock would have been without the step (the previous reading
    /// plus the monotonic time since).
    pub expected_ms: u64,
    /// Where it was.
    pub wall_ms: u64,
}

impl Step {
    /// How far the clock stepped: positive forward, negative back.
    pub fn by_ms(&self) -> i64 {
        let d = i128::from(self.wall_ms) - i128::from(self.expected_ms);
        d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    pub fn is_forward(&self) -> bool {
        self.wall_ms > self.expected_ms
    }
}

/// Finds steps in a series of (wall, monotonic) readings. A plain value, so the rule
/// is tested with made-up clocks.
#[derive(Debug, Default)]
pub struct StepDetector {
    last: Option<(u64, u64)>,
    steps: Vec<Step>,
}

/// A difference below this is not a step: readings are not taken at the same
/// instant, and NTP slews the wall clock by up to 500 ppm.
const TOLERANCE_MS: u64 = 1000;
/// Steps kept between two [`take_steps`] calls; beyond it the latest are merged.
const MAX_STEPS: usize = 64;

impl StepDetector {
    pub const fn new() -> Self {
        Self {
            last: None,
            steps: Vec::new(),
        }
    }

    /// A reading: the wall clock and the monotonic clock, both in milliseconds (the
    /// monotonic one from any fixed origin).
    pub fn read(&mut self, wall_ms: u64, mono_ms: u64) {
        let Some((last_wall, last_mono)) = self.last.replace((wall_ms, mono_ms)) else {
            return;
        };
        let elapsed = mono_ms.saturating_sub(last_mono);
        let expected = last_wall.saturating_add(elapsed);
        // Slewing drifts in proportion to the time between readings.
        let tolerance = TOLERANCE_MS + elapsed / 1000;
        if wall_ms.abs_diff(expected) <= tolerance {
            return;
        }
        let step = Step {
            expected_ms: expected,
            wall_ms,
        };
        if self.steps.len() == MAX_STEPS {
            // Keep the span a forward step leaves out: merge into the last one.
            if let Some(last) = self.steps.last_mut() {
                last.wall_ms = wall_ms;
                last.expected_ms = last.expected_ms.min(expected);
            }
            return;
        }
        self.steps.push(step);
    }

    /// The steps found since the last call, oldest first.
    pub fn take(&mut self) -> Vec<Step> {
        std::mem::take(&mut self.steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_793_491_200_000;

    #[test]
    fn readings_that_agree_with_the_monotonic_clock_are_no_step() {
        let mut d = StepDetector::new();
        for k in 0..100 {
            // A 500 ppm slew and readings a few milliseconds apart in time.
            d.read(T + k * 1000 + k / 2 + (k % 3), k * 1000);
        }
        assert!(d.take().is_empty());
    }

    #[test]
    fn a_forward_step_is_found_with_the_span_that_did_not_pass() {
        let mut d = StepDetector::new();
        d.read(T, 0);
        d.read(T + 1000, 1000);
        // One more second passes, and the clock is set an hour ahead.
        d.read(T + 2000 + 3_600_000, 2000);
        d.read(T + 3000 + 3_600_000, 3000);
        let steps = d.take();
        assert_eq!(
            steps,
            vec![Step {
                expected_ms: T + 2000,
                wall_ms: T + 2000 + 3_600_000
            }]
        );
        assert_eq!(steps[0].by_ms(), 3_600_000);
        assert!(steps[0].is_forward());
        assert!(d.take().is_empty(), "taken once");
    }

    #[test]
    fn a_step_back_is_found_with_its_size() {
        let mut d = StepDetector::new();
        d.read(T, 0);
        d.read(T + 5000 - 1_800_000, 5000);
        let steps = d.take();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].by_ms(), -1_800_000);
        assert!(!steps[0].is_forward());
    }

    #[test]
    fn a_flood_of_steps_is_bounded_and_keeps_the_span_left_out() {
        let mut d = StepDetector::new();
        d.read(T, 0);
        let mut wall = T;
        for k in 1..=1000u64 {
            wall += 10_000;
            d.read(wall, k);
        }
        let steps = d.take();
        assert_eq!(steps.len(), MAX_STEPS);
        let last = steps[MAX_STEPS - 1];
        assert_eq!(last.wall_ms, wall);
        assert!(last.expected_ms < last.wall_ms);
    }

    #[test]
    fn the_process_clock_reads_the_wall_clock() {
        let before = wall_ms();
        let now = now_ms();
        assert!(now >= before && now - before < 5000);
    }
}
