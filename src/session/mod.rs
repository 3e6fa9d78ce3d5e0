//! Sessions: ids, cookies, the [`Store`] trait and its stores (SQLite,
//! PostgreSQL, Redis, memory) with the [`conformance`] suite they all pass,
//! the [`Engine`] that loads and saves them (or seals them into the cookie
//! instead), and the reaper.
//!
//! Nothing here sees an HTTP library's types; see `web` for the glue. The
//! pools the stores use are `db`'s; signing is [`crate::crypto`]'s; the
//! user read with a session is [`crate::identity::User`].
//!
//! | module | owns |
//! | --- | --- |
//! | `id` | session ids and the keys (SHA-256) they are stored under |
//! | `keys` | every key gatehouse keeps in a session's data |
//! | `cookie` | finding a cookie in a `Cookie` header; writing `Set-Cookie` |
//! | `store` | the [`Store`] trait, its records and patches |
//! | `sqlite`, `postgres`, `redis`, `memory` | the stores |
//! | `sealed` | the cookie store: the whole session sealed into the cookie |
//! | `conformance` | the suite every store passes |
//! | `engine` | the [`Engine`]: a request's cookie to a [`Session`], and back |
//! | `verified` | cookies that verified before, kept with their ids and keys |
//! | `reaper` | the thread that deletes expired sessions |

pub mod conformance;
pub mod cookie;
mod engine;
mod id;
pub mod keys;
mod memory;
mod postgres;
mod reaper;
mod redis;
mod sealed;
mod sqlite;
mod store;
mod verified;

pub use cookie::{CookieOptions, SameSite};
pub use engine::{Engine, RequestInfo, Session, SessionError, SessionOptions};
pub use id::{SessionId, SessionKey};
pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use reaper::Reaper;
pub use redis::RedisStore;
pub use sealed::{MAX_SEALED, Sealer};
pub use sqlite::SqliteStore;
pub use store::{Change, Patch, Record, Store, StoreError, Touch, User, UserId, valid_key};
