//! The express-session tutorial, rebuilt on gatehouse's session layer:
//! a login form, a visit counter, and logout.
//!
//! Both forms carry a CSRF token (`gatehouse::csrf`), so another site
//! cannot sign a visitor in or out behind their back.
//!
//! `cargo run --example express_tutorial`, then open http://127.0.0.1:3000
//! and sign in as alice / wonderland. `SESSION_STORE=sqlite|memory|cookie`
//! or `redis://host:6379/0` picks where sessions live (default sqlite, in
//! ./tutorial-sessions.db); `PORT` the port (0 picks a free one).

use gatehouse::{Form, MemoryStore, RedisStore, SessionLayer, SessionOptions, SqliteStore, csrf};
use rouille::{Request, Response, router};

fn page(body: &str) -> Response {
    Response::html(format!(
        "<!doctype html><title>Tutorial</title><main>{body}</main>"
    ))
}

/// The login page, with the browser's CSRF token in the form (and its
/// cookie on the answer when the browser has none yet).
fn login_page(sessions: &SessionLayer, request: &Request, notice: &str) -> Response {
    let token = sessions.csrf_token(request);
    token.attach(page(&format!(
        r#"{notice}<form method="post" action="/login">{}
  <label>Username <input name="username"></label>
  <label>Password <input name="password" type="password"></label>
  <button>Sign in</button></form>"#,
        token.hidden_input()
    )))
}

/// The form body of a POST whose CSRF token matches, or the answer that
/// refuses it: 400/413/415 for a malformed body, 403 without the token.
fn checked_form(sessions: &SessionLayer, request: &Request) -> Result<Form, Response> {
    // Form reads at most 64 KiB and refuses malformed bodies.
    let form = Form::from_request(request).map_err(|e| e.into_response())?;
    if sessions.csrf_ok(request, form.get(csrf::FIELD)) {
        Ok(form)
    } else {
        Err(
            Response::text("This form has expired: reload the page and try again.")
                .with_status_code(403),
        )
    }
}

fn main() {
    // In a real app, read the secret from the environment or a file.
    let secret = b"tutorial secret: replace me with 32+ random bytes".to_vec();
    let sessions = match std::env::var("SESSION_STORE").as_deref() {
        Ok("memory") => SessionLayer::new(MemoryStore::new(), secret),
        Ok("cookie") => SessionLayer::cookie_store(vec![secret], SessionOptions::default()),
        // As with connect-redis: several processes share the sessions.
        Ok(url) if url.starts_with("redis://") => {
            let store = RedisStore::open(url, "tutorial:").expect("connect to Redis");
            SessionLayer::new(store, secret)
        }
        _ => {
            let store =
                SqliteStore::open("tutorial-sessions.db".as_ref()).expect("open the database");
            SessionLayer::new(store, secret)
        }
    };
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let server = rouille::Server::new(format!("127.0.0.1:{port}"), move |request| {
        sessions.handle(request, |session| {
            router!(request,
                (GET) ["/"] => {
                    match session.get::<String>("user") {
                        Some(user) => {
                            let visits = session.increment("visits", 1).unwrap_or(0);
                            let token = sessions.csrf_token(request);
                            token.attach(page(&format!(
                                "<h1>Welcome, {user}</h1><p id=visits>You have visited {visits} times.</p>\
                                 <form method=post action=/logout>{}<button>Log out</button></form>",
                                token.hidden_input()
                            )))
                        }
                        None => login_page(&sessions, request, ""),
                    }
                },
                (POST) ["/login"] => {
                    let form = match checked_form(&sessions, request) {
                        Ok(form) => form,
                        Err(refused) => return refused,
                    };
                    let user = form.get("username").unwrap_or("");
                    if user != "alice" || form.get("password") != Some("wonderland") {
                        let notice = "<p>Wrong username or password.</p>";
                        return login_page(&sessions, request, notice).with_status_code(401);
                    }
                    // A new id at login stops session fixation.
                    if session.regenerate().is_err() || session.insert("user", user).is_err() {
                        return Response::text("session store failed").with_status_code(500);
                    }
                    Response::redirect_303("/")
                },
                (POST) ["/logout"] => {
                    if let Err(refused) = checked_form(&sessions, request) {
                        return refused;
                    }
                    let _ = session.destroy();
                    Response::redirect_303("/")
                },
                _ => Response::empty_404()
            )
        })
    })
    .expect("listen");
    println!("listening on http://{}", server.server_addr());
    server.run();
}
