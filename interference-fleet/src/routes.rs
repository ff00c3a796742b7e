//! Every HTTP path of the controller, named once for the server and the client.
//!
//! Agent routes authenticate with the host's bearer token (the host's identity comes
//! from the token, never from the body); admin routes with an admin token.

/// `POST`: [`crate::wire::Register`] -> [`crate::wire::Registered`].
pub const REGISTER: &str = "/agent/v1/register";
/// `POST`: [`crate::wire::Heartbeat`] -> [`crate::wire::HeartbeatAck`].
pub const HEARTBEAT: &str = "/agent/v1/heartbeat";
/// `POST`: [`crate::wire::IngestBatch`] -> [`crate::wire::IngestAck`], sent only after
/// the batch's transaction committed.
pub const INGEST: &str = "/agent/v1/ingest";
/// `GET`, long poll: `If-None-Match: "<etag>"`, `?wait_ms=N` ->
/// [`crate::wire::DesiredState`], or `304 Not Modified` when nothing changed in time.
pub const DESIRED: &str = "/agent/v1/desired";
/// `POST`: [`crate::wire::PlacementRequest`] -> [`crate::wire::Reservation`].
pub const PLACEMENTS: &str = "/agent/v1/placements";
/// `POST /agent/v1/placements/{id}/release`: [`crate::wire::Release`] ->
/// [`crate::wire::Released`].
pub fn release(reservation_id: &str) -> String {
    format!("{PLACEMENTS}/{reservation_id}/release")
}
/// `GET`: a model bundle's manifest, the exact bytes whose sha256 is its address.
pub fn model_manifest(sha256: &str) -> String {
    format!("/agent/v1/models/{sha256}")
}
/// `GET`: a file of a bundle by its sha256.
pub fn blob(sha256: &str) -> String {
    format!("/agent/v1/blobs/{sha256}")
}

/// Admin API (admin token). Paths with `{...}` are axum route templates.
pub mod admin {
    pub const STATUS: &str = "/admin/v1/status";
    /// `GET` the document of a scope (`fleet`, `group:<name>`, `host:<id>`), `PUT`
    /// a new version (TOML text body).
    pub const POLICY: &str = "/admin/v1/policy/{scope}";
    /// `PUT` a file (raw bytes) under its sha256.
    pub const BLOB: &str = "/admin/v1/blobs/{sha256}";
    /// `GET` the registry.
    pub const MODELS: &str = "/admin/v1/models";
    /// `PUT` a bundle manifest under its sha256.
    pub const MODEL: &str = "/admin/v1/models/{sha256}";
    /// `POST` start a rollout of a bundle (to shadow), or move it one stage on.
    pub const MODEL_PROMOTE: &str = "/admin/v1/models/{sha256}/promote";
    /// `POST` roll the running rollout back.
    pub const MODEL_ROLLBACK: &str = "/admin/v1/models/rollback";
    /// `POST` a new token for a host (printed once).
    pub const HOST_TOKENS: &str = "/admin/v1/hosts/{host}/tokens";
    /// `POST` `{"draining": bool}`.
    pub const HOST_DRAIN: &str = "/admin/v1/hosts/{host}/drain";

    /// A template with its `{name}` parameters filled in, in order.
    pub fn fill(template: &str, values: &[&str]) -> String {
        let mut out = String::new();
        let mut rest = template;
        let mut values = values.iter();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
            out.push_str(values.next().copied().unwrap_or(""));
            rest = &rest[close..];
        }
        out.push_str(rest);
        out
    }
}

/// Liveness (the process answers) and readiness (its database answers).
pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";
/// Prometheus text format, the controller's own metrics.
pub const METRICS: &str = "/metrics";

#[cfg(test)]
mod tests {
    use super::admin::fill;

    #[test]
    fn templates_fill_in_order() {
        assert_eq!(
            fill(super::admin::MODEL_PROMOTE, &["abc"]),
            "/admin/v1/models/abc/promote"
        );
        assert_eq!(fill(super::admin::STATUS, &[]), "/admin/v1/status");
    }
}
