//! The customer API (`/v1`, customer tokens): a customer's VMs, their scores and
//! neighbours (by alias), the actions that touched them, charges, costs, invoices and
//! explanations. Tenancy by construction: the customer is the token's, every query
//! filters by it, every id that leaves is the customer's own public id, and another
//! customer's id answers exactly like an id that does not exist. The OpenAPI document
//! (`/v1/openapi.json`) is generated from these handlers' annotations.

pub mod actions;
pub mod charges;
pub mod extract;
pub mod influence;
pub mod invoice;
pub mod redacted;
pub mod schema;
pub mod vms;

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "interference customer API",
        version = "1",
        description = "Your VMs' contention scores, the mitigations that touched them, and every charge and credit with its reason. Authenticate with `Authorization: Bearer <token>` (a customer token from your operator)."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "vms", description = "Your VMs, their contention and the actions that touched them"),
        (name = "billing", description = "Charges, costs, invoices and explanations"),
        (name = "influence", description = "Your preferences, priority requests within your SLA tier, and the audit log of every request"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A customer token (ifc_...)"))
                    .build(),
            ),
        );
    }
}

/// The document, as served.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes_and_doc().1
}

fn routes_and_doc() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(vms::list))
        .routes(routes!(vms::scores))
        .routes(routes!(actions::list))
        .routes(routes!(charges::charges))
        .routes(routes!(charges::costs))
        .routes(routes!(invoice::invoice))
        .routes(routes!(invoice::explain))
        .routes(routes!(influence::get, influence::set))
        .routes(routes!(influence::set_vm))
        .routes(routes!(
            influence::request_priority,
            influence::cancel_priority
        ))
        .routes(routes!(influence::audit))
        .split_for_parts()
}

/// The customer routes and their document.
pub fn router() -> Router<AppState> {
    let (routes, doc) = routes_and_doc();
    let doc = std::sync::Arc::new(doc);
    routes.route(
        OPENAPI_PATH,
        get(move || {
            let doc = doc.clone();
            async move { Json(doc.as_ref().clone()) }
        }),
    )
}
