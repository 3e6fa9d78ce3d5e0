//! The router: finds a request's route in the areas' tables (each area
//! declares each of its paths once, with its methods), answers `405` with
//! an `Allow` header from the table for a method the route does not take,
//! runs the checks the route's attributes ask for before anything else
//! (fetch metadata; for a form, its CSRF token), then calls the handler.

use rouille::{Request, Response};

use super::error::{Result, WebError};
use super::form::{self, Form};
use super::state::State;
use crate::auth::csrf;
use crate::auth::fetch::FetchMetadata;
use crate::auth::proxy::Client;
use crate::logging;

/// What every handler is.
pub(super) type Handler = fn(&State, &Request, &Client) -> Result<Response>;

/// The CSRF token a form route takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    /// The signed double-submit cookie's token: forms shown to visitors
    /// who may have no session yet (sign-in and its steps, setup, sign-up).
    Anonymous,
    /// The token bound to the session: the forms of a signed-in visitor.
    Session,
}

/// What a route's requests must show of fetch metadata (see
/// [`check_fetch_metadata`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fetch {
    /// One of gatehouse's pages: a POST must be a person's form
    /// submission on this origin; a GET is anyone's.
    Page,
    /// A page that carries the session's CSRF token: a GET, too, must be
    /// a top-level navigation, never a script's read.
    TokenPage,
    /// Called by scripts (the JSON API, the passkey options fetched by
    /// the page's own script with the form's token): left to their own
    /// checks.
    Script,
}

/// One path and everything about it: its handler for each method it
/// takes, the token a POST must carry first, and its fetch rule.
#[derive(Clone, Copy)]
pub(super) struct Route {
    /// The path; one ending in `*` is every path that starts with the rest.
    pub path: &'static str,
    /// `GET` (and `HEAD`).
    pub get: Option<Handler>,
    /// `POST`.
    pub post: Option<Handler>,
    /// `PATCH`.
    pub patch: Option<Handler>,
    /// The token a `POST` is refused without, checked before the handler
    /// runs (`None`: the JSON API, which has its own checks).
    pub token: Option<Token>,
    /// The fetch-metadata rule.
    pub fetch: Fetch,
    /// Whether the route exists just now (a closed sign-up is no route at
    /// all, for every method: not a form that refuses); `None`: always.
    pub open: Option<fn(&State) -> bool>,
    /// Whether scripts on any origin may read its answers (CORS with
    /// `Access-Control-Allow-Origin: *`, never with credentials): the
    /// OpenID Provider's discovery, JWKS, token and userinfo endpoints,
    /// which single-page apps call from their own origin. `OPTIONS` is
    /// then answered as a preflight.
    pub cors: bool,
}

impl Route {
    /// A path that takes no method yet; the methods follow.
    pub(super) const fn at(path: &'static str) -> Self {
        Self {
            path,
            get: None,
            post: None,
            patch: None,
            token: None,
            fetch: Fetch::Page,
            open: None,
            cors: false,
        }
    }

    /// Answers `GET` and `HEAD` with `handler`.
    pub(super) const fn get(mut self, handler: Handler) -> Self {
        self.get = Some(handler);
        self
    }

    /// A form: answers `POST` with `handler`, once `token` is checked.
    pub(super) const fn form(mut self, token: Token, handler: Handler) -> Self {
        self.post = Some(handler);
        self.token = Some(token);
        self
    }

    /// Answers `POST` with `handler`, which checks the request itself
    /// (the JSON API: `Origin` and a JSON content type).
    pub(super) const fn post(mut self, handler: Handler) -> Self {
        self.post = Some(handler);
        self
    }

    /// Answers `PATCH` with `handler`.
    pub(super) const fn patch(mut self, handler: Handler) -> Self {
        self.patch = Some(handler);
        self
    }

    /// The page carries the session's CSRF token.
    pub(super) const fn token_page(mut self) -> Self {
        self.fetch = Fetch::TokenPage;
        self
    }

    /// Scripts call it; fetch metadata is not asked.
    pub(super) const fn script(mut self) -> Self {
        self.fetch = Fetch::Script;
        self
    }

    /// Scripts on any origin may read it (see [`Route::cors`]); implies
    /// [`Route::script`].
    pub(super) const fn cors(mut self) -> Self {
        self.cors = true;
        self.fetch = Fetch::Script;
        self
    }

    /// The route exists only while `open` says so.
    pub(super) const fn when(mut self, open: fn(&State) -> bool) -> Self {
        self.open = Some(open);
        self
    }

    /// The methods it takes, as the `Allow` header of a `405` lists them.
    pub(super) const fn allow(&self) -> &'static str {
        match (
            self.get.is_some(),
            self.post.is_some(),
            self.patch.is_some(),
        ) {
            (true, false, false) => "GET, HEAD",
            (true, true, false) => "GET, HEAD, POST",
            (true, false, true) => "GET, HEAD, PATCH",
            (true, true, true) => "GET, HEAD, POST, PATCH",
            (false, true, false) => "POST",
            (false, true, true) => "POST, PATCH",
            (false, false, true) => "PATCH",
            (false, false, false) => "",
        }
    }

    #[inline]
    fn matches(&self, path: &str) -> bool {
        match self.path.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => self.path == path,
        }
    }
}

/// The route for `path` in `tables`: the one that names it exactly, else
/// the first whose prefix it starts with.
#[inline]
pub(super) fn find<'t>(tables: &[&'t [Route]], path: &str) -> Option<&'t Route> {
    let all = || tables.iter().flat_map(|t| t.iter());
    all()
        .find(|r| !r.path.ends_with('*') && r.matches(path))
        .or_else(|| all().find(|r| r.path.ends_with('*') && r.matches(path)))
}

/// Dispatches a request on its path and method.
///
/// # Errors
///
/// [`WebError::Forbidden`] when fetch metadata says no, `404` for a path no
/// table has (or one closed just now), `405` for a method the route does
/// not take, [`WebError::Csrf`] for a form without its token; else
/// whatever the handler returns.
#[inline]
pub(super) fn route(
    state: &State,
    request: &Request,
    client: &Client,
    tables: &[&[Route]],
) -> Result<Response> {
    let path = request.url();
    let method = request.method();
    let found = find(tables, &path);
    check_fetch_metadata(request, &path, found.map(|r| r.fetch))?;
    let Some(route) = found.filter(|r| r.open.is_none_or(|open| open(state))) else {
        return Err(WebError::NotFound);
    };
    if route.cors {
        if method == "OPTIONS" {
            return Ok(preflight(route));
        }
        return route_to(state, request, client, route, method).map(with_cors);
    }
    route_to(state, request, client, route, method)
}

/// `Access-Control-Allow-Origin: *` on a CORS route's answer. No
/// `Allow-Credentials`: a script elsewhere reads what it could fetch with
/// its own credentials (a token, a client secret), never with the
/// visitor's cookies.
#[inline]
fn with_cors(response: Response) -> Response {
    response.with_unique_header("Access-Control-Allow-Origin", "*")
}

/// The answer to a CORS preflight (`OPTIONS`) of a CORS route: the
/// methods it takes and the headers a relying party's script sends
/// (`Authorization` for Basic client credentials and Bearer tokens).
fn preflight(route: &Route) -> Response {
    Response::empty_204()
        .with_unique_header("Access-Control-Allow-Origin", "*")
        .with_unique_header(
            "Access-Control-Allow-Methods",
            format!("{}, OPTIONS", route.allow()),
        )
        .with_unique_header(
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type",
        )
        .with_unique_header("Access-Control-Max-Age", "600")
}

/// Calls the route's handler for `method` (its form token first).
#[inline]
fn route_to(
    state: &State,
    request: &Request,
    client: &Client,
    route: &Route,
    method: &str,
) -> Result<Response> {
    let handler = match method {
        "GET" | "HEAD" => route.get,
        "POST" => route.post,
        "PATCH" => route.patch,
        _ => None,
    };
    let Some(handler) = handler else {
        return Err(WebError::MethodNotAllowed(route.allow()));
    };
    match route.token {
        Some(token) if method == "POST" => {
            let request = token_first(state, request, token)?;
            handler(state, &request, client)
        }
        _ => handler(state, request, client),
    }
}

/// Checks a form's CSRF token before anything else looks at the request,
/// and hands on the request with its body still to be read.
///
/// A page elsewhere can make a browser POST any of these forms with its
/// cookies. Refused here, such a request never reaches code that reads the
/// form's fields, finds the user, looks at the host or answers by what it
/// found (a `400` for a host that is an address, a `303` to sign in, a
/// `404` for a closed sign-up): whatever the route, it gets the same `403`.
/// Only what finding the token needs comes first: the content type (`415`,
/// from the header alone), the body cap (`413`) and the form's syntax
/// (`400`).
///
/// A session-bound token is checked against the sessions the cookie names
/// (their signatures only, no store read); the handler checks it once more
/// against the session it loads.
///
/// # Errors
///
/// [`WebError::Csrf`] for a missing or wrong token, and those of reading
/// and parsing the form.
#[inline]
fn token_first(state: &State, request: &Request, token: Token) -> Result<Request> {
    let body = Form::body_of(request)?;
    let submitted = Form::parse(&body)?;
    let submitted = submitted.get(csrf::FIELD);
    let engine = state.engine();
    let cookies = request.header("Cookie");
    let valid = match token {
        Token::Anonymous => csrf::check_anonymous_header(engine.signer(), cookies, submitted),
        Token::Session => cookies.is_some_and(|header| {
            engine
                .cookie_keys(header)
                .iter()
                .any(|key| csrf::check_session(engine.signer(), key, submitted))
        }),
    };
    if valid {
        Ok(form::with_body(request, body))
    } else {
        Err(WebError::Csrf)
    }
}

/// Refuses what the browser says is not a top-level navigation: a form
/// POST to one of gatehouse's own pages sent by `fetch`/XHR, from a frame
/// or from another origin, and a script's read of a page that carries the
/// session's CSRF token. The threat is a script served by a prefix-mode app
/// (same origin as gatehouse) driving `/admin`; see `auth::fetch`. The JSON
/// API is meant for scripts and is left to its own checks.
///
/// `fetch` is the route's rule; a path no table has is a page (a POST to
/// it is refused as any other script's form POST), except under `/api/`.
#[inline]
fn check_fetch_metadata(request: &Request, path: &str, fetch: Option<Fetch>) -> Result<()> {
    let meta = FetchMetadata {
        site: request.header("Sec-Fetch-Site"),
        mode: request.header("Sec-Fetch-Mode"),
        dest: request.header("Sec-Fetch-Dest"),
    };
    let fetch = fetch.unwrap_or(if path.starts_with("/api/") {
        Fetch::Script
    } else {
        Fetch::Page
    });
    let verdict = match (fetch, request.method()) {
        (Fetch::Script, _) => Ok(()),
        (_, "POST") => meta.check_form_post(),
        (Fetch::TokenPage, "GET" | "HEAD") => meta.check_page(),
        _ => Ok(()),
    };
    verdict.map_err(|why| {
        logging::line(&format!(
            "refused request method={} path={} reason={why:?} sec_fetch_site={} sec_fetch_mode={} sec_fetch_dest={}",
            logging::quote(request.method()),
            logging::quote(&super::logged_path(path)),
            logging::quote(meta.site.unwrap_or("-")),
            logging::quote(meta.mode.unwrap_or("-")),
            logging::quote(meta.dest.unwrap_or("-")),
        ));
        WebError::Forbidden
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &State, _: &Request, _: &Client) -> Result<Response> {
        Ok(Response::text("ok"))
    }

    #[test]
    fn allow_lists_exactly_the_methods_a_route_takes() {
        assert_eq!(Route::at("/").get(ok).allow(), "GET, HEAD");
        assert_eq!(
            Route::at("/").get(ok).form(Token::Anonymous, ok).allow(),
            "GET, HEAD, POST"
        );
        assert_eq!(Route::at("/").form(Token::Session, ok).allow(), "POST");
        assert_eq!(Route::at("/").post(ok).allow(), "POST");
        assert_eq!(Route::at("/").patch(ok).allow(), "PATCH");
    }

    #[test]
    fn an_exact_path_wins_over_a_prefix_and_a_prefix_takes_the_rest() {
        const A: &[Route] = &[Route::at("/assets/*").get(ok)];
        const B: &[Route] = &[Route::at("/assets/special").post(ok)];
        let tables: &[&[Route]] = &[A, B];
        assert_eq!(
            find(tables, "/assets/special").map(|r| r.path),
            Some("/assets/special")
        );
        assert_eq!(
            find(tables, "/assets/style.css").map(|r| r.path),
            Some("/assets/*")
        );
        assert_eq!(find(tables, "/assets/").map(|r| r.path), Some("/assets/*"));
        assert!(find(tables, "/assets").is_none());
        assert!(find(tables, "/other").is_none());
    }
}
