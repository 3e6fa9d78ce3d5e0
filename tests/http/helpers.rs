//! The test harness: a real gatehouse on 127.0.0.1:0 with a fresh data
//! directory, and a tiny browser (ureq with a cookie jar, redirects off).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use gatehouse::app::{self, Running};
use gatehouse::config::{Config, Layers};
use gatehouse::users::{User, Username};

/// A command for one of the project's own binaries. When the tests run
/// for another architecture under an emulator (`GATEHOUSE_TEST_RUNNER`, e.g.
/// `qemu-aarch64-static`, set by `.ci/run`), binaries are started through it.
pub fn command(binary: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    match std::env::var_os("GATEHOUSE_TEST_RUNNER").filter(|r| !r.is_empty()) {
        Some(runner) => {
            let mut c = std::process::Command::new(runner);
            c.arg(binary);
            c
        }
        None => std::process::Command::new(binary),
    }
}

/// The backend the suite runs on, from `GATEHOUSE_TEST_BACKEND`:
/// `sqlite` (the default), `postgres` (users and sessions in PostgreSQL,
/// at `GATEHOUSE_TEST_POSTGRES`) or `redis` (users in PostgreSQL, sessions
/// and throttling in Redis at `GATEHOUSE_TEST_REDIS`). Over TLS, the URLs
/// say so (`sslmode=verify-full`, `rediss://`) and
/// `GATEHOUSE_TEST_POSTGRES_CA_FILE` and `GATEHOUSE_TEST_REDIS_CA_FILE`
/// name the servers' CA files.
pub fn backend() -> &'static str {
    static BACKEND: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    BACKEND.get_or_init(
        || match std::env::var("GATEHOUSE_TEST_BACKEND").as_deref() {
            Ok("postgres") => "postgres",
            Ok("redis") => "redis",
            Ok("sqlite" | "") | Err(_) => "sqlite",
            Ok(other) => panic!("GATEHOUSE_TEST_BACKEND={other}: use sqlite, postgres or redis"),
        },
    )
}

/// Whether the suite runs on SQLite; otherwise says that the calling test,
/// which looks inside the SQLite file, is skipped.
pub fn on_sqlite(test: &str) -> bool {
    let sqlite = backend() == "sqlite";
    if !sqlite {
        eprintln!(
            "{test}: skipped on {}: it checks the SQLite file itself",
            backend()
        );
    }
    sqlite
}

fn required(var: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("GATEHOUSE_TEST_BACKEND={} needs {var}", backend()))
}

/// The settings that put the data directory `dir` on the suite's backend:
/// none for SQLite; a fresh PostgreSQL schema and Redis prefix per
/// directory otherwise, the same ones every time for the same directory (so
/// a restart, or the CLI on that directory, finds the same data).
pub fn backend_settings(dir: &Path) -> Vec<(String, String)> {
    static MADE: Mutex<BTreeMap<PathBuf, Vec<(String, String)>>> = Mutex::new(BTreeMap::new());
    if backend() == "sqlite" {
        return Vec::new();
    }
    let mut made = MADE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    made.entry(dir.to_owned())
        .or_insert_with(|| {
            let postgres = required("GATEHOUSE_TEST_POSTGRES");
            let url = gatehouse::db::postgres::scratch_schema(&postgres).expect("scratch schema");
            let mut settings = vec![("database".to_owned(), url)];
            settings.extend(ca_file(
                "database_ca_file",
                "GATEHOUSE_TEST_POSTGRES_CA_FILE",
            ));
            if backend() == "redis" {
                settings.push(("session_store".to_owned(), required("GATEHOUSE_TEST_REDIS")));
                settings.extend(ca_file(
                    "session_store_ca_file",
                    "GATEHOUSE_TEST_REDIS_CA_FILE",
                ));
                settings.push((
                    "store_prefix".to_owned(),
                    gatehouse::db::redis::scratch_prefix(),
                ));
            }
            settings
        })
        .clone()
}

/// `setting` set to the CA file named by `var`, when it names one.
pub fn ca_file(setting: &str, var: &str) -> Option<(String, String)> {
    let path = std::env::var(var).ok().filter(|v| !v.is_empty())?;
    Some((setting.to_owned(), path))
}

/// The same settings as environment variables, for the real binary.
pub fn backend_env(dir: &Path) -> Vec<(String, String)> {
    backend_settings(dir)
        .into_iter()
        .map(|(k, v)| (gatehouse::config::env_name(&k), v))
        .collect()
}

/// Runs a command of the real binary on a data directory a server of
/// this process has just released, again while it answers that the
/// directory is held (for up to 10 s): another test's child, forked while
/// the old server's lock file was open, holds the lock until it execs,
/// which under load or qemu can take a moment. Any other answer is final.
pub fn when_released(mut run: impl FnMut() -> std::process::Output) -> std::process::Output {
    let start = std::time::Instant::now();
    loop {
        let out = run();
        let held =
            String::from_utf8_lossy(&out.stderr).contains("another gatehouse server is running");
        if !held || start.elapsed() > Duration::from_secs(10) {
            return out;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running server with its own temporary data directory.
pub struct TestApp {
    pub running: Option<Running>,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub settings: Vec<(String, String)>,
}

/// Settings every test app gets: fast bcrypt, quiet logs, a free port.
const BASE: &[(&str, &str)] = &[
    ("listen", "127.0.0.1:0"),
    ("bcrypt_cost", "4"),
    ("threads", "16"),
];

pub fn config(dir: &Path, settings: &[(String, String)]) -> Config {
    let mut env: Vec<(String, String)> = BASE
        .iter()
        .map(|(k, v)| (gatehouse::config::env_name(k), (*v).to_owned()))
        .collect();
    env.extend(backend_env(dir));
    env.extend(
        settings
            .iter()
            .map(|(k, v)| (gatehouse::config::env_name(k), v.clone())),
    );
    let mut layers = Layers::new();
    let file = dir.join("gatehouse.toml");
    if file.exists() {
        layers.file(&file).expect("test config file is valid");
    }
    layers.env(env);
    layers.build(dir.to_owned()).expect("test config is valid")
}

impl TestApp {
    pub fn spawn() -> Self {
        Self::spawn_with(&[])
    }

    pub fn spawn_with(settings: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::spawn_in(dir, settings)
    }

    /// A server whose data directory holds `toml` as its gatehouse.toml.
    pub fn spawn_with_file(toml: &str, settings: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("gatehouse.toml"), toml).expect("write config");
        let settings: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::spawn_in(dir, settings)
    }

    pub fn spawn_in(dir: tempfile::TempDir, settings: Vec<(String, String)>) -> Self {
        gatehouse::logging::to_test_output();
        let config = config(dir.path(), &settings);
        // A restart right after a shutdown can find the data directory's
        // lock still held for a moment: another test's child process, forked
        // while the old server's lock file was open, holds the descriptor
        // until it execs (a long moment under qemu). Wait that out.
        let start = std::time::Instant::now();
        let running = loop {
            match app::start_with_logging(&config, false) {
                Err(gatehouse::app::AppError::InUse(_))
                    if start.elapsed() < Duration::from_secs(10) =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => break other.expect("server starts"),
            }
        };
        let base = format!("http://{}", running.addr());
        Self {
            running: Some(running),
            base,
            dir,
            settings,
        }
    }

    /// Stops this server and starts a new one on the same data directory.
    pub fn restart(mut self) -> Self {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        Self::spawn_in(dir, self.settings.clone())
    }

    pub fn state(&self) -> &gatehouse::web::State {
        self.running.as_ref().expect("running").state()
    }

    pub fn add_user(&self, name: &str, password: &str, admin: bool) -> User {
        self.state()
            .users
            .create(&Username::parse(name).expect("name"), password, admin)
            .expect("user created")
    }

    pub fn browser(&self) -> Browser {
        Browser::new(&self.base)
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("gatehouse.db")
    }

    /// A direct connection to the database file, for checking what is stored.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db_path()).expect("open db")
    }

    /// Every stored session, expired or not, whatever the backend.
    pub fn stored_sessions(&self) -> Vec<gatehouse::session::Record> {
        self.state()
            .engine()
            .store()
            .list(None, 0)
            .expect("list sessions")
    }

    pub fn session_rows(&self) -> usize {
        self.stored_sessions().len()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `Set-Cookie` for `name`, if any.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value of `<... id="ID" ...>`'s text, crudely: what follows the tag up to `<`.
    pub fn text_of(&self, id: &str) -> Option<String> {
        let at = self.body.find(&format!("id=\"{id}\""))?;
        let rest = &self.body[at..];
        let start = rest.find('>')? + 1;
        let end = rest[start..].find('<')?;
        Some(rest[start..start + end].to_owned())
    }

    /// The value of the hidden `csrf` field.
    pub fn csrf(&self) -> Option<String> {
        let at = self.body.find("name=\"csrf\" value=\"")?;
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        Some(rest[..rest.find('"')?].to_owned())
    }
}

/// Asserts a `303 See Other` to `location`.
#[track_caller]
pub fn assert_redirects_to(resp: &Resp, location: &str) {
    assert_eq!(resp.status, 303, "expected a redirect, got {resp:?}");
    assert_eq!(resp.header("location"), Some(location));
}

/// A minimal browser: keeps cookies, never follows redirects.
pub struct Browser {
    agent: ureq::Agent,
    pub base: String,
    pub jar: Mutex<BTreeMap<String, String>>,
    pub headers: Vec<(String, String)>,
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self {
            agent: agent(),
            base: base.to_owned(),
            jar: Mutex::new(BTreeMap::new()),
            headers: Vec::new(),
        }
    }

    /// A second browser holding the same cookies (another tab, or a thief).
    pub fn clone_cookies(&self) -> Self {
        let b = Self::new(&self.base);
        *b.jar.lock().expect("jar") = self.jar.lock().expect("jar").clone();
        b
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.lock().expect("jar").get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.jar
            .lock()
            .expect("jar")
            .insert(name.to_owned(), value.to_owned());
    }

    fn cookie_header(&self) -> Option<String> {
        let jar = self.jar.lock().expect("jar");
        (!jar.is_empty()).then(|| {
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn absorb(&self, resp: &Resp) {
        let mut jar = self.jar.lock().expect("jar");
        for c in resp.set_cookies() {
            let pair = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                let expired = c.contains("Max-Age=0");
                if expired || v.is_empty() {
                    jar.remove(k);
                } else {
                    jar.insert(k.to_owned(), v.to_owned());
                }
            }
        }
    }

    fn finish(&self, result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Resp {
        let response = result.expect("request completes");
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = response.into_body().read_to_string().unwrap_or_default();
        let resp = Resp {
            status,
            headers,
            body,
        };
        self.absorb(&resp);
        resp
    }

    fn request(&self, method: &str, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let url = format!("{}{}", self.base, path);
        let mut req = match method {
            "POST" => self.agent.post(&url),
            "PUT" => self.agent.put(&url),
            "PATCH" => self.agent.patch(&url),
            other => panic!("unsupported method with body {other}"),
        };
        if let Some(c) = self.cookie_header() {
            req = req.header("Cookie", c);
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        req
    }

    pub fn get(&self, path: &str) -> Resp {
        self.get_with(path, &[])
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.agent.get(format!("{}{}", self.base, path));
        if let Some(c) = self.cookie_header() {
            req = req.header("Cookie", c);
        }
        for (k, v) in self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(headers.iter().copied())
        {
            req = req.header(k, v);
        }
        self.finish(req.call())
    }

    pub fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        self.post_form_with(path, fields, &[])
    }

    pub fn post_form_with(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Resp {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = self
            .request("POST", path)
            .header("Content-Type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.finish(req.send(body))
    }

    /// Sends `body` with `Content-Type: application/json` (and `extra` headers).
    pub fn send_json(&self, method: &str, path: &str, body: &str, extra: &[(&str, &str)]) -> Resp {
        let mut req = self
            .request(method, path)
            .header("Content-Type", "application/json");
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        self.finish(req.send(body))
    }

    pub fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Resp {
        let req = self
            .request("POST", path)
            .header("Content-Type", content_type);
        self.finish(req.send(&body[..]))
    }

    /// Loads the login form and submits it.
    pub fn login_with(&self, username: &str, password: &str, extra: &[(&str, &str)]) -> Resp {
        let form = self.get("/login");
        let csrf = form.csrf().expect("login form has a CSRF token");
        let mut fields = vec![
            ("csrf", csrf.as_str()),
            ("username", username),
            ("password", password),
        ];
        fields.extend_from_slice(extra);
        self.post_form("/login", &fields)
    }

    pub fn login(&self, username: &str, password: &str) -> Resp {
        self.login_with(username, password, &[])
    }

    /// Logs out through the confirm page.
    pub fn logout(&self) -> Resp {
        let page = self.get("/logout");
        let csrf = page.csrf().expect("logout page has a CSRF token");
        self.post_form("/logout", &[("csrf", &csrf)])
    }
}

pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Starts a small upstream on `127.0.0.1:0` answering with `handler`, and
/// returns its address and the flag that stops it once set. The one stub
/// app of every test crate (the proxy tests, the browser's, `raw`'s).
pub fn upstream<F>(
    handler: F,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
)
where
    F: Fn(&rouille::Request) -> rouille::Response + Send + Sync + 'static,
{
    let server = rouille::Server::new("127.0.0.1:0", handler).expect("upstream starts");
    let addr = server.server_addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    std::thread::spawn(move || {
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            server.poll_timeout(Duration::from_millis(20));
        }
    });
    (addr, stop)
}

/// What Chromium sends when a script calls `click()` on a button of a
/// gatehouse page it opened with `window.open`: a navigation, but no
/// person; an admin action so started always meets the password step.
pub const SCRIPTED_CLICK: &[(&str, &str)] = &[
    ("Sec-Fetch-Site", "same-origin"),
    ("Sec-Fetch-Mode", "navigate"),
    ("Sec-Fetch-Dest", "document"),
];

/// The hidden fields of the password step's form in `step`, and
/// `password` as its answer: what the browser sends back.
pub fn through_password_step(step: &Resp, password: &str) -> Vec<(String, String)> {
    let form = &step.body[step.body.find("id=\"reauth-form\"").expect("form")..];
    let form = &form[..form.find("</form>").expect("end")];
    let mut fields = Vec::new();
    for (i, m) in form.match_indices("<input type=\"hidden\" name=\"") {
        let rest = &form[i + m.len()..];
        let name = &rest[..rest.find('"').expect("name")];
        let rest = &rest[rest.find("value=\"").expect("value") + 7..];
        let value = &rest[..rest.find('"').expect("end")];
        fields.push((name.to_owned(), value.replace("&amp;", "&")));
    }
    fields.push(("reauth_password".into(), password.into()));
    fields
}
