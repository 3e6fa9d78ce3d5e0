//! The login flow's guards: CSRF tokens, login throttling, safe redirect
//! targets, and which client address to believe behind a proxy.

pub mod apps;
pub mod csrf;
pub mod fetch;
pub mod proxy;
pub mod redirect;
pub mod throttle;
