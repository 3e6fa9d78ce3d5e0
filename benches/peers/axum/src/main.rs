//! axum + tower-sessions 0.14 with the sqlx SQLite store (WAL): form login
//! (bcrypt cost 10), a read-only "who am I", and the visit counter.

use std::str::FromStr;

use axum::Form;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use serde::Deserialize;
use tower_sessions::{Session, SessionManagerLayer};
use tower_sessions_sqlx_store::SqliteStore;
use tower_sessions_sqlx_store::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool};

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

async fn login(session: Session, Form(form): Form<Login>) -> impl IntoResponse {
    let hash = HASH.get().expect("hash").clone();
    let ok = tokio::task::spawn_blocking(move || bcrypt::verify(form.password, &hash).unwrap_or(false))
        .await
        .unwrap_or(false);
    if form.username != "alice" || !ok {
        return (StatusCode::UNAUTHORIZED, "wrong username or password").into_response();
    }
    session.cycle_id().await.expect("cycle");
    session.insert("user", "alice").await.expect("insert");
    Redirect::to("/").into_response()
}

async fn whoami(session: Session) -> impl IntoResponse {
    match session.get::<String>("user").await.expect("get") {
        Some(user) => ([("Remote-User", user)], "ok").into_response(),
        None => (StatusCode::UNAUTHORIZED, "not signed in").into_response(),
    }
}

async fn visits(session: Session) -> impl IntoResponse {
    let Some(user) = session.get::<String>("user").await.expect("get") else {
        return Redirect::to("/login").into_response();
    };
    let views: u64 = session.get("views").await.expect("get").unwrap_or(0) + 1;
    session.insert("views", views).await.expect("insert");
    format!("Welcome, {user}. Visits: {views}").into_response()
}

#[tokio::main]
async fn main() {
    HASH.set(bcrypt::hash("correct horse", 10).expect("hash")).expect("once");
    let db = std::env::var("DB").unwrap_or_else(|_| "axum-sessions.db".into());
    let options = SqliteConnectOptions::from_str(&format!("sqlite:{db}"))
        .expect("url")
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePool::connect_with(options).await.expect("pool");
    let store = SqliteStore::new(pool);
    store.migrate().await.expect("migrate");
    let app = Router::new()
        .route("/", get(visits))
        .route("/whoami", get(whoami))
        .route("/login", post(login))
        .layer(SessionManagerLayer::new(store).with_secure(false));
    let port = std::env::var("PORT").unwrap_or_else(|_| "0".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await.expect("bind");
    println!("listening on http://{}", listener.local_addr().expect("addr"));
    axum::serve(listener, app).await.expect("serve");
}
