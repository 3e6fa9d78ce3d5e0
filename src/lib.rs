//! gatehouse gives small intranet apps a real login: users and server-side
//! sessions in one SQLite file (or, for several instances, PostgreSQL and
//! Redis), its own pages, and a gate for other apps.
//!
//! As a library it is to a [rouille] app what express-session is to an
//! Express app: [`SessionLayer`] loads the request's session before your
//! handler and saves it after, with
//!
//! - signed cookies (`<id>.<HMAC-SHA256>`, secrets rotate), only the SHA-256
//!   of each id stored;
//! - lazy creation: a visitor you store nothing for gets no row and no
//!   cookie (`saveUninitialized: false`);
//! - idle and absolute expiry, activity written at most once per touch
//!   interval, and saves only when something changed (`resave: false`),
//!   writing only the keys that changed so concurrent requests lose nothing;
//! - atomic counters ([`Session::increment`]), [`Session::regenerate`] and
//!   [`Session::destroy`];
//! - stores: [`SqliteStore`] (a file), [`RedisStore`] (Redis or Valkey,
//!   shared by several processes, with server-side expiry),
//!   [`MemoryStore`] (a restart forgets), or your own [`Store`] (gatehouse's
//!   own server also uses a PostgreSQL store); or no store at all with
//!   [`SessionLayer::cookie_store`], which keeps the session encrypted in
//!   the cookie;
//! - CSRF tokens for the forms your app renders ([`csrf`]:
//!   [`SessionLayer::csrf_token`] and [`SessionLayer::csrf_ok`]), and
//!   [`Form`] to read a form body with a size cap;
//! - [`SessionLayer::https`] to say that requests come over HTTPS, which
//!   rouille cannot tell by itself (see [HTTPS](SessionLayer#https)).
//!
//! ```no_run
//! use gatehouse::{SessionLayer, SessionOptions, SqliteStore};
//! use std::time::Duration;
//!
//! // Or MemoryStore::new(), RedisStore::open(url, prefix), or your own Store.
//! let store = SqliteStore::open("sessions.db".as_ref()).expect("open the database");
//! let secret = std::fs::read("session-secret").expect("32 or more random bytes, kept private");
//! let options = SessionOptions { idle_timeout: Duration::from_secs(1800), ..Default::default() };
//! let sessions = SessionLayer::with_options(store, vec![secret], options)
//!     .https(false) // true when every request comes over HTTPS: rouille cannot tell
//!     .reap_every(Duration::from_secs(60)) // deletes expired sessions
//!     .expect("reaper thread");
//!
//! rouille::start_server("127.0.0.1:3000", move |request| {
//!     sessions.handle(request, |session| {
//!         let visits = session.increment("visits", 1).unwrap_or(0); // atomic, never loses a count
//!         rouille::Response::text(format!("visit {visits}"))
//!     })
//! });
//! ```
//!
//! Store your own type: anything `Serialize`/`Deserialize` goes in with
//! [`Session::insert`] and comes out with [`Session::get`]:
//!
//! ```
//! # use gatehouse::{MemoryStore, SessionLayer};
//! # use rouille::{Request, Response};
//! #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
//! struct Cart { items: Vec<u32> }
//!
//! let sessions = SessionLayer::new(MemoryStore::new(), b"a secret of at least 32 bytes!!!".to_vec());
//! let response = sessions.handle(&Request::fake_http("GET", "/", vec![], vec![]), |session| {
//!     session.insert("cart", Cart { items: vec![7] }).expect("a valid key");
//!     assert_eq!(session.get::<Cart>("cart"), Some(Cart { items: vec![7] }));
//!     session.remove("cart").expect("a valid key");
//!     Response::text("ok")
//! });
//! assert_eq!(response.status_code, 200);
//! ```
//!
//! A login form: the token goes in the form and its cookie on the answer,
//! and a POST that does not repeat it is refused (the complete app is
//! `examples/express_tutorial.rs`):
//!
//! ```
//! use gatehouse::{Form, MemoryStore, SessionLayer, csrf};
//! use rouille::{Request, Response};
//!
//! fn app(sessions: &SessionLayer, request: &Request) -> Response {
//!     sessions.handle(request, |session| match request.method() {
//!         "GET" => {
//!             let token = sessions.csrf_token(request);
//!             token.attach(Response::html(format!(
//!                 r#"<form method="post">{}<input name="user"><button>Sign in</button></form>"#,
//!                 token.hidden_input()
//!             )))
//!         }
//!         _ => {
//!             let form = match Form::from_request(request) {
//!                 Ok(form) => form,
//!                 Err(e) => return e.into_response(),
//!             };
//!             if !sessions.csrf_ok(request, form.get(csrf::FIELD)) {
//!                 return Response::text("reload the form and try again").with_status_code(403);
//!             }
//!             // A new id at sign-in stops session fixation.
//!             match session.regenerate().and_then(|()| session.insert("user", form.get("user"))) {
//!                 Ok(()) => Response::redirect_303("/"),
//!                 Err(_) => Response::text("session store failed").with_status_code(500),
//!             }
//!         }
//!     })
//! }
//!
//! let sessions = SessionLayer::new(MemoryStore::new(), b"a secret of at least 32 bytes!!!".to_vec());
//! let forged = Request::fake_http(
//!     "POST",
//!     "/",
//!     vec![("Content-Type".into(), "application/x-www-form-urlencoded".into())],
//!     b"user=mallory".to_vec(),
//! );
//! assert_eq!(app(&sessions, &forged).status_code, 403);
//! ```
//!
//! Your own [`Store`] works on [`Record`]s (saved as a [`Patch`] of
//! [`Change`]s with a [`Touch`], keyed by [`SessionKey`], failing with
//! [`StoreError`]); the [`conformance`] suite checks it against the rules
//! every store keeps.
//!
//! Everything else in the crate is the gatehouse server itself, hidden from
//! these docs and free to change between releases: rely only on what is
//! shown here.
//!
//! [rouille]: https://docs.rs/rouille

// The server's modules: `pub` because the binary and the integration tests
// use them, hidden because they are not the library (DESIGN.md's layers,
// top to bottom: `cli -> app -> web -> accounts -> {auth, session, users} -> db`,
// with the bottom helpers `crypto`, `identity`, `clock`, `files` and
// `logging` usable by all).
#[doc(hidden)]
pub mod accounts;
#[doc(hidden)]
pub mod app;
#[doc(hidden)]
pub mod auth;
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod clock;
#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod crypto;
#[doc(hidden)]
pub mod db;
#[doc(hidden)]
pub mod files;
#[doc(hidden)]
pub mod identity;
#[cfg(test)]
mod layers;
#[doc(hidden)]
pub mod logging;
#[doc(hidden)]
pub mod session;
#[doc(hidden)]
pub mod tls;
#[doc(hidden)]
pub mod users;
#[doc(hidden)]
pub mod web;

// The library: everything documented, and nothing else. docs/library.md
// names each of these (tests/http/library.rs checks it).
pub use clock::Millis;
pub use db::DbError;
pub use session::conformance;
pub use session::{
    Change, CookieOptions, MemoryStore, Patch, Record, RedisStore, RequestInfo, SameSite, Session,
    SessionError, SessionId, SessionKey, SessionOptions, SqliteStore, Store, StoreError, Touch,
    User, UserId, valid_key,
};
pub use web::WebError;
pub use web::form::Form;
pub use web::layer::{SessionLayer, csrf};
