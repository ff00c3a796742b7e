//! Every message between an agent and the controller.
//!
//! Requests and responses travel inside an [`Envelope`] that carries the protocol
//! version, so a controller can refuse (with a message naming what it speaks) a body
//! from an agent newer than itself instead of half-reading it. Instants are epoch
//! milliseconds, money is integer nano-units of the currency, ids are the producer's
//! own idempotent ids: the same fact always travels under the same id.

mod desired;
mod error;
mod host;
mod ingest;
mod ledger;
mod model;
mod placement;

pub use desired::{
    DesiredState, Influence, Limits, ModelAssignment, ModelRef, PolicyAssignment, PriorityGrant,
    RolloutRef, VmRef,
};
pub use error::{ErrorBody, FieldError};
pub use host::{Capacity, Heartbeat, HeartbeatAck, Register, Registered};
pub use ingest::{
    ActionPhase, CapacitySample, IngestAck, IngestBatch, Item, ItemKind, Phase, Rejected, Rollup,
    ScoreEvent, ROLLUP_WINDOW_MS,
};
pub use ledger::{LedgerColumns, LedgerError, LedgerLine};
pub use model::{
    is_sha256_hex, sha256_hex, BundleFile, BundleManifest, FileRole, ManifestError, BUNDLE_FORMAT,
};
pub use placement::{PlacementRequest, Release, ReleaseOutcome, Released, Reservation};

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks.
pub const WIRE_VERSION: u32 = 1;

/// `{"v": 1, "body": ...}`: a message and the protocol version it was written in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub v: u32,
    pub body: T,
}

impl<T> Envelope<T> {
    pub fn new(body: T) -> Self {
        Self {
            v: WIRE_VERSION,
            body,
        }
    }

    /// The body, if written in a version this side reads.
    pub fn open(self) -> Result<T, VersionError> {
        if self.v == WIRE_VERSION {
            Ok(self.body)
        } else {
            Err(VersionError { got: self.v })
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol version {got} is not supported; this side speaks version {WIRE_VERSION}")]
pub struct VersionError {
    pub got: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_and_refuses_other_versions() {
        let e = Envelope::new(Release {
            outcome: ReleaseOutcome::Failed,
        });
        let text = serde_json::to_string(&e).expect("serialise");
        assert_eq!(text, r#"{"v":1,"body":{"outcome":"failed"}}"#);
        let back: Envelope<Release> = serde_json::from_str(&text).expect("parse");
        assert_eq!(back.clone().open().expect("v1"), e.body);
        let newer = Envelope { v: 2, ..back };
        assert_eq!(
            newer.open().expect_err("v2").to_string(),
            "protocol version 2 is not supported; this side speaks version 1"
        );
    }
}
