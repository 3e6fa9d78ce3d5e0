//! Static assets, compiled into the binary.

use rouille::{Request, Response};

use super::error::{Result, WebError};
use super::router::Route;
use super::state::State;
use crate::auth::proxy::Client;

/// Every asset, under one prefix.
pub(super) const ROUTES: &[Route] = &[Route::at("/assets/*").get(get_asset)];

const STYLE: &[u8] = include_bytes!("../../assets/style.css");
const ICON: &[u8] = include_bytes!("../../assets/icon.svg");
const PASSKEY: &[u8] = include_bytes!("../../assets/passkey.js");
const SIGNED_OUT: &[u8] = include_bytes!("../../assets/signed-out.js");

/// `GET /assets/<name>`.
fn get_asset(_: &State, request: &Request, _: &Client) -> Result<Response> {
    let path = request.url();
    let name = path.strip_prefix("/assets/").unwrap_or("");
    get(name).ok_or(WebError::NotFound)
}

/// The asset at `name`, if there is one.
fn get(name: &str) -> Option<Response> {
    let (body, mime) = match name {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        "passkey.js" => (PASSKEY, "text/javascript; charset=utf-8"),
        "signed-out.js" => (SIGNED_OUT, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    Some(
        Response::from_data(mime, body)
            .with_additional_header("Cache-Control", "public, max-age=3600"),
    )
}
