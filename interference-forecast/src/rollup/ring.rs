//! One VM's rollup: the last `HISTORY_STEPS` step values and the VM's age
//! (docs/forecast.md, section 3). A pure data structure: no clock, no I/O.

use crate::contract::HISTORY_STEPS;

/// The last [`HISTORY_STEPS`] demand values of one VM, one per step, the newest last,
/// and how many of them are the VM's (its age).
///
/// Lag `l` (the value `l` steps before the newest) is available iff `l < age`. A step
/// without a value repeats the previous one (forward fill) and still ages the VM, so
/// that lag `l` always means "`l` steps ago".
#[derive(Clone)]
pub struct VmRollup {
    /// Ring storage, `HISTORY_STEPS` long; `next` is where the next value goes.
    values: Box<[f32]>,
    next: usize,
    age: usize,
    /// Absolute step of the newest value.
    newest_step: i64,
    /// Absolute step of the newest value that was measured, not filled.
    last_seen_step: i64,
}

/// Equal when they hold the same available values at the same steps (the ring's
/// unavailable slots do not count).
impl PartialEq for VmRollup {
    fn eq(&self, other: &Self) -> bool {
        self.age == other.age
            && self.newest_step == other.newest_step
            && self.last_seen_step == other.last_seen_step
            && self.available().eq(other.available())
    }
}

impl std::fmt::Debug for VmRollup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmRollup")
            .field("age", &self.age)
            .field("newest_step", &self.newest_step)
            .field("last_seen_step", &self.last_seen_step)
            .field("newest", &self.value(0))
            .finish()
    }
}

impl VmRollup {
    /// A VM seen for the first time: its first value, at `step`, age 1.
    pub fn new(step: i64, value: f32) -> Self {
        let mut r = Self {
            values: vec![0.0; HISTORY_STEPS].into_boxed_slice(),
            next: 0,
            age: 0,
            newest_step: step,
            last_seen_step: step,
        };
        r.push(value);
        r
    }

    /// Rebuilds a rollup from its available values, oldest first (what the rollup
    /// file stores). `values` must hold between 1 and `HISTORY_STEPS` values.
    pub(crate) fn from_parts(values: &[f32], newest_step: i64, last_seen_step: i64) -> Self {
        let mut r = Self {
            values: vec![0.0; HISTORY_STEPS].into_boxed_slice(),
            next: 0,
            age: 0,
            newest_step,
            last_seen_step,
        };
        for &v in values {
            r.push(v);
        }
        r
    }

    /// Steps this VM has values for, the newest included, at most [`HISTORY_STEPS`].
    pub fn age(&self) -> usize {
        self.age
    }

    /// Absolute step of the newest value (measured or filled).
    pub fn newest_step(&self) -> i64 {
        self.newest_step
    }

    /// Absolute step of the newest measured value.
    pub fn last_seen_step(&self) -> i64 {
        self.last_seen_step
    }

    /// The value `lag` steps before the newest, if the VM has one.
    #[inline]
    pub fn value(&self, lag: usize) -> Option<f32> {
        if lag >= self.age {
            return None;
        }
        let cap = self.values.len();
        Some(self.values[(self.next + cap - 1 - lag) % cap])
    }

    /// The available values, oldest first.
    pub fn available(&self) -> impl Iterator<Item = f32> + '_ {
        (0..self.age).rev().filter_map(|lag| self.value(lag))
    }

    /// Records the value of `step` (`None`: the step had no tick). Steps between the
    /// newest and `step` are missing and take the previous value, one per step. A VM
    /// that comes back with a value after more than `HISTORY_STEPS` steps without one
    /// starts again at age 1. A `step` not after the newest is ignored (returns false).
    pub fn push_step(&mut self, step: i64, value: Option<f32>) -> bool {
        if step <= self.newest_step {
            return false;
        }
        if let Some(v) = value {
            let unseen = step.saturating_sub(self.last_seen_step).saturating_sub(1);
            if unseen > HISTORY_STEPS as i64 {
                *self = Self::new(step, v);
                return true;
            }
        }
        let previous = self.value(0).unwrap_or(0.0);
        let missed = step.saturating_sub(self.newest_step).saturating_sub(1);
        // Past a whole ring, further fills only age the VM: the values are all the same.
        let writes = missed.min(HISTORY_STEPS as i64) as usize;
        for _ in 0..writes {
            self.push(previous);
        }
        self.age = (self.age + (missed as usize - writes)).min(HISTORY_STEPS);
        match value {
            Some(v) => {
                self.push(v);
                self.last_seen_step = step;
            }
            None => self.push(previous),
        }
        self.newest_step = step;
        true
    }

    fn push(&mut self, v: f32) {
        self.values[self.next] = v;
        self.next = (self.next + 1) % self.values.len();
        self.age = (self.age + 1).min(self.values.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_has_age_one() {
        let r = VmRollup::new(100, 5.0);
        assert_eq!(r.age(), 1);
        assert_eq!(r.value(0), Some(5.0));
        assert_eq!(r.value(1), None);
        assert_eq!((r.newest_step(), r.last_seen_step()), (100, 100));
    }

    #[test]
    fn a_gap_is_forward_filled_one_value_per_missed_step_and_ages_the_vm() {
        let mut r = VmRollup::new(10, 1.0);
        assert!(r.push_step(11, Some(2.0)));
        assert!(r.push_step(15, Some(3.0)));
        assert_eq!(r.age(), 6);
        let got: Vec<f32> = r.available().collect();
        assert_eq!(got, vec![1.0, 2.0, 2.0, 2.0, 2.0, 3.0]);
        assert!(r.push_step(16, None));
        assert_eq!(r.value(0), Some(3.0));
        assert_eq!((r.age(), r.newest_step(), r.last_seen_step()), (7, 16, 15));
    }

    #[test]
    fn a_step_already_recorded_is_ignored() {
        let mut r = VmRollup::new(10, 1.0);
        assert!(!r.push_step(10, Some(9.0)));
        assert!(!r.push_step(3, Some(9.0)));
        assert_eq!((r.age(), r.value(0)), (1, Some(1.0)));
    }

    #[test]
    fn age_is_capped_and_the_oldest_values_drop_out() {
        let mut r = VmRollup::new(0, 0.0);
        for k in 1..(HISTORY_STEPS as i64 + 10) {
            r.push_step(k, Some(k as f32));
        }
        assert_eq!(r.age(), HISTORY_STEPS);
        assert_eq!(r.value(0), Some((HISTORY_STEPS + 9) as f32));
        assert_eq!(r.value(HISTORY_STEPS - 1), Some(10.0));
        assert_eq!(r.value(HISTORY_STEPS), None);
    }

    #[test]
    fn a_comeback_within_the_history_is_a_gap() {
        let mut r = VmRollup::new(0, 7.0);
        assert!(r.push_step(HISTORY_STEPS as i64 + 1, Some(8.0)));
        // HISTORY_STEPS steps without a value: still a gap.
        assert_eq!(r.age(), HISTORY_STEPS);
        assert_eq!(r.value(1), Some(7.0));
    }

    #[test]
    fn a_comeback_after_more_than_the_history_starts_again() {
        let mut r = VmRollup::new(0, 7.0);
        assert!(r.push_step(HISTORY_STEPS as i64 + 2, Some(8.0)));
        assert_eq!(r.age(), 1);
        assert_eq!(r.value(0), Some(8.0));
        assert_eq!(r.last_seen_step(), HISTORY_STEPS as i64 + 2);
    }

    #[test]
    fn a_long_absence_filled_step_by_step_ages_without_restarting() {
        let mut r = VmRollup::new(0, 7.0);
        for k in 1..=3 * HISTORY_STEPS as i64 {
            r.push_step(k, None);
        }
        assert_eq!(r.age(), HISTORY_STEPS);
        assert_eq!(r.value(HISTORY_STEPS - 1), Some(7.0));
        // Then a value: unseen for far more than the history, so it starts again.
        r.push_step(3 * HISTORY_STEPS as i64 + 1, Some(1.0));
        assert_eq!(r.age(), 1);
    }

    #[test]
    fn a_huge_gap_costs_one_ring_of_writes() {
        let mut r = VmRollup::new(0, 1.0);
        r.push_step(1, Some(2.0));
        r.push_step(1_000_000, None);
        assert_eq!(r.age(), HISTORY_STEPS);
        assert_eq!(r.value(HISTORY_STEPS - 1), Some(2.0));
    }

    #[test]
    fn from_parts_round_trips_available_values() {
        let mut r = VmRollup::new(5, 1.0);
        r.push_step(6, Some(2.0));
        r.push_step(8, Some(4.0));
        let vals: Vec<f32> = r.available().collect();
        let back = VmRollup::from_parts(&vals, r.newest_step(), r.last_seen_step());
        assert_eq!(back, r);
    }
}
