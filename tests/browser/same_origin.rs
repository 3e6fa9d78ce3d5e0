//! A script served by a prefix-mode app (same origin as gatehouse) tries
//! to make a user an administrator, in real Chromium: with `fetch` (stopped
//! by the `Sec-Fetch-*` check) and by opening `/admin/users` in a window and
//! clicking its button from the script (a real navigation, but without
//! `Sec-Fetch-User`, so sudo mode asks for the password).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::helpers::TestApp;
use crate::webdriver::Driver;

/// The hostile app's pages: each runs its attack on load and writes what
/// happened into `#result`.
const FETCH_ATTACK: &str = r#"<!doctype html><title>wiki</title><p id="result">running</p>
<script>
(async () => {
  const out = [];
  const page = await fetch('/admin/users', {credentials: 'same-origin'});
  const text = await page.text();
  out.push('admin:' + page.status);
  const m = text.match(/name="csrf" value="([^"]+)"/);
  out.push(m ? 'token' : 'no-token');
  const body = 'csrf=' + encodeURIComponent(m ? m[1] : 'none') + '&username=bob';
  const post = await fetch('/admin/users/grant-admin', {
    method: 'POST', credentials: 'same-origin', redirect: 'manual',
    headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body});
  out.push('post:' + post.status);
  document.getElementById('result').textContent = out.join(' ');
})().catch(e => { document.getElementById('result').textContent = 'error ' + e; });
</script>"#;

const POPUP_ATTACK: &str = r#"<!doctype html><title>wiki</title><p id="result">running</p>
<script>
const show = t => { document.getElementById('result').textContent = t; };
const until = (test, then) => {
  const started = Date.now();
  const tick = () => {
    let ok = false;
    try { ok = test(); } catch (e) {}
    if (ok) { then(); } else if (Date.now() - started > 8000) { show('timeout'); }
    else { setTimeout(tick, 50); }
  };
  tick();
};
const w = window.open('/admin/users', 'gh');
if (!w) { show('popup-blocked'); } else {
  until(() => w.location.pathname === '/admin/users' && w.document.readyState === 'complete'
               && w.document.getElementById('grant-admin-bob'), () => {
    w.document.getElementById('grant-admin-bob').click();
    until(() => w.document.readyState === 'complete'
                 && (w.location.pathname === '/admin/users/grant-admin'
                     || w.location.search.includes('done=')), () => {
      show(w.document.getElementById('reauth-form') ? 'confirm-page' : 'done: ' + w.location.href);
    });
  });
}
</script>"#;

struct Upstream {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    fn start() -> Self {
        let (addr, stop) = crate::helpers::upstream(|request| {
            let page = if request.raw_url().contains("popup") {
                POPUP_ATTACK
            } else {
                FETCH_ATTACK
            };
            rouille::Response::html(page)
        });
        Self { addr, stop }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn wait_for_result(b: &Driver) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = b.text("#result");
        if text != "running" || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn is_admin(app: &TestApp, name: &str) -> bool {
    app.state()
        .users
        .find_by_name(name)
        .expect("lookup")
        .expect("user")
        .is_admin
}

pub fn a_script_in_a_prefix_mode_app_cannot_make_a_user_an_administrator(
    chromedriver: &str,
    chromium: &str,
) {
    let upstream = Upstream::start();
    let toml = format!(
        "[[apps]]\nname = \"wiki\"\nprefix = \"/apps/wiki/\"\nupstream = \"http://{}\"\n",
        upstream.addr
    );
    // The default admin_reauth (5 minutes) and a fresh sign-in: the popup's
    // scripted click is a real navigation inside that window, yet it gets
    // the confirm page, because no person clicked (no Sec-Fetch-User).
    let app = TestApp::spawn_with_file(&toml, &[]);
    app.add_user("root", "correct horse battery", true);
    app.add_user("bob", "bobs password", false);
    let b = Driver::start(chromedriver, chromium);
    b.goto(&format!("{}/login", app.base));
    b.type_into("#username", "root");
    b.type_into("#password", "correct horse battery");
    b.click("#login-submit");
    b.wait_for_path("/");

    b.goto(&format!("{}/apps/wiki/fetch", app.base));
    let result = wait_for_result(&b);
    assert_eq!(result, "admin:403 no-token post:403", "the fetch attack");
    assert!(!is_admin(&app, "bob"), "a fetch made bob an administrator");

    b.goto(&format!("{}/apps/wiki/popup", app.base));
    let result = wait_for_result(&b);
    assert_eq!(result, "confirm-page", "the popup attack");
    assert!(!is_admin(&app, "bob"), "a popup made bob an administrator");

    // The person, clicking the same button, is not asked.
    b.goto(&format!("{}/admin/users", app.base));
    b.click("#grant-admin-bob");
    b.wait_for_path("/admin/users?done=admin-granted");
    assert!(is_admin(&app, "bob"));
}
