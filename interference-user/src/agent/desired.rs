//! The controller's desired state, applied between ticks (`[fleet]`, docs/controller.md).

use super::Mitigation;
use crate::fleet::FleetLink;

/// A desired state from the controller, between ticks: its limits (the per-tenant
/// action cap) apply at once; its `[policy]` replaces the running one (checked as the config file is; a bad one changes nothing, reported).
/// `[billing]` changes take effect at the next start: prices and periods do not change
/// under running charges.
pub(super) fn apply(
    state: &interference_fleet::wire::DesiredState,
    mut mitigation: Option<&mut Mitigation>,
    link: &FleetLink,
) {
    if let Some(m) = mitigation.as_deref_mut() {
        m.set_limits(&state.limits);
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
