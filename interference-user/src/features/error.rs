//! Why feature windows cannot be built for a model.

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum FeatureError {
    #[error("the model's window of {window} ticks is empty: it needs at least one tick")]
    EmptyWindow { window: usize },
    #[error("the model's tick_seconds {tick_seconds} is not a positive number of seconds")]
    TickSeconds { tick_seconds: f64 },
    #[error(
        "the collector interval {} does not divide the model tick of {tick_seconds} s \
         (within 1 ms): each model tick must aggregate a whole number of collector \
         samples; set the collector interval to {tick_seconds} s or a divisor of it",
        humantime::format_duration(*interval)
    )]
    Interval {
        interval: Duration,
        tick_seconds: f64,
    },
}
