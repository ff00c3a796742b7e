//! Migration placement, asked from the tick: the migrate rung names
//! [`crate::policy::CONTROLLER_PLACEMENT`] and the agent turns it into a reservation on
//! the host the controller chose before the action is journalled. The request runs on
//! the link's runtime and the tick waits for it at most [`PLACE_TIMEOUT`]: a migration
//! is the ladder's last rung, rare, and a slow controller then costs one late tick,
//! never a migration to a host nobody checked. Releases are sent in the background and
//! retried; one that never arrives is harmless (the reservation expires).

use std::sync::mpsc;
use std::time::Duration;

use interference_fleet::client::{ClientError, FleetClient, RetryPolicy};
use interference_fleet::wire::{PlacementRequest, ReleaseOutcome, Reservation};
use thiserror::Error;
use tokio::runtime::Handle;

/// The longest a tick waits for the controller's placement.
pub const PLACE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a release is retried before the reservation is left to expire.
const RELEASE_FOR: Duration = Duration::from_secs(600);

#[derive(Debug, Error)]
pub enum PlaceError {
    #[error("the controller placed nothing: {0}")]
    Refused(#[source] ClientError),
    #[error("the controller did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the controller link is not running")]
    LinkStopped,
}

/// Asks the controller for migration targets and gives reservations back.
#[derive(Clone)]
pub struct Placer {
    client: FleetClient,
    runtime: Handle,
    timeout: Duration,
}

impl Placer {
    pub(super) fn new(client: FleetClient, runtime: Handle) -> Self {
        Self {
            client,
            runtime,
            timeout: PLACE_TIMEOUT,
        }
    }

    /// A reservation on a host with room for the VM, or why there is none.
    pub fn reserve(&self, request: PlacementRequest) -> Result<Reservation, PlaceError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let client = self.client.clone();
        let timeout = self.timeout;
        self.runtime.spawn(async move {
            let answer = tokio::time::timeout(timeout, client.place(&request)).await;
            // The tick may have stopped waiting: nobody to tell.
            let _ = tx.send(answer);
        });
        match rx.recv_timeout(self.timeout + Duration::from_millis(200)) {
            Ok(Ok(Ok(reservation))) => Ok(reservation),
            Ok(Ok(Err(e))) => Err(PlaceError::Refused(e)),
            Ok(Err(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(PlaceError::Timeout(self.timeout))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(PlaceError::LinkStopped),
        }
    }

    /// Ends a reservation in the background, retried for up to ten minutes.
    pub fn release(&self, reservation_id: String, outcome: ReleaseOutcome) {
        let client = self.client.clone();
        self.runtime.spawn(async move {
            let policy = RetryPolicy {
                max_elapsed: Some(RELEASE_FOR),
                ..RetryPolicy::default()
            };
            match client
                .retrying("release", policy, || {
                    client.release(&reservation_id, outcome)
                })
                .await
            {
                Ok(r) => tracing::info!(
                    "reservation {reservation_id} released ({outcome:?}): {}",
                    r.state
                ),
                Err(e) => tracing::warn!(
                    "reservation {reservation_id} not released ({outcome:?}), it will expire: {e}"
                ),
            }
        });
    }
}
