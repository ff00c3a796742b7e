//! What a policy decides with and never changes: its configuration, prepared for the
//! lookups of every tick, and the prefix of every action id.

use std::collections::HashMap;

use super::action::Rung;
use super::config::{PolicyConfig, Thresholds};
use super::decision::Decision;

/// The configuration, prepared.
#[derive(Debug, Clone)]
pub(super) struct Rules {
    pub config: PolicyConfig,
    /// Every action id starts with it: `<host>-<run>` in the agent (see
    /// `enforce::journal`), so that ids are unique across hosts and restarts.
    pub id_prefix: String,
    pub ladder: Vec<Rung>,
    /// `[[policy.pairs]]` by pair key: (on, off).
    pub pair_thresholds: HashMap<String, (Option<f32>, Option<f32>)>,
    /// The lowest on threshold anywhere: an untracked pair below it is skipped at once.
    pub min_on: f32,
}

impl Rules {
    /// The thresholds for the pair `key` protecting a VM of `tier` (see
    /// [`PolicyConfig::thresholds`]).
    pub(super) fn thresholds(&self, key: &str, tier: Option<&str>) -> Thresholds {
        let pair = self
            .pair_thresholds
            .get(key)
            .copied()
            .unwrap_or((None, None));
        let t = tier.and_then(|t| self.config.tiers.get(t));
        Thresholds {
            on: pair
                .0
                .or(t.and_then(|t| t.on_threshold))
                .unwrap_or(self.config.on_threshold),
            off: pair
                .1
                .or(t.and_then(|t| t.off_threshold))
                .unwrap_or(self.config.off_threshold),
        }
    }

    pub(super) fn cap_left(&self, d: &Decision) -> usize {
        self.config
            .max_actions_per_tick
            .saturating_sub(d.actions.len())
    }
}
