//! The Apache recipe (`docs/recipes/apache.md`), run for real: the
//! gatehouse binary as the OpenID Provider, Debian's Apache with
//! mod_auth_openidc as the relying party, and a test browser that follows
//! every redirect by hand with a cookie jar per host and port. Without
//! Apache or the module installed the test says it was skipped, except
//! under CI (`CI` set), where it fails: CI installs both.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::helpers::{self, Resp};
use super::recipe;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
const MODULES: &str = "/usr/lib/apache2/modules";
const PASSWORD: &str = "correct horse";

/// Apache's binary with mod_auth_openidc beside it, or `None` (skipped;
/// under CI, a failure).
fn find_apache() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("apache2"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let binary = on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/apache2")])
        .find(|p| p.is_file());
    let module = Path::new(MODULES).join("mod_auth_openidc.so");
    match binary {
        Some(b) if module.is_file() => Some(b),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run this test: install apache2 and libapache2-mod-auth-openidc"
            );
            eprintln!("skipped: apache2 or libapache2-mod-auth-openidc is not installed");
            None
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Waits until something listens on `port`, failing early if `child`
/// exits; `log` says why.
fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early: {status}\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The one fenced block of `lang` in a Markdown recipe.
fn block(markdown: &str, lang: &str) -> String {
    let fence = format!("```{lang}\n");
    let mut parts = markdown.split(&fence);
    parts.next();
    let blocks: Vec<&str> = parts
        .map(|rest| rest.split("\n```").next().unwrap_or(""))
        .collect();
    assert_eq!(blocks.len(), 1, "the recipe has one ```{lang} block");
    format!("{}\n", blocks[0])
}

/// Replaces every `from` in a recipe block, insisting that it was there.
fn swap(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the recipe no longer contains {from:?}"
    );
    text.replace(from, to)
}

/// A process killed (SIGTERM, then SIGKILL) and waited for on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.0.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs the gatehouse CLI on `data`, with `input` on standard input.
fn gatehouse(data: &Path, args: &[&str], input: &str) {
    let mut child = helpers::command(BIN)
        .args(args)
        .arg("--data")
        .arg(data)
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .envs(helpers::backend_env(data))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gatehouse");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("gatehouse runs");
    assert!(
        out.status.success(),
        "gatehouse {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One cookie as a browser keeps it.
#[derive(Clone, Debug)]
struct Cookie {
    value: String,
    path: String,
    secure: bool,
}

/// A browser that follows nothing by itself: one cookie jar per
/// `host:port` (as the test's hosts are all 127.0.0.1, unlike a real
/// browser, which shares cookies across ports), `Secure` cookies kept off
/// plain HTTP, and a navigation's headers on every request.
struct Browser {
    agent: ureq::Agent,
    jars: BTreeMap<String, BTreeMap<String, Cookie>>,
}

/// `http://host:port/path` split into its origin and its path.
fn split(url: &str) -> (&str, &str) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http URL: {url}"));
    let at = rest.find('/').unwrap_or(rest.len());
    (
        &url[..7 + at],
        if at == rest.len() { "/" } else { &rest[at..] },
    )
}

impl Browser {
    fn new() -> Self {
        Self {
            agent: helpers::agent(),
            jars: BTreeMap::new(),
        }
    }

    fn cookies_for(&self, url: &str) -> Option<String> {
        let (origin, path) = split(url);
        let jar = self.jars.get(origin)?;
        let pairs: Vec<String> = jar
            .iter()
            .filter(|(_, c)| !c.secure && path.starts_with(&c.path))
            .map(|(k, c)| format!("{k}={}", c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    fn keep(&mut self, url: &str, resp: &Resp) {
        let (origin, _) = split(url);
        let jar = self.jars.entry(origin.to_owned()).or_default();
        for line in resp.set_cookies() {
            let mut attrs = line.split(';').map(str::trim);
            let Some((name, value)) = attrs.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let mut cookie = Cookie {
                value: value.to_owned(),
                path: "/".to_owned(),
                secure: false,
            };
            let mut gone = value.is_empty();
            for attr in attrs {
                let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
                match k.to_ascii_lowercase().as_str() {
                    "path" => cookie.path = v.to_owned(),
                    "secure" => cookie.secure = true,
                    "max-age" => gone |= v.trim() == "0",
                    "expires" => gone |= v.contains("1970"),
                    _ => {}
                }
            }
            if gone {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), cookie);
            }
        }
    }

    /// A GET (or, with `form`, a form POST) of `url` as a page navigation,
    /// with `extra` headers.
    fn go(&mut self, url: &str, form: Option<&[(&str, &str)]>, extra: &[(&str, &str)]) -> Resp {
        let cookies = self.cookies_for(url);
        let mut headers: Vec<(&str, &str)> = vec![
            ("Accept", "text/html,application/xhtml+xml"),
            ("Sec-Fetch-Mode", "navigate"),
            ("Sec-Fetch-Dest", "document"),
        ];
        if let Some(c) = &cookies {
            headers.push(("Cookie", c));
        }
        headers.extend_from_slice(extra);
        let result = match form {
            None => {
                let mut req = self.agent.get(url);
                for (k, v) in &headers {
                    req = req.header(*k, *v);
                }
                req.call()
            }
            Some(fields) => {
                let body = fields
                    .iter()
                    .map(|(k, v)| format!("{}={}", helpers::enc(k), helpers::enc(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                let mut req = self
                    .agent
                    .post(url)
                    .header("Content-Type", "application/x-www-form-urlencoded");
                for (k, v) in &headers {
                    req = req.header(*k, *v);
                }
                req.send(body)
            }
        };
        let response = result.unwrap_or_else(|e| panic!("{url}: {e}"));
        let resp = Resp {
            status: response.status().as_u16(),
            headers: response
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body: response.into_body().read_to_string().unwrap_or_default(),
        };
        self.keep(url, &resp);
        resp
    }

    fn get(&mut self, url: &str) -> Resp {
        self.go(url, None, &[])
    }
}

/// Where a redirect from `from` leads, made absolute.
fn location(from: &str, resp: &Resp) -> String {
    assert!(
        matches!(resp.status, 301 | 302 | 303 | 307),
        "{from}: expected a redirect, got {} {:?}\n{}",
        resp.status,
        resp.headers,
        resp.body
    );
    let to = resp.header("location").expect("Location");
    if to.starts_with('/') {
        format!("{}{to}", split(from).0)
    } else {
        to.to_owned()
    }
}

/// The value of a hidden form field in a page.
fn field(page: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let at = page
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} field in {page}"))
        + key.len();
    page[at..at + page[at..].find('"').expect("closing quote")].replace("&amp;", "&")
}

/// Every header the app behind Apache received, one `name: value` a line
/// after the path, names lowercased.
struct Echo {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Echo {
    fn start() -> Self {
        let (addr, stop) = helpers::upstream(|request| {
            let mut lines: Vec<String> = request
                .headers()
                .map(|(k, v)| format!("{}: {v}", k.to_ascii_lowercase()))
                .collect();
            lines.sort();
            rouille::Response::text(format!(
                "app saw {}\n{}\n",
                request.raw_url(),
                lines.join("\n")
            ))
        });
        Self { addr, stop }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The values of header `name` (lowercase) in the echo's page.
fn echoed<'a>(page: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}: ");
    page.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .collect()
}

struct Setup {
    apache: String,
    gatehouse: String,
    apache_log: PathBuf,
    gatehouse_log: PathBuf,
    _echo: Echo,
    _processes: (Process, Process),
    _dir: tempfile::TempDir,
}

impl Setup {
    /// Apache's error log and gatehouse's, for a failure's message.
    fn log(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "apache2:\n{}\ngatehouse:\n{}",
            read(&self.apache_log),
            read(&self.gatehouse_log)
        )
    }
}

fn start(apache_binary: &Path) -> Setup {
    let dir = tempfile::tempdir().expect("dir");
    let recipe = recipe("apache.md");
    let echo = Echo::start();
    let gport = free_port();
    let aport = loop {
        let port = free_port();
        if port != gport {
            break port;
        }
    };
    let gatehouse_url = format!("http://127.0.0.1:{gport}");
    let apache_url = format!("http://127.0.0.1:{aport}");

    // gatehouse: the recipe's client, public_url swapped for this test's.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let mut toml = block(&recipe, "toml");
    toml = swap(&toml, "https://auth.lan", &gatehouse_url);
    toml = swap(&toml, "https://wiki.lan", &apache_url);
    std::fs::write(data.join("gatehouse.toml"), toml).expect("gatehouse.toml");
    gatehouse(
        &data,
        &["user", "add", "alice", "--password-stdin"],
        PASSWORD,
    );
    gatehouse(&data, &["user", "add", "bob", "--password-stdin"], PASSWORD);
    gatehouse(&data, &["group", "add", "staff"], "");
    gatehouse(&data, &["group", "add", "ops"], "");
    gatehouse(
        &data,
        &["user", "groups", "alice", "--add", "staff", "--add", "ops"],
        "",
    );
    let glog = dir.path().join("gatehouse.log");
    let glog_file = std::fs::File::create(&glog).expect("log");
    let mut child = helpers::command(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{gport}"), "--data"])
        .arg(&data)
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .envs(helpers::backend_env(&data))
        .stderr(glog_file.try_clone().expect("log"))
        .stdout(glog_file)
        .spawn()
        .expect("start gatehouse");
    let read_glog = || std::fs::read_to_string(&glog).unwrap_or_default();
    wait_for_port(gport, &mut child, "gatehouse", &read_glog);
    let gatehouse_process = Process(child);

    // Apache: its own server root, logs and port, the recipe's directives
    // with the addresses swapped. As root, its workers run as nobody
    // (Apache refuses to serve as root).
    let d = dir.path().display();
    let mut site = block(&recipe, "apache");
    site = swap(&site, "https://auth.lan", &gatehouse_url);
    site = swap(&site, "https://wiki.lan", &apache_url);
    site = swap(
        &site,
        "http://127.0.0.1:3000/",
        &format!("http://{}/", echo.addr),
    );
    let is_root = rustix::process::geteuid().is_root();
    let modules = [
        "mpm_event",
        "authn_core",
        "authz_core",
        "authz_user",
        "headers",
        "proxy",
        "proxy_http",
        "auth_openidc",
    ]
    .iter()
    .map(|m| format!("LoadModule {m}_module {MODULES}/mod_{m}.so\n"))
    .collect::<String>();
    let conf = format!(
        "ServerRoot {d}\nServerName 127.0.0.1\nListen 127.0.0.1:{aport}\n\
         PidFile {d}/apache.pid\nDefaultRuntimeDir {d}\nErrorLog {d}/error.log\n\
         LogLevel warn auth_openidc:info\n{user}\
         StartServers 1\nServerLimit 1\nThreadsPerChild 16\nMaxRequestWorkers 16\n\
         {modules}\n{site}",
        user = if is_root {
            "User nobody\nGroup nogroup\n"
        } else {
            ""
        },
    );
    let conf_file = dir.path().join("apache.conf");
    std::fs::write(&conf_file, conf).expect("apache.conf");
    let apache_log = dir.path().join("error.log");
    let mut child = Command::new(apache_binary)
        .arg("-f")
        .arg(&conf_file)
        .arg("-DFOREGROUND")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start apache2");
    let read_log = || std::fs::read_to_string(&apache_log).unwrap_or_default();
    wait_for_port(aport, &mut child, "apache2", &read_log);
    Setup {
        apache: apache_url,
        gatehouse: gatehouse_url,
        apache_log,
        gatehouse_log: glog,
        _echo: echo,
        _processes: (Process(child), gatehouse_process),
        _dir: dir,
    }
}

/// Signs `user` in through Apache from `/protected/<page>`, following each
/// step by hand, and returns the app's page at the end.
fn sign_in(s: &Setup, b: &mut Browser, user: &str, page: &str) -> Resp {
    let start = format!("{}/protected/{page}", s.apache);
    // Apache: not signed in, off to gatehouse's authorization endpoint.
    let to_authorize = location(&start, &b.get(&start));
    assert!(
        to_authorize.starts_with(&format!("{}/oidc/authorize?", s.gatehouse)),
        "{to_authorize}"
    );
    assert!(to_authorize.contains("client_id=wiki"), "{to_authorize}");
    // gatehouse: not signed in either, off to its sign-in page.
    let to_login = location(&to_authorize, &b.get(&to_authorize));
    assert!(
        to_login.starts_with(&format!("{}/login?", s.gatehouse)),
        "{to_login}"
    );
    let form = b.get(&to_login);
    assert_eq!(form.status, 200, "{}", form.body);
    let signed_in = b.go(
        &format!("{}/login", s.gatehouse),
        Some(&[
            ("csrf", &field(&form.body, "csrf")),
            ("next", &field(&form.body, "next")),
            ("username", user),
            ("password", PASSWORD),
        ]),
        &[],
    );
    // Back to the authorization endpoint, which sends the code to Apache.
    let back = location(&format!("{}/login", s.gatehouse), &signed_in);
    assert!(back.starts_with(&format!("{}/oidc/authorize?", s.gatehouse)));
    let to_apache = location(&back, &b.get(&back));
    assert!(
        to_apache.starts_with(&format!("{}/protected/redirect_uri?code=", s.apache)),
        "{to_apache}"
    );
    // Apache redeems the code at gatehouse (client_secret_basic), checks
    // the ID token, and sends the browser back where it started.
    let landed = b.get(&to_apache);
    assert_eq!(landed.status, 302, "{}\n{}", landed.body, s.log());
    let again = location(&to_apache, &landed);
    assert_eq!(again, start, "{}", s.log());
    b.go(
        &again,
        None,
        &[
            // What a client sends is never taken for what Apache says.
            ("OIDC_CLAIM_groups", "admins"),
            ("OIDC-CLAIM-groups", "admins"),
            ("OIDC_CLAIM_preferred_username", "root"),
            ("Remote-User", "root"),
            ("Remote_User", "root"),
        ],
    )
}

#[test]
fn the_apache_recipe_signs_in_through_gatehouse() {
    let Some(apache) = find_apache() else {
        return;
    };
    let s = start(&apache);

    // alice, in staff and ops: the app sees her name and groups.
    let mut alice = Browser::new();
    let page = sign_in(&s, &mut alice, "alice", "page?x=1");
    assert_eq!(page.status, 200, "{}\n{}", page.body, s.log());
    let body = &page.body;
    assert!(body.starts_with("app saw /page?x=1\n"), "{body}");
    assert_eq!(echoed(body, "remote-user"), ["alice"], "{body}");
    assert_eq!(
        echoed(body, "oidc_claim_preferred_username"),
        ["alice"],
        "{body}"
    );
    let groups = echoed(body, "oidc_claim_groups");
    assert_eq!(groups.len(), 1, "{body}");
    let mut groups: Vec<&str> = groups[0].split(',').collect();
    groups.sort_unstable();
    assert_eq!(groups, ["ops", "staff"], "{body}");
    assert_eq!(echoed(body, "oidc_claim_iss"), [s.gatehouse.as_str()]);
    assert_eq!(echoed(body, "oidc_claim_aud"), ["wiki"]);
    // No forged identity got through, nor an underscore twin a CGI-style
    // app would read as the same variable.
    assert!(
        !body
            .lines()
            .any(|l| l.ends_with(": root") || l.ends_with(": admins")),
        "{body}"
    );
    assert!(echoed(body, "remote_user").is_empty(), "{body}");
    assert!(echoed(body, "oidc-claim-groups").is_empty(), "{body}");
    // Apache's session cookie stays with Apache.
    assert!(!body.contains("mod_auth_openidc_session"), "{body}");

    // Signed in at Apache now: the staff-only location lets her in, no
    // round trip to gatehouse.
    let staff = alice.get(&format!("{}/protected/staff/notes", s.apache));
    assert_eq!(staff.status, 200, "{}\n{}", staff.body, s.log());
    assert!(staff.body.starts_with("app saw /staff/notes\n"));

    // bob, in no group: the wiki, but not its staff-only location.
    let mut bob = Browser::new();
    let page = sign_in(&s, &mut bob, "bob", "");
    assert_eq!(page.status, 200, "{}\n{}", page.body, s.log());
    assert_eq!(echoed(&page.body, "remote-user"), ["bob"], "{}", page.body);
    let staff = bob.get(&format!("{}/protected/staff/notes", s.apache));
    assert!(
        matches!(staff.status, 401 | 403),
        "{} {}\n{}",
        staff.status,
        staff.body,
        s.log()
    );
    assert!(!staff.body.contains("app saw"), "{}", staff.body);

    // bob signs out through Apache, as the recipe says: Apache's session
    // ends, and gatehouse's (the ID token is the hint), and the browser
    // lands on the registered address.
    let landing = format!("{}/", s.apache);
    let logout = format!(
        "{}/protected/redirect_uri?logout={}",
        s.apache,
        helpers::enc(&landing)
    );
    let to_end = location(&logout, &bob.get(&logout));
    assert!(
        to_end.starts_with(&format!("{}/oidc/end_session?", s.gatehouse)),
        "{to_end}"
    );
    assert!(to_end.contains("id_token_hint="), "{to_end}");
    assert_eq!(location(&to_end, &bob.get(&to_end)), landing);
    let left = bob
        .cookies_for(&format!("{}/", s.gatehouse))
        .unwrap_or_default();
    assert!(!left.contains("gatehouse_session="), "{left}");
    let again = format!("{}/protected/page", s.apache);
    let to_authorize = location(&again, &bob.get(&again));
    let to_login = location(&to_authorize, &bob.get(&to_authorize));
    assert!(
        to_login.starts_with(&format!("{}/login?", s.gatehouse)),
        "{to_login}"
    );

    // alice signs out of gatehouse: Apache keeps its own session (the
    // recipe says so), and its pages still work.
    let out = alice.get(&format!("{}/logout", s.gatehouse));
    assert_eq!(out.status, 200, "{}", out.body);
    let csrf = field(&out.body, "csrf");
    let done = alice.go(
        &format!("{}/logout", s.gatehouse),
        Some(&[("csrf", &csrf)]),
        &[],
    );
    assert!(matches!(done.status, 200 | 303), "{}", done.status);
    let left = alice
        .cookies_for(&format!("{}/", s.gatehouse))
        .unwrap_or_default();
    assert!(!left.contains("gatehouse_session="), "{left}");
    let after = alice.get(&format!("{}/protected/page", s.apache));
    assert_eq!(after.status, 200, "{}\n{}", after.body, s.log());
    assert_eq!(echoed(&after.body, "remote-user"), ["alice"]);
}
