//! `serve` (the default command: run until SIGINT or SIGTERM, the
//! certificate read again on SIGHUP) and `check-config` (the effective
//! settings, apps and clients, secrets masked).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;

use crate::app;

use super::{CliError, Global, config};

#[derive(Args, Debug, Default)]
pub(super) struct ServeArgs {
    /// Address to listen on, e.g. 0.0.0.0:8080 (port 0 picks a free port).
    #[arg(long, env = "GATEHOUSE_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Number of request threads, or `auto`.
    #[arg(long, env = "GATEHOUSE_THREADS", value_name = "N")]
    threads: Option<String>,
}

/// `check-config`'s arguments: the server's, and a request to explain.
#[derive(clap::Args, Debug)]
pub(super) struct CheckArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Say which access rule decides a request for URL (`http://wiki.lan/x`,
    /// or a path under gatehouse such as `/apps/wiki/x`) and why.
    #[arg(long, value_name = "URL")]
    explain: Option<String>,
    /// With --explain: who asks (a user in the database); nobody signed in
    /// when left out.
    #[arg(long, value_name = "NAME", requires = "explain")]
    user: Option<String>,
    /// With --explain: the request's method.
    #[arg(
        long,
        value_name = "METHOD",
        requires = "explain",
        default_value = "GET"
    )]
    method: String,
    /// With --explain: the client's address (after trusted_proxies).
    #[arg(
        long,
        value_name = "ADDR",
        requires = "explain",
        default_value = "127.0.0.1"
    )]
    from: std::net::IpAddr,
    /// With --explain and --user: the session gave a second factor.
    #[arg(long, requires = "user")]
    second_factor: bool,
}

#[inline]
pub(super) fn serve(global: &Global, args: &ServeArgs) -> Result<(), CliError> {
    for warning in crate::config::unknown_env(std::env::vars()) {
        crate::logging::line(&warning);
    }
    let config = config(
        global,
        &[
            ("listen", args.listen.clone()),
            ("threads", args.threads.clone()),
        ],
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    // SIGHUP reads the certificate again (renewals apply without a restart).
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))?;
    if let Some(warning) = config.ldap.as_ref().and_then(|l| l.warning()) {
        crate::logging::line(&warning);
    }
    let running = app::start(&config)?;
    // Listening: tell systemd, and let its watchdog see us answer.
    let watchdog = app::watchdog::Watchdog::start(running.addr())?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "gatehouse {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        running.url()
    )?;
    writeln!(out, "data directory: {}", config.data_dir.display())?;
    if let Some(url) = running.setup_url() {
        writeln!(out, "no users yet: create the first administrator at")?;
        writeln!(out, "    {url}")?;
        writeln!(
            out,
            "(this link works once), or with `gatehouse user add NAME --admin --data {}`",
            config.data_dir.display()
        )?;
    }
    out.flush()?;
    drop(out);
    if let Some(certs) = running.certificates() {
        crate::logging::line(&format!(
            "tls cert={} sha256={}",
            crate::logging::quote(&certs.files().cert.display().to_string()),
            certs.fingerprint()
        ));
    }
    if let Some(at) = running.redirect_addr() {
        crate::logging::line(&format!(
            "redirect_http listening on http://{at}: every request gets 301 to HTTPS"
        ));
    }
    while !stop.load(Ordering::SeqCst) {
        if reload.swap(false, Ordering::SeqCst) {
            // reload_tls logs the outcome; a refused file keeps the old one.
            let _ = running.reload_tls();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    crate::logging::line("shutting down: finishing requests in flight");
    watchdog.stop();
    running.shutdown();
    crate::logging::line("stopped");
    Ok(())
}

pub(super) fn check_config(global: &Global, check: &CheckArgs) -> Result<(), CliError> {
    let args = &check.serve;
    let config = config(
        global,
        &[
            ("listen", args.listen.clone()),
            ("threads", args.threads.clone()),
        ],
    )?;
    let mut out = std::io::stdout().lock();
    if let Some(url) = &check.explain {
        let who = match &check.user {
            Some(name) => {
                let (users, _, _) = super::stores(global)?;
                let user = users.get_by_name(name)?;
                let methods = if check.second_factor {
                    vec!["pwd".to_owned(), "otp".to_owned()]
                } else {
                    vec!["pwd".to_owned()]
                };
                Some(crate::web::principal_for(
                    user,
                    crate::identity::Credential::Session(methods),
                ))
            }
            None => None,
        };
        let explained = explain(&config.apps, url, who.as_ref(), &check.method, check.from)
            .map_err(CliError::Usage)?;
        writeln!(out, "{explained}")?;
        return Ok(());
    }
    writeln!(out, "configuration is valid")?;
    if let Some(warning) = config.ldap.as_ref().and_then(|l| l.warning()) {
        writeln!(out, "{warning}")?;
    }
    writeln!(out, "data directory: {}", config.data_dir.display())?;
    for (name, value) in config.effective() {
        writeln!(out, "{name:<26} {value}")?;
    }
    for app in config.apps.all() {
        writeln!(
            out,
            "app {:?}: prefix {}, host {}, upstream {}, access {}{}",
            app.name,
            app.prefix.as_deref().unwrap_or("-"),
            app.host.as_deref().unwrap_or("-"),
            app.upstream.as_ref().map_or("-".to_owned(), |u| format!(
                "http://{}{}",
                u.authority, u.base
            )),
            app.rules,
            if app.case_insensitive {
                ", prefix in any case"
            } else {
                ""
            }
        )?;
    }
    for client in config.clients.all() {
        // Never the secret, nor its hash: whether it has one is enough.
        writeln!(
            out,
            "client {:?}: name {:?}, {}, redirect_uris {}, groups {}, pkce {:?}, signing_alg {}",
            client.id,
            client.name,
            if client.is_public() {
                "public (no secret)"
            } else {
                "secret ***"
            },
            client.redirect_uris.join(" "),
            if client.groups.is_empty() {
                "(any signed-in user)".to_owned()
            } else {
                client.groups.join(" ")
            },
            client.pkce,
            client.signing_alg.as_str(),
        )?;
        for (kind, uri, session) in [
            (
                "frontchannel",
                &client.frontchannel_logout_uri,
                client.frontchannel_logout_session_required,
            ),
            (
                "backchannel",
                &client.backchannel_logout_uri,
                client.backchannel_logout_session_required,
            ),
        ] {
            if let Some(uri) = uri {
                writeln!(
                    out,
                    "client {:?}: {kind}_logout_uri {uri}, {kind}_logout_session_required {session}",
                    client.id
                )?;
            }
        }
    }
    Ok(())
}

/// What the access rules make of a request for `url` by `who` (`None`:
/// nobody signed in): the app, the path it sees, the deciding rule, why.
///
/// # Errors
///
/// A URL with no normal form, or one that leaves its app.
fn explain(
    apps: &crate::auth::apps::Apps,
    url: &str,
    who: Option<&crate::identity::Principal>,
    method: &str,
    from: std::net::IpAddr,
) -> Result<String, String> {
    let (host, path) = match crate::auth::redirect::split_absolute(url) {
        Some((authority, rest)) if rest.starts_with('/') => (Some(authority), rest.to_owned()),
        Some((authority, rest)) => (Some(authority), format!("/{rest}")),
        None => (None, url.to_owned()),
    };
    let refused = |e: crate::auth::path::PathError| {
        format!("{url:?} is refused before any rule: {}", e.message())
    };
    let target = crate::auth::path::Target::parse(&path).map_err(refused)?;
    let raw = path.split('?').next().unwrap_or(&path);
    let host = host.map(str::to_ascii_lowercase);
    let app = apps
        .for_request(host.as_deref(), &target, raw)
        .map_err(refused)?;
    let seen = match app {
        Some(a) => apps.path_seen(a, host.as_deref(), &target.path),
        None => target.path.as_str(),
    };
    let rules = apps.rules_for(app);
    let verdict = crate::auth::access::decide(
        rules,
        who,
        &crate::identity::Target {
            app: app.map(|a| a.name.as_str()),
            path: seen,
            method,
            client: from,
        },
    );
    let whom = who.map_or_else(
        || "nobody signed in".to_owned(),
        |p| format!("{} (groups: {})", p.user.username, p.groups.join(",")),
    );
    let app_name = app.map_or_else(
        || "no app (default_policy)".to_owned(),
        |a| format!("app {:?}", a.name),
    );
    Ok(format!(
        "{method} {url} from {from} by {whom}\n{app_name}, path {seen}\nrules: {rules}\n{verdict}"
    ))
}
