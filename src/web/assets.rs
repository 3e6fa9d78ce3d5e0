//! Static assets, compiled into the binary.

use rouille::Response;

const STYLE: &[u8] = include_bytes!("../../assets/style.css");
const ICON: &[u8] = include_bytes!("../../assets/icon.svg");
const PASSKEY: &[u8] = include_bytes!("../../assets/passkey.js");

/// The asset at `name`, if there is one.
pub fn get(name: &str) -> Option<Response> {
    let (body, mime) = match name {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        "passkey.js" => (PASSKEY, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    Some(
        Response::from_data(mime, body)
            .with_additional_header("Cache-Control", "public, max-age=3600"),
    )
}
