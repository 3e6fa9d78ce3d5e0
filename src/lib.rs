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
//!   the cookie.
//!
//! ```no_run
//! use gatehouse::{SessionLayer, SessionOptions, SqliteStore};
//! use std::time::Duration;
//!
//! let store = SqliteStore::open("sessions.db".as_ref()).expect("database");
//! let options = SessionOptions { idle_timeout: Duration::from_secs(1800), ..Default::default() };
//! let sessions = SessionLayer::with_options(store, vec![b"32 or more secret bytes, kept private".to_vec()], options)
//!     .reap_every(Duration::from_secs(60))
//!     .expect("reaper thread");
//!
//! rouille::start_server("127.0.0.1:3000", move |request| {
//!     sessions.handle(request, |session| {
//!         let name: Option<String> = session.get("name");
//!         rouille::Response::text(format!("hello, {}", name.as_deref().unwrap_or("stranger")))
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
//! The rest of the crate is the gatehouse server itself. Layers, top to
//! bottom: `cli -> app -> web -> {auth, session, users} -> db`, with the
//! bottom helpers `crypto`, `identity`, `clock` and `logging` usable by all.
//!
//! [rouille]: https://docs.rs/rouille

pub mod accounts;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod files;
pub mod identity;
pub mod logging;
pub mod session;
pub mod tls;
pub mod users;
pub mod web;

pub use session::{
    CookieOptions, Engine, MemoryStore, PostgresStore, RedisStore, SameSite, Session, SessionError,
    SessionOptions, SqliteStore, Store,
};
pub use web::layer::SessionLayer;
