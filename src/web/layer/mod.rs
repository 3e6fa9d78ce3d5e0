//! [`SessionLayer`]: server-side sessions for any rouille app, the way
//! express-session serves an Express app. gatehouse's own pages run on the
//! same [`Engine`].

use std::sync::Arc;
use std::time::Duration;

use rouille::{Request, Response};

use crate::session::{
    Engine, Reaper, RequestInfo, Session, SessionOptions, Signer, Store, StoreError,
};

/// Sessions for a rouille app: load before the handler, save and set the
/// cookie after it.
///
/// ```
/// use gatehouse::{MemoryStore, SessionLayer};
/// use rouille::{Request, Response};
///
/// let sessions = SessionLayer::new(MemoryStore::new(), b"a secret of at least 32 bytes!!!".to_vec());
/// let handler = |request: &Request| {
///     sessions.handle(request, |session| {
///         let visits = session.increment("visits", 1).unwrap_or(0);
///         Response::text(format!("visit number {visits}"))
///     })
/// };
///
/// // rouille's fake requests make this runnable without a network.
/// let response = handler(&Request::fake_http("GET", "/", vec![], vec![]));
/// let cookie = response.headers.iter().find(|(k, _)| k == "Set-Cookie").expect("a new session").1.to_string();
/// assert!(cookie.starts_with("gatehouse_session=") && cookie.contains("HttpOnly"));
///
/// let again = Request::fake_http("GET", "/", vec![("Cookie".into(), cookie.split(';').next().unwrap().into())], vec![]);
/// let mut body = String::new();
/// std::io::Read::read_to_string(&mut handler(&again).data.into_reader_and_size().0, &mut body).unwrap();
/// assert_eq!(body, "visit number 2");
/// ```
pub struct SessionLayer {
    engine: Engine,
    reaper: Option<Reaper>,
}

impl SessionLayer {
    /// Sessions in `store`, cookies signed with `secret` (32 bytes or more,
    /// kept private), default options.
    pub fn new(store: impl Store, secret: Vec<u8>) -> Self {
        Self::with_options(store, vec![secret], SessionOptions::default())
    }

    /// Sessions in `store`. The first of `secrets` signs, all verify (for
    /// rotation).
    ///
    /// # Panics
    ///
    /// With no secrets.
    pub fn with_options(store: impl Store, secrets: Vec<Vec<u8>>, options: SessionOptions) -> Self {
        Self {
            engine: Engine::new(Arc::new(store), Signer::new(secrets), options),
            reaper: None,
        }
    }

    /// Sessions kept in the browser, in an encrypted cookie: no database at
    /// all. See [`crate::session::Sealer`] for what that costs: about 4 KB of
    /// data at most, no early revocation, last write wins.
    ///
    /// # Panics
    ///
    /// With no secrets.
    pub fn cookie_store(secrets: Vec<Vec<u8>>, options: SessionOptions) -> Self {
        Self {
            engine: Engine::cookie_store(&secrets, options),
            reaper: None,
        }
    }

    /// Deletes expired sessions from the store every `interval`, on a
    /// background thread that stops when the layer is dropped.
    ///
    /// # Errors
    ///
    /// When the thread cannot be started.
    pub fn reap_every(mut self, interval: Duration) -> std::io::Result<Self> {
        self.reaper = Some(Reaper::start(
            Arc::clone(self.engine.store()),
            interval,
            |_| {},
        )?);
        Ok(self)
    }

    /// A layer on an existing engine (gatehouse's server builds its own).
    pub fn from_engine(engine: Engine) -> Self {
        Self {
            engine,
            reaper: None,
        }
    }

    /// The engine underneath.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs `handler` with the request's session, then saves what changed
    /// and adds the `Set-Cookie` header. A store failure becomes a `500`.
    pub fn handle(
        &self,
        request: &Request,
        handler: impl FnOnce(&Session<'_>) -> Response,
    ) -> Response {
        let info = RequestInfo {
            cookie_header: request.header("Cookie"),
            https: request.is_secure(),
            user_agent: request.header("User-Agent"),
            ip: Some(request.remote_addr().ip().to_string()),
        };
        self.handle_with(info, |session| Ok::<_, StoreError>(handler(session)))
            .unwrap_or_else(|e| failed(&e))
    }

    /// Like [`handle`](Self::handle), with the request facts supplied by the
    /// caller (a server behind a proxy knows the real client address and
    /// scheme) and a fallible handler. When the handler fails, the changes
    /// it buffered are dropped and its error returned.
    ///
    /// # Errors
    ///
    /// The handler's error, or a store failure converted into `E`.
    pub fn handle_with<E: From<StoreError>>(
        &self,
        info: RequestInfo<'_>,
        handler: impl FnOnce(&Session<'_>) -> Result<Response, E>,
    ) -> Result<Response, E> {
        let session = self.engine.start(info)?;
        let response = handler(&session)?;
        Ok(match self.engine.finish(session)? {
            Some(cookie) => response.with_additional_header("Set-Cookie", cookie),
            None => response,
        })
    }
}

fn failed(e: &dyn std::error::Error) -> Response {
    crate::logging::line(&format!(
        "session store failed: {}",
        crate::logging::quote(&e.to_string())
    ));
    Response::text("session store unavailable").with_status_code(500)
}

impl Drop for SessionLayer {
    fn drop(&mut self) {
        if let Some(r) = self.reaper.take() {
            r.stop();
        }
    }
}
