//! [`SessionLayer`]: server-side sessions for any rouille app, the way
//! express-session serves an Express app, and (in [`csrf`]) tokens for the
//! forms such an app renders. gatehouse's own pages run on the same
//! [`Engine`].

pub mod csrf;

use std::sync::Arc;
use std::time::Duration;

use rouille::{Request, Response};

use crate::crypto::Signer;
use crate::session::{Engine, Reaper, RequestInfo, Session, SessionOptions, Store, StoreError};

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
///
/// # HTTPS
///
/// rouille (3.6) reports every request as plain HTTP
/// (`Request::is_secure` is always `false`, even on a TLS listener), so the
/// layer cannot see HTTPS by itself, and cookies it sets lack `Secure`
/// unless told. When every request reaches your app over HTTPS (your
/// rouille server speaks TLS, or a proxy in front of it terminates TLS for
/// every request), say so with [`https(true)`](Self::https); to force
/// `Secure` whatever the request, set `force_secure` in
/// [`SessionOptions::cookie`]. Behind a proxy that serves both schemes,
/// decide per request and pass it in [`RequestInfo::https`] to
/// [`handle_with`](Self::handle_with).
pub struct SessionLayer {
    engine: Engine,
    reaper: Option<Reaper>,
    https: bool,
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
            https: false,
        }
    }

    /// Sessions kept in the browser, in an encrypted cookie: no database at
    /// all. The record is encrypted and authenticated (XChaCha20-Poly1305,
    /// keys derived from the secrets). What that costs: about 4 KB of data
    /// at most (a bigger session fails to save rather than being cut), no
    /// early revocation (a copy of the cookie works until it expires;
    /// rotating the secrets ends every session), last write wins.
    ///
    /// # Panics
    ///
    /// With no secrets.
    pub fn cookie_store(secrets: Vec<Vec<u8>>, options: SessionOptions) -> Self {
        Self {
            engine: Engine::cookie_store(&secrets, options),
            reaper: None,
            https: false,
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

    /// Whether every request [`handle`](Self::handle) sees came over HTTPS
    /// (default `false`): cookies set by the layer, the session's and
    /// [`csrf`]'s, are then `Secure`. rouille cannot tell (see
    /// [HTTPS](Self#https)), so the app says it.
    ///
    /// **Warning**: leaving this `false` on an HTTPS-only app sends session
    /// cookies without `Secure`; a browser then also sends them over plain
    /// HTTP to the same host, where anyone on the path can read them.
    #[must_use]
    pub fn https(mut self, https: bool) -> Self {
        self.https = https;
        self
    }

    /// Whether `request` came over HTTPS, as far as the layer can know.
    fn https_for(&self, request: &Request) -> bool {
        self.https || request.is_secure()
    }

    /// A layer on an existing engine (gatehouse's server builds its own).
    #[doc(hidden)]
    pub fn from_engine(engine: Engine) -> Self {
        Self {
            engine,
            reaper: None,
            https: false,
        }
    }

    /// The engine underneath (gatehouse's server reads its store and signer).
    #[doc(hidden)]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs `handler` with the request's session, then saves what changed
    /// and adds the `Set-Cookie` header. A store failure becomes a `500`
    /// (logged to standard error; the client sees a fixed text).
    ///
    /// The request counts as HTTPS when [`https`](Self::https) says so; its
    /// client address is the TCP peer's. Behind a proxy, use
    /// [`handle_with`](Self::handle_with) to pass what the proxy says.
    pub fn handle(
        &self,
        request: &Request,
        handler: impl FnOnce(&Session<'_>) -> Response,
    ) -> Response {
        let info = RequestInfo {
            cookie_header: request.header("Cookie"),
            https: self.https_for(request),
            user_agent: request.header("User-Agent"),
            ip: Some(crate::logging::ip_text(request.remote_addr().ip())),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn session_cookie(sessions: &SessionLayer) -> String {
        let request = Request::fake_http("GET", "/", vec![], vec![]);
        let response = sessions.handle(&request, |session| {
            session.insert("k", 1).expect("a valid key");
            Response::text("")
        });
        response
            .headers
            .iter()
            .find(|(k, _)| k == "Set-Cookie")
            .map(|(_, v)| v.to_string())
            .expect("a new session sets its cookie")
    }

    fn layer() -> SessionLayer {
        SessionLayer::new(
            MemoryStore::new(),
            b"a test secret that is long enough!!".to_vec(),
        )
    }

    #[test]
    fn rouille_requests_are_plain_http_unless_the_layer_is_told_of_https() {
        // rouille's fake requests, like its real ones, say `is_secure() == false`.
        assert!(!session_cookie(&layer()).contains("Secure"));
        let cookie = session_cookie(&layer().https(true));
        assert!(
            cookie.ends_with("; HttpOnly; Secure; SameSite=Lax"),
            "{cookie}"
        );
        assert!(!session_cookie(&layer().https(true).https(false)).contains("Secure"));
    }
}
