//! The API's own description, `GET /api/openapi.yaml`.

use rouille::{Request, Response};

use crate::auth::proxy::Client;
use crate::web::error::Result;
use crate::web::state::State;

/// The OpenAPI document, served at `/api/openapi.yaml`.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.yaml");

/// `GET /api/openapi.yaml`.
pub(super) fn openapi(_: &State, _: &Request, _: &Client) -> Result<Response> {
    Ok(
        Response::from_data("application/yaml; charset=utf-8", OPENAPI)
            .with_additional_header("Cache-Control", "public, max-age=3600"),
    )
}
