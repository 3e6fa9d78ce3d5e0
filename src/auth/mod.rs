//! The login flow's guards. No HTTP library's types; `web` asks them.
//!
//! | module | owns |
//! | --- | --- |
//! | `access` | the one access decision: may this principal have this target, by the app's rules |
//! | `apps` | the guarded apps: how each is reached (prefix, host), its upstream, its rules, the default policy; which app a request is for |
//! | `csrf` | CSRF tokens: the anonymous signed double-submit pair, and the token bound to a session |
//! | `fetch` | fetch metadata: which requests a browser sent as a person's top-level navigation |
//! | `path` | the one normalised form of a request path every decision uses |
//! | `proxy` | which client address and scheme to believe behind a reverse proxy |
//! | `redirect` | where a sign-in may send the browser next |
//! | `throttle` | login throttling per username and per client address |

pub mod access;
pub mod apps;
pub mod csrf;
pub mod fetch;
pub mod path;
pub mod proxy;
pub mod redirect;
pub mod throttle;
