//! Token lookups, cached for a minute so that a fleet's heartbeats do not each cost a
//! query; a revoked token stops working within that minute. Bounded: past
//! `MAX_ENTRIES` the expired entries are dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(60);
const MAX_ENTRIES: usize = 100_000;

/// token sha256 -> (name, looked up at)
#[derive(Default)]
pub struct TokenCache {
    pub(crate) hosts: Mutex<HashMap<String, (String, Instant)>>,
    pub(crate) admins: Mutex<HashMap<String, (String, Instant)>>,
}

impl TokenCache {
    pub(crate) fn get(
        map: &Mutex<HashMap<String, (String, Instant)>>,
        token: &str,
    ) -> Option<String> {
        let map = map.lock().ok()?;
        map.get(token)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(name, _)| name.clone())
    }

    pub(crate) fn put(map: &Mutex<HashMap<String, (String, Instant)>>, token: &str, name: &str) {
        if let Ok(mut map) = map.lock() {
            if map.len() >= MAX_ENTRIES {
                map.retain(|_, (_, at)| at.elapsed() < TTL);
            }
            map.insert(token.to_owned(), (name.to_owned(), Instant::now()));
        }
    }
}
