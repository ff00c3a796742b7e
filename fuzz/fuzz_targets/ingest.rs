//! The controller's ingest envelope from an agent (a host token is all it takes to
//! send one): decoded as the route does, then prepared into rows. Never a panic.
#![no_main]

use interference_controller::domain::public_ids::PublicIds;
use interference_controller::store::ingest::prepare;
use interference_fleet::wire::IngestBatch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = serde_json::from_slice::<IngestBatch>(data) {
        let _ = prepare("h1", &batch, &PublicIds::from_secret([7; 32]));
    }
});
