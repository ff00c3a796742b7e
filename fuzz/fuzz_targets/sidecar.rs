//! A model's sidecar (features, normalisation, shapes) as the agent and the controller
//! read it from a bundle an operator uploads. Never a panic.
#![no_main]

use interference_core::sidecar::Sidecar;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sidecar) = Sidecar::from_slice(data, "fuzz.json") {
        let _ = sidecar.validate();
        let _ = sidecar.batch_symbol();
    }
});
