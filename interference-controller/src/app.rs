//! The router: every route, its handler and its body limit, over the shared
//! [`AppState`].

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;

use crate::api::{admin, agents, customer, dashboard, health};
use crate::middleware::observe::observe;
use crate::state::AppState;
use interference_fleet::routes;

/// Bundle files can be larger than a JSON request.
const MAX_BLOB_BYTES: usize = 256 * 1024 * 1024;
/// A batch of 5000 items of about 2 KiB.
const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;

pub fn router(state: AppState) -> Router {
    use routes::admin as a;
    let agent = Router::new()
        .route(routes::REGISTER, post(agents::register::register))
        .route(routes::HEARTBEAT, post(agents::heartbeat::heartbeat))
        .route(routes::INGEST, post(agents::ingest::ingest))
        .route(routes::DESIRED, get(agents::desired::desired))
        .route(routes::PLACEMENTS, post(agents::placement::place))
        .route(
            "/agent/v1/placements/{id}/release",
            post(agents::placement::release),
        )
        .route("/agent/v1/models/{sha256}", get(agents::models::manifest))
        .route("/agent/v1/blobs/{sha256}", get(agents::models::blob))
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES));
    let admin = Router::new()
        .route(a::STATUS, get(admin::status::status))
        .route(a::POLICY, get(admin::policy::show).put(admin::policy::set))
        .route(
            a::BLOB,
            put(admin::models::put_blob).layer(DefaultBodyLimit::max(MAX_BLOB_BYTES)),
        )
        .route(a::MODELS, get(admin::models::list))
        .route(a::MODEL, put(admin::models::put_manifest))
        .route(a::MODEL_PROMOTE, post(admin::models::promote))
        .route(a::MODEL_ROLLBACK, post(admin::models::rollback))
        .route(a::HOST_TOKENS, post(admin::hosts::create_token))
        .route(a::HOST_DRAIN, post(admin::hosts::drain));
    Router::new()
        .merge(agent)
        .merge(admin)
        .merge(customer::router().layer(DefaultBodyLimit::max(64 * 1024)))
        .merge(dashboard::router())
        .route(routes::HEALTHZ, get(health::healthz))
        .route(routes::READYZ, get(health::readyz))
        .route(routes::METRICS, get(health::metrics))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}
