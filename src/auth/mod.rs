//! The login flow's guards: CSRF tokens, login throttling, safe redirect
//! targets, which client address to believe behind a proxy, and the one
//! normalised form of a request path.

pub mod apps;
pub mod csrf;
pub mod fetch;
pub mod path;
pub mod proxy;
pub mod redirect;
pub mod throttle;
