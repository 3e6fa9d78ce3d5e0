//! The login flow's guards. No HTTP library's types; `web` asks them.
//!
//! | module | owns |
//! | --- | --- |
//! | `apps` | the guarded apps: how each is reached (prefix, host), its upstream, who may use it, the default policy |
//! | `csrf` | CSRF tokens: the anonymous signed double-submit pair, and the token bound to a session |
//! | `fetch` | fetch metadata: which requests a browser sent as a person's top-level navigation |
//! | `path` | the one normalised form of a request path every decision uses |
//! | `proxy` | which client address and scheme to believe behind a reverse proxy |
//! | `redirect` | where a sign-in may send the browser next |
//! | `throttle` | login throttling per username and per client address |

pub mod apps;
pub mod csrf;
pub mod fetch;
pub mod path;
pub mod proxy;
pub mod redirect;
pub mod throttle;
