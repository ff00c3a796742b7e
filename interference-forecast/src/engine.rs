//! The agent's side of the forecaster: ticks in, a round out at the end of each step.
//!
//! [`ForecastEngine`] is glue over the three pure parts: the [`Clock`] says which step
//! a tick measured and when a step has ended, the [`RollupStore`] accumulates and
//! closes steps, the [`Forecaster`] runs the round. The agent calls
//! [`ForecastEngine::record_tick`] for every VM on every collector tick, then
//! [`ForecastEngine::end_steps`] once per tick; the latter returns a [`StepEnd`] when
//! one or more steps ended since the last call (one round, at the newest complete
//! step: steps missed while the agent was busy or down are forward-filled).

use std::path::Path;
use std::time::SystemTime;

use crate::clock::Clock;
use crate::forecaster::{Forecaster, Round};
use crate::rollup::{ClosedStep, RollupProblem, RollupStore, SaveError, TickOutcome};

/// What happened at the end of a step.
#[derive(Debug)]
pub struct StepEnd {
    pub closed: ClosedStep,
    pub round: Round,
    /// The rollups were due to be saved and could not be (the previous file is intact;
    /// the next save tries again).
    pub save_error: Option<SaveError>,
}

/// Clock + rollups + forecaster.
#[derive(Debug)]
pub struct ForecastEngine {
    clock: Clock,
    store: RollupStore,
    forecaster: Forecaster,
    save_every_steps: u32,
    steps_since_save: u32,
}

impl ForecastEngine {
    /// An engine whose rollups live in `state_dir` (file
    /// [`crate::rollup::FILE_NAME`]); the problems say what of the saved rollups could
    /// not be used (each VM concerned starts afresh; the agent logs them and goes on).
    pub fn open(
        clock: Clock,
        state_dir: &Path,
        forecaster: Forecaster,
    ) -> (Self, Vec<RollupProblem>) {
        let (store, problems) = RollupStore::open(state_dir, &clock);
        (Self::with_store(clock, store, forecaster), problems)
    }

    /// An engine over a given store (in memory for tests and the lab).
    pub fn with_store(clock: Clock, store: RollupStore, forecaster: Forecaster) -> Self {
        Self {
            clock,
            store,
            forecaster,
            save_every_steps: 1,
            steps_since_save: 0,
        }
    }

    /// Saves the rollups every `steps` closed steps instead of every step (the lab's
    /// 1 s steps need not fsync every second). At least 1.
    pub fn save_every(mut self, steps: u32) -> Self {
        self.save_every_steps = steps.max(1);
        self
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn store(&self) -> &RollupStore {
        &self.store
    }

    pub fn forecaster(&self) -> &Forecaster {
        &self.forecaster
    }

    /// Counts one tick of `vm`: its demand (percent of its allocated cores, see
    /// [`demand_percent`]) over the interval that ended at `observed_at`.
    pub fn record_tick(
        &mut self,
        vm: &str,
        observed_at: SystemTime,
        demand_percent: f64,
    ) -> TickOutcome {
        let step = self.clock.tick_step(observed_at);
        self.store.record(vm, step, demand_percent)
    }

    /// If a step has ended by `now` that is not closed yet: closes the steps up to the
    /// newest complete one, forecasts `vms` (the VMs running now) at it, and saves the
    /// rollups when due. `None` while the current step is still open.
    pub fn end_steps<'a>(
        &mut self,
        now: SystemTime,
        vms: impl IntoIterator<Item = &'a str>,
    ) -> Option<StepEnd> {
        let complete = self.clock.step_of(now) - 1;
        if self.store.last_closed().is_some_and(|c| c >= complete) {
            return None;
        }
        let closed = self.store.close_step(complete);
        let round = self.forecaster.round(&self.store, complete, vms);
        self.steps_since_save += 1;
        let mut save_error = None;
        if self.steps_since_save >= self.save_every_steps {
            match self.store.save() {
                Ok(()) => self.steps_since_save = 0,
                Err(e) => {
                    tracing::warn!("demand rollups: {e}");
                    save_error = Some(e);
                }
            }
        }
        Some(StepEnd {
            closed,
            round,
            save_error,
        })
    }

    /// Saves the rollups now (e.g. at shutdown).
    pub fn save(&mut self) -> Result<(), SaveError> {
        self.store.save()?;
        self.steps_since_save = 0;
        Ok(())
    }
}

/// A tick's demand (docs/forecast.md, section 1): CPU time plus the vCPU threads'
/// run-queue wait over the interval, in percent of the VM's allocated cores. 0 for an
/// empty interval or a VM without vCPUs.
pub fn demand_percent(cpu_ns: u64, run_delay_ns: u64, interval_ns: u64, vcpus: u32) -> f64 {
    let capacity = interval_ns as f64 * f64::from(vcpus);
    if capacity <= 0.0 {
        return 0.0;
    }
    100.0 * (cpu_ns as f64 + run_delay_ns as f64) / capacity
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::forecaster::ForecastSource;

    fn lab_clock() -> Clock {
        Clock::new(
            Duration::from_secs(1),
            Duration::from_secs(288),
            UNIX_EPOCH,
            288,
        )
        .expect("lab clock")
    }

    fn at_ms(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn demand_is_usage_plus_wait_over_allocated_cores() {
        assert_eq!(
            demand_percent(500_000_000, 500_000_000, 1_000_000_000, 2),
            50.0
        );
        assert_eq!(
            demand_percent(2_000_000_000, 1_000_000_000, 1_000_000_000, 2),
            150.0
        );
        assert_eq!(demand_percent(1, 1, 0, 2), 0.0);
    }

    #[test]
    fn ticks_become_steps_and_a_round_runs_when_a_step_ends() {
        let mut e = ForecastEngine::with_store(
            lab_clock(),
            RollupStore::in_memory(&lab_clock()),
            Forecaster::without_model(),
        );
        // Four ticks of 250 ms in step 10, the last one ending on the boundary. The
        // first call closes step 9, in which the VM did not exist yet.
        for (ms, d) in [
            (10_250, 10.0),
            (10_500, 20.0),
            (10_750, 30.0),
            (11_000, 40.0),
        ] {
            assert_eq!(e.record_tick("vm", at_ms(ms), d), TickOutcome::Accepted);
            let end = e.end_steps(at_ms(ms), ["vm"]);
            if ms == 10_250 {
                let end = end.expect("step 9 closed");
                assert_eq!(end.closed.step, 9);
                assert!(end.round.forecasts.is_empty());
            } else if ms < 11_000 {
                assert!(end.is_none());
            } else {
                let end = end.expect("step 10 ended");
                assert_eq!(end.closed.step, 10);
                assert_eq!(end.round.origin_step, 10);
                let f = &end.round.forecasts[0];
                assert_eq!((f.level, f.source), (25.0, ForecastSource::LevelNoModel));
            }
        }
        assert!(e.end_steps(at_ms(11_500), ["vm"]).is_none());
        // Two steps without ticks: both forward-filled at the next end.
        let end = e
            .end_steps(at_ms(13_100), ["vm"])
            .expect("steps 11 and 12 ended");
        assert_eq!(end.closed.step, 12);
        assert_eq!(e.store().get("vm").map(|r| r.age()), Some(3));
    }

    #[test]
    fn rollups_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut e, problems) =
            ForecastEngine::open(lab_clock(), dir.path(), Forecaster::without_model());
        assert!(problems.is_empty());
        for s in 0..5u64 {
            e.record_tick("vm", at_ms(s * 1000 + 500), s as f64);
            let end = e
                .end_steps(at_ms(s * 1000 + 1000), ["vm"])
                .expect("step ended");
            assert!(end.save_error.is_none());
        }
        drop(e);
        let (e, problems) =
            ForecastEngine::open(lab_clock(), dir.path(), Forecaster::without_model());
        assert!(problems.is_empty(), "{problems:?}");
        let r = e.store().get("vm").expect("restored");
        assert_eq!(r.age(), 5);
        assert_eq!(r.value(0), Some(4.0));
        assert_eq!(e.store().last_closed(), Some(4));
    }
    #[test]
    fn steps_missed_while_the_agent_was_down_are_forward_filled_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut e, _) = ForecastEngine::open(lab_clock(), dir.path(), Forecaster::without_model());
        for s in 0..3u64 {
            e.record_tick("vm", at_ms(s * 1000 + 500), 10.0 * (s + 1) as f64);
            e.end_steps(at_ms(s * 1000 + 1000), ["vm"])
                .expect("step ended");
        }
        drop(e);
        // Down for steps 3..=6; back mid-step 7 with a tick in it.
        let (mut e, problems) =
            ForecastEngine::open(lab_clock(), dir.path(), Forecaster::without_model());
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(e.record_tick("vm", at_ms(2_900), 99.0), TickOutcome::Late);
        e.record_tick("vm", at_ms(7_600), 50.0);
        let end = e.end_steps(at_ms(8_000), ["vm"]).expect("step 7 ended");
        assert_eq!(end.round.origin_step, 7);
        let r = e.store().get("vm").expect("restored");
        let got: Vec<f32> = r.available().collect();
        assert_eq!(got, vec![10.0, 20.0, 30.0, 30.0, 30.0, 30.0, 30.0, 50.0]);
        // L: the median of the 8 values, the two middle ones 30 and 30.
        assert_eq!(end.round.forecasts[0].level, 30.0);
    }
}
