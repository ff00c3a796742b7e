//! Errors as one line for outcomes and logs: the error and each of its causes.

use std::error::Error as StdError;

/// An error and its sources, each once (some messages already include their source).
pub fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}
