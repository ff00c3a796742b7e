//! The controller's desired state, applied between ticks (`[fleet]`, docs/controller.md).

use super::{Mitigation, Scoring};
use crate::fleet::assign::{ModelSwitch, Use};
use crate::fleet::{FleetLink, Prepared};
use crate::predict::Scorer;

/// A desired state from the controller, between ticks: its limits (the per-tenant
/// action cap) apply at once; its models (already fetched and verified on the link's
/// thread) act or shadow from the next round; its `[policy]` replaces the running one
/// (checked as the config file is; a bad one changes nothing, reported). `[billing]`
/// changes take effect at the next start: prices and periods do not change under
/// running charges.
pub(super) fn apply(
    prepared: Prepared,
    mut mitigation: Option<&mut Mitigation>,
    scoring: Option<&mut Scoring>,
    link: &FleetLink,
) {
    let Prepared { state, models } = prepared;
    if let Some(m) = mitigation.as_deref_mut() {
        m.set_limits(&state.limits);
        m.set_influence(&state.influence);
        m.set_placement(state.placement);
    }
    if let Some(s) = scoring {
        switch_models(s, models);
        let (active, shadow) = s.model_shas();
        link.models_applied(active, shadow);
    }
    let version = &state.policy.version;
    let origin = std::path::PathBuf::from(format!("<fleet policy {version}>"));
    let config = match crate::config::Config::parse(
        &state.policy.toml,
        &origin,
        &crate::inventory::Mounts::default(),
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("fleet policy {version} not applied, the running one stays: {e}");
            return;
        }
    };
    let Some(m) = mitigation else {
        link.applied(version);
        return;
    };
    match m.reconfigure_policy(config.policy) {
        Ok(()) => {
            tracing::info!("applied fleet policy {version}");
            link.applied(version);
        }
        Err(e) => tracing::warn!("fleet policy {version} not applied, the running one stays: {e}"),
    }
}

fn switch_models(s: &mut Scoring, models: ModelSwitch) {
    let bundle = |u: Use| match u {
        Use::Own => None,
        Use::Bundle(m) => {
            let m = *m;
            Some((m.sha, Scorer::from(m.scorer)))
        }
    };
    if let Some(u) = models.active {
        let to = bundle(u);
        let name = to
            .as_ref()
            .map_or("the host's own scorer".to_owned(), |(sha, _)| {
                format!("model bundle {sha}")
            });
        match s.act_with(to) {
            Ok(()) => tracing::info!("scoring with {name}"),
            Err(e) => tracing::warn!("cannot score with {name}: {e}"),
        }
    }
    if let Some(u) = models.shadow {
        let to = bundle(u);
        let name = to
            .as_ref()
            .map_or("no shadow model".to_owned(), |(sha, _)| {
                format!("model bundle {sha} in shadow")
            });
        match s.shadow_with(to) {
            Ok(()) => tracing::info!("scoring with {name}"),
            Err(e) => tracing::warn!("cannot score with {name}: {e}"),
        }
    }
}
