//! Operator endpoints: `/healthz` and `/metrics`.

use rouille::{Request, Response};

use super::error::{Result, WebError};
use super::router::Route;
use super::state::State;
use crate::auth::proxy::Client;
use crate::logging;

/// The operator's paths (`/metrics` only while it is served).
pub(super) const ROUTES: &[Route] = &[
    Route::at("/healthz").get(healthz),
    Route::at("/metrics")
        .get(metrics)
        .when(|state| state.metrics_access.is_some()),
];

/// `GET /healthz`: `ok`, or `503` with what failed. A directory that the
/// last sign-in or sync could not reach is named, but the answer stays
/// `200`: local users and signed-in sessions work without it, and a load
/// balancer must not take gatehouse away from them.
fn healthz(state: &State, _: &Request, _: &Client) -> Result<Response> {
    Ok(match (state.health)() {
        Ok(()) if state.users.directory().is_some_and(|d| d.unreachable()) => {
            Response::text("ok; the directory cannot be reached (see the log)")
        }
        Ok(()) => Response::text("ok"),
        Err(e) => {
            logging::line(&format!(
                "healthz failed reason={} detail={}",
                logging::quote(e.reason),
                logging::quote(&e.detail)
            ));
            Response::text(e.reason)
                .with_status_code(503)
                .with_additional_header("Retry-After", "5")
        }
    })
}

/// `GET /metrics`: 404 unless enabled; 401 without the configured token.
fn metrics(state: &State, request: &Request, _: &Client) -> Result<Response> {
    let Some(token) = &state.metrics_access else {
        return Err(WebError::NotFound);
    };
    if let Some(token) = token {
        let given = request
            .header("Authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("");
        let ok: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.expose()).into();
        if !ok {
            return Ok(Response::text("a bearer token is required")
                .with_status_code(401)
                .with_additional_header("WWW-Authenticate", "Bearer"));
        }
    }
    let active = state.engine().store().count(crate::clock::now())?;
    let text = state
        .metrics
        .render(i64::try_from(active).unwrap_or(i64::MAX));
    Ok(Response::from_data(
        "text/plain; version=0.0.4; charset=utf-8",
        text,
    ))
}
