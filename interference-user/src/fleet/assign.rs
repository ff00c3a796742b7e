//! Which models a desired state asks the host to act with and to shadow, prepared on
//! the link's thread (download, verification, golden vectors: never on the tick) and
//! handed to the tick loop as a [`ModelSwitch`], which it applies between ticks. A
//! bundle that cannot be fetched or fails a check is refused (logged, and not
//! reported in the heartbeat as in force): the model acting goes on acting.

use interference_fleet::client::FleetClient;
use interference_fleet::wire::ModelAssignment;

use super::models::{LoadedModel, ModelStore};

/// A change of one model slot.
#[derive(Debug)]
pub enum Use {
    /// The acting slot: the host's own scorer; the shadow slot: none.
    Own,
    Bundle(Box<LoadedModel>),
}

/// What changes, slot by slot (None: unchanged).
#[derive(Debug, Default)]
pub struct ModelSwitch {
    pub active: Option<Use>,
    pub shadow: Option<Use>,
}

impl ModelSwitch {
    /// `self` superseded by `newer` before the tick loop took it: a slot `newer`
    /// leaves unchanged keeps `self`'s change.
    pub fn then(self, newer: ModelSwitch) -> ModelSwitch {
        ModelSwitch {
            active: newer.active.or(self.active),
            shadow: newer.shadow.or(self.shadow),
        }
    }
}

/// The bundles handed to the tick loop so far, by sha256.
pub struct Assigner {
    store: ModelStore,
    active: Option<String>,
    shadow: Option<String>,
}

impl Assigner {
    pub fn new(store: ModelStore) -> Self {
        Self {
            store,
            active: None,
            shadow: None,
        }
    }

    /// Downloads the bundles `want` names that are not on disk (a failure is logged;
    /// [`Assigner::switch`] then finds the bundle missing and keeps the model acting).
    pub async fn fetch(&self, client: &FleetClient, want: &ModelAssignment) {
        for m in [&want.active, &want.shadow].into_iter().flatten() {
            if let Err(e) = self.store.fetch(client, &m.sha256).await {
                tracing::warn!("{:#}", anyhow::Error::new(e));
            }
        }
    }

    /// The change from what was handed over to what `want` asks, each bundle loaded
    /// and checked from disk.
    pub fn switch(&mut self, want: &ModelAssignment) -> ModelSwitch {
        let want_active = want.active.as_ref().map(|m| m.sha256.clone());
        let want_shadow = want.shadow.as_ref().map(|m| m.sha256.clone());
        let out = ModelSwitch {
            active: self.slot("acting", want_active, true),
            shadow: self.slot("shadow", want_shadow, false),
        };
        let keep: Vec<&str> = [&self.active, &self.shadow]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        self.store.prune(&keep);
        out
    }

    /// Whether what was handed over is what `want` asks (else a bundle was refused).
    pub fn settled(&self, want: &ModelAssignment) -> bool {
        self.active.as_deref() == want.active.as_ref().map(|m| m.sha256.as_str())
            && self.shadow.as_deref() == want.shadow.as_ref().map(|m| m.sha256.as_str())
    }

    fn slot(&mut self, what: &str, want: Option<String>, active: bool) -> Option<Use> {
        let current = if active {
            &mut self.active
        } else {
            &mut self.shadow
        };
        if *current == want {
            return None;
        }
        let Some(sha) = want else {
            *current = None;
            return Some(Use::Own);
        };
        match self.store.load(&sha) {
            Ok(m) => {
                tracing::info!(
                    "model bundle {sha} ({} {}) verified: sha256 of every file, golden vectors within {:.1e}; {what} from the next round",
                    m.name,
                    m.version,
                    m.golden_worst
                );
                *current = Some(sha);
                Some(Use::Bundle(Box::new(m)))
            }
            Err(e) => {
                tracing::warn!(
                    "{:#}; the {what} model stays {}",
                    anyhow::Error::new(e),
                    current
                        .as_deref()
                        .unwrap_or(if active { "the host's own" } else { "none" })
                );
                None
            }
        }
    }
}
