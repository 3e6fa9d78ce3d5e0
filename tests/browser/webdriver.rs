//! A small W3C WebDriver client over ureq: just what the browser test uses.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one headless Chromium session.
pub struct Driver {
    child: Child,
    agent: ureq::Agent,
    base: String,
    _profile: tempfile::TempDir,
}

/// An element handle.
pub struct Element(String);

impl Driver {
    /// Starts chromedriver on a port of its choosing and opens a session.
    pub fn start(chromedriver: &str, chromium: &str) -> Self {
        let mut child = Command::new(chromedriver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = loop {
            let line = lines.next().expect("chromedriver output").expect("utf-8");
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                break rest.trim_end_matches('.').trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let profile = tempfile::tempdir().expect("profile dir");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut driver = Self {
            child,
            agent,
            base: format!("http://127.0.0.1:{port}"),
            _profile: profile,
        };
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--user-data-dir={}", driver._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let resp = driver.call("POST", "/session", Some(caps));
        let id = resp["sessionId"].as_str().expect("a session id").to_owned();
        driver.base = format!("{}/session/{id}", driver.base);
        driver
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{}", self.base, path);
        let result = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(json!({})).to_string()),
        };
        let text = result
            .expect("webdriver answers")
            .into_body()
            .read_to_string()
            .expect("body");
        let value: Value = serde_json::from_str(&text).expect("webdriver JSON");
        let value = value.get("value").cloned().unwrap_or(value);
        if let Some(err) = value.get("error") {
            panic!("webdriver {method} {path}: {err} {}", value["message"]);
        }
        value
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .expect("url")
            .to_owned()
    }

    pub fn find(&self, css: &str) -> Element {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        Element(
            v[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("no element for {css}: {v}"))
                .to_owned(),
        )
    }

    pub fn count(&self, css: &str) -> usize {
        let v = self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array().map_or(0, Vec::len)
    }

    pub fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.call("GET", &format!("/element/{}/text", e.0), None)
            .as_str()
            .expect("text")
            .to_owned()
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({"text": text})),
        );
    }

    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{}/click", e.0), Some(json!({})));
    }

    pub fn refresh(&self) {
        self.call("POST", "/refresh", Some(json!({})));
    }

    pub fn window(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Waits until the page's URL path is `path` (navigation after a click).
    pub fn wait_for_path(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.url();
            let here = url
                .splitn(4, '/')
                .nth(3)
                .map(|p| format!("/{p}"))
                .unwrap_or_default();
            if here == path {
                return;
            }
            assert!(Instant::now() < deadline, "still at {url}, expected {path}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Adds Chromium's virtual authenticator (WebDriver's WebAuthn
    /// extension): CTAP2, built in, resident keys, user verification that
    /// always succeeds. Returns its id.
    pub fn add_virtual_authenticator(&self) -> String {
        let v = self.call(
            "POST",
            "/webauthn/authenticator",
            Some(json!({
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserConsenting": true,
                "isUserVerified": true,
            })),
        );
        v.as_str().expect("an authenticator id").to_owned()
    }

    /// The credentials the virtual authenticator `id` holds.
    pub fn authenticator_credentials(&self, id: &str) -> Vec<Value> {
        self.call(
            "GET",
            &format!("/webauthn/authenticator/{id}/credentials"),
            None,
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
    }

    /// Waits until an element matches `css`.
    pub fn wait_for(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count(css) == 0 {
            assert!(Instant::now() < deadline, "no {css} at {}", self.url());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves a PNG of the whole page, below the fold too (Chromium's own
    /// `Page.captureScreenshot`, through chromedriver).
    pub fn full_screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let cdp = |cmd: &str, params: Value| {
            self.call(
                "POST",
                "/goog/cdp/execute",
                Some(json!({"cmd": cmd, "params": params})),
            )
        };
        // The window's width (a scrollbar included) and the page's height.
        let size = self.eval(
            "const d = document.documentElement; \
             return [Math.max(window.innerWidth, d.scrollWidth), d.scrollHeight];",
        );
        let (width, height) = (
            size[0].as_f64().expect("a width"),
            size[1].as_f64().expect("a height"),
        );
        let shot = cdp(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("base64"))
            .expect("valid base64");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Saves the page whole at a desktop's width (1280x900) as
    /// `{name}.png` and at a phone's (390x844) as `{name}-phone.png`,
    /// leaving the window at the desktop's size. On the phone the page
    /// itself must not scroll sideways (a wide table scrolls inside its
    /// own box).
    pub fn shots(&self, dir: &std::path::Path, name: &str) {
        self.window(390, 844);
        let wider = self.eval(
            "const d = document.documentElement; \
             return d.scrollWidth > d.clientWidth ? d.scrollWidth : 0;",
        );
        assert_eq!(
            wider.as_f64(),
            Some(0.0),
            "{name}: the page is wider than a phone ({wider} CSS pixels) at {}",
            self.url()
        );
        self.full_screenshot(&dir.join(format!("{name}-phone.png")));
        self.window(1280, 900);
        self.full_screenshot(&dir.join(format!("{name}.png")));
    }

    /// Runs `script` in the page and returns what it returns.
    pub fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Saves a PNG screenshot of the viewport.
    pub fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let data = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64"))
            .expect("valid base64");
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.base).call();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
