//! HTTPS served by the binary itself: sign-in over TLS, `Secure` cookies,
//! HSTS, stalled handshakes, plain HTTP on the TLS port, certificate reload
//! on SIGHUP, `gatehouse tls self-signed`, and the `redirect_http` listener.
//!
//! The client is rustls itself over a `TcpStream`, writing plain HTTP/1.1,
//! so the test sees exactly what the server sent, certificate included.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::helpers::TestApp;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// A test CA and a certificate it signed for `localhost` and 127.0.0.1.
struct TestPki {
    ca_der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
    leaf_der: Vec<u8>,
}

fn pki() -> TestPki {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gatehouse test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
    let leaf = params.signed_by(&key, &ca).expect("leaf");
    TestPki {
        ca_der: ca.der().clone(),
        // The chain: the server's certificate, then the CA's.
        cert_pem: format!("{}{}", leaf.pem(), ca.pem()),
        key_pem: key.serialize_pem(),
        leaf_der: leaf.der().to_vec(),
    }
}

fn sha256(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Writes a key pair's files into `dir` and returns their paths.
fn write_pki(dir: &Path, pki: &TestPki) -> (PathBuf, PathBuf) {
    let cert = dir.join("chain.pem");
    let key = dir.join("key.pem");
    replace_file(&cert, pki.cert_pem.as_bytes());
    replace_file(&key, pki.key_pem.as_bytes());
    (cert, key)
}

/// Replaces a file whole (as certbot's renewals do, by rename), so a reload
/// never reads half of it.
fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client that trusts the test CA only, as a browser would trust a CA.
fn verifying_client(ca: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).expect("root");
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Accepts any certificate (signatures still checked) and keeps the one
/// the server presented, to compare fingerprints.
#[derive(Debug, Default)]
struct Capture {
    seen: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("lock") = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The SHA-256 fingerprint of the certificate `addr` presents now.
fn presented_fingerprint(addr: SocketAddr) -> String {
    let capture = Arc::new(Capture::default());
    let config = Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(capture.clone())
            .with_no_client_auth(),
    );
    let resp = exchange(
        addr,
        &config,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n",
    )
    .expect("https");
    assert_eq!(resp.status, 200, "{resp:?}");
    let der = capture
        .seen
        .lock()
        .expect("lock")
        .clone()
        .expect("a certificate");
    sha256(&der)
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("Set-Cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `name=value` of the cookie `name` set here.
    fn cookie_pair(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(|c| c.split(';').next().unwrap_or("").to_owned())
    }
}

fn parse(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// One request over a new TLS connection (`head` without its blank line;
/// `Connection: close` is added) and the whole answer.
fn exchange(addr: SocketAddr, config: &Arc<ClientConfig>, head: &str) -> std::io::Result<Resp> {
    exchange_body(addr, config, head, "")
}

fn exchange_body(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    head: &str,
    body: &str,
) -> std::io::Result<Resp> {
    exchange_over(TcpStream::connect(addr)?, config, head, body)
}

/// [`exchange_body`] over the connection `sock`.
fn exchange_over(
    sock: TcpStream,
    config: &Arc<ClientConfig>,
    head: &str,
    body: &str,
) -> std::io::Result<Resp> {
    // Generous: only a hang trips it.
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    let name = ServerName::try_from("localhost").expect("name");
    let conn =
        rustls::ClientConnection::new(Arc::clone(config), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let request = if body.is_empty() {
        format!("{head}Connection: close\r\n\r\n")
    } else {
        format!(
            "{head}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    tls.write_all(request.as_bytes())?;
    tls.flush()?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // A peer that closes without close_notify: the answer is complete
        // when it came with its Content-Length.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(parse(&out))
}

/// A test app serving HTTPS with `pki`, plus `settings`.
fn https_app(pki: &TestPki, settings: &[(&str, &str)]) -> (TestApp, tempfile::TempDir) {
    https_app_with_file(pki, "", settings)
}

/// The same, with `toml` as its gatehouse.toml.
fn https_app_with_file(
    pki: &TestPki,
    toml: &str,
    settings: &[(&str, &str)],
) -> (TestApp, tempfile::TempDir) {
    let files = tempfile::tempdir().expect("dir");
    let (cert, key) = write_pki(files.path(), pki);
    let cert = cert.display().to_string();
    let key = key.display().to_string();
    let mut all = vec![("tls_cert", cert.as_str()), ("tls_key", key.as_str())];
    all.extend_from_slice(settings);
    (TestApp::spawn_with_file(toml, &all), files)
}

/// Signs `name` in through the login form over HTTPS; the session cookie's
/// `name=value`.
fn sign_in(at: SocketAddr, client: &Arc<ClientConfig>, name: &str) -> String {
    let form = exchange(at, client, "GET /login HTTP/1.1\r\nHost: localhost\r\n").expect("https");
    let csrf_cookie = form.cookie_pair("gatehouse_csrf").expect("a CSRF cookie");
    let body = format!(
        "csrf={}&username={name}&password=correct+horse",
        csrf_of(&form.body)
    );
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nCookie: {csrf_cookie}\r\n"
    );
    let resp = exchange_body(at, client, &head, &body).expect("https");
    assert_eq!(resp.status, 303, "{resp:?}");
    resp.cookie_pair("gatehouse_session").expect("signed in")
}

fn addr(app: &TestApp) -> SocketAddr {
    app.running.as_ref().expect("running").addr()
}

fn csrf_of(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("a csrf field");
    let rest = &body[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').expect("end")].to_owned()
}

#[test]
fn sign_in_over_https_sets_secure_cookies_and_hsts() {
    let pki = pki();
    let (app, _files) = https_app(&pki, &[("trusted_proxies", "127.0.0.1")]);
    app.add_user("alice", "correct horse", false);
    let client = verifying_client(&pki.ca_der);
    let at = addr(&app);
    assert!(
        app.running
            .as_ref()
            .expect("running")
            .url()
            .starts_with("https://")
    );

    let form = exchange(at, &client, "GET /login HTTP/1.1\r\nHost: localhost\r\n").expect("https");
    assert_eq!(form.status, 200);
    assert_eq!(
        form.header("Strict-Transport-Security"),
        Some("max-age=15552000"),
        "180 days, no includeSubDomains unless asked"
    );
    let csrf_cookie = form.cookie_pair("gatehouse_csrf").expect("a CSRF cookie");
    let csrf_set = form.set_cookies().join("\n");
    assert!(
        csrf_set.contains("; Secure"),
        "CSRF cookie not Secure: {csrf_set}"
    );

    // A trusted proxy claiming plain HTTP does not take `Secure` off a
    // cookie set over TLS.
    let body = format!(
        "csrf={}&username=alice&password=correct+horse",
        csrf_of(&form.body)
    );
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: http\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nCookie: {csrf_cookie}\r\n"
    );
    let signed_in = exchange_body(at, &client, &head, &body).expect("https");
    assert_eq!(signed_in.status, 303, "{signed_in:?}");
    let session_set = signed_in
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("gatehouse_session="))
        .expect("a session cookie")
        .to_owned();
    assert!(
        session_set.ends_with("; HttpOnly; Secure; SameSite=Lax"),
        "{session_set}"
    );
    assert!(signed_in.header("Strict-Transport-Security").is_some());

    let session = signed_in.cookie_pair("gatehouse_session").expect("pair");
    let verify = exchange(
        at,
        &client,
        &format!("GET /auth/verify HTTP/1.1\r\nHost: localhost\r\nCookie: {session}\r\n"),
    )
    .expect("https");
    assert_eq!(verify.status, 200);
    assert_eq!(verify.header("Remote-User"), Some("alice"));
}

#[test]
fn hsts_follows_its_settings_and_plain_http_servers_send_none() {
    let pki = pki();
    let (app, _files) = https_app(
        &pki,
        &[("hsts_max_age", "1d"), ("hsts_include_subdomains", "true")],
    );
    let client = verifying_client(&pki.ca_der);
    let resp = exchange(
        addr(&app),
        &client,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n",
    )
    .expect("https");
    assert_eq!(
        resp.header("Strict-Transport-Security"),
        Some("max-age=86400; includeSubDomains")
    );

    let (off, _files) = https_app(&pki, &[("hsts_max_age", "0s")]);
    let resp = exchange(
        addr(&off),
        &client,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n",
    )
    .expect("https");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Strict-Transport-Security"), None);

    // Over plain HTTP the header means nothing and would only mislead.
    let plain = TestApp::spawn();
    let resp = plain.browser().get("/login");
    assert_eq!(resp.header("strict-transport-security"), None);
    assert!(
        resp.set_cookies().iter().all(|c| !c.contains("Secure")),
        "plain HTTP in auto mode sets no Secure cookie"
    );
}

#[test]
fn stalled_connections_that_never_start_tls_do_not_delay_anyone() {
    let pki = pki();
    let (app, _files) = https_app(&pki, &[]);
    let at = addr(&app);
    let mut stalled = Vec::new();
    for i in 0..50 {
        let mut s = TcpStream::connect(at).expect("connect");
        if i % 5 == 0 {
            // The start of a TLS record header, then nothing.
            s.write_all(&[0x16, 0x03]).expect("write");
        }
        stalled.push(s);
    }
    let client = verifying_client(&pki.ca_der);
    for _ in 0..3 {
        let resp = exchange(at, &client, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            .expect("answered while 50 connections stall");
        assert_eq!(resp.status, 200);
    }
    drop(stalled);
}

/// Issue 20, item 2: half-done handshakes from one address, each reopened
/// when closed, left other clients a `503` on 51 of 60 tries, and that
/// `503` was plaintext on the TLS port. One address is held to its share,
/// the oldest unfinished handshakes make room, and a connection refused
/// (every slot being served) is closed without a byte.
#[test]
fn half_done_handshakes_cannot_take_every_slot_and_get_no_plaintext() {
    use crate::flood::{ATTACKER, Flood};
    let pki = pki();
    let (slow, stop) = crate::raw::upstream(|_| {
        std::thread::sleep(Duration::from_secs(3));
        rouille::Response::text("slow")
    });
    let toml = format!(
        "[[apps]]\nname = \"slow\"\nprefix = \"/apps/slow/\"\nupstream = \"http://{slow}\"\n"
    );
    let (app, _files) = https_app_with_file(
        &pki,
        &toml,
        // Threads enough for alice's 8 requests to wait on the slow app at
        // once (one user may hold half of three quarters of them).
        &[
            ("max_connections", "32"),
            ("header_timeout", "30s"),
            ("threads", "24"),
        ],
    );
    app.add_user("alice", "correct horse", false);
    let at = addr(&app);
    let client = verifying_client(&pki.ca_der);
    let healthz = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n";
    // One address: the start of a TLS record, then nothing, 64 times.
    let flood = Flood::start(at, vec![ATTACKER], 64, &[0x16, 0x03]);
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..10 {
        let resp = exchange(at, &client, healthz).expect("answered during the flood");
        assert_eq!(resp.status, 200);
    }
    assert!(flood.opened() >= 64);
    drop(flood);
    // Eight addresses, 64 in all, over the cap of 32.
    let many = (2..10).map(|i| [127, 0, 0, i]).collect();
    let flood = Flood::start(at, many, 8, &[0x16, 0x03]);
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..10 {
        let resp = exchange(at, &client, healthz).expect("answered during the flood");
        assert_eq!(resp.status, 200);
    }
    let seen = flood.seen();
    assert!(
        !String::from_utf8_lossy(&seen).contains("HTTP/1.1"),
        "plaintext on the TLS port: {:?}",
        String::from_utf8_lossy(&seen)
    );
    drop(flood);

    // Every slot of one address (8, a quarter of 32) being served
    // (requests waiting on a slow app): its next connection is refused,
    // and closed without a byte.
    let session = sign_in(at, &client, "alice");
    let from = [127, 0, 0, 20];
    let busy: Vec<_> = (0..8)
        .map(|_| {
            let client = Arc::clone(&client);
            let head =
                format!("GET /apps/slow/ HTTP/1.1\r\nHost: localhost\r\nCookie: {session}\r\n");
            let sock = crate::flood::connect_from(from, at).expect("connect");
            std::thread::spawn(move || exchange_over(sock, &client, &head, "").map(|r| r.status))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    let mut refused = crate::flood::connect_from(from, at).expect("connect");
    refused
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = Vec::new();
    let _ = refused.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "a refusal sent {:?}",
        String::from_utf8_lossy(&got)
    );
    for b in busy {
        assert_eq!(b.join().expect("thread").expect("https"), 200);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Issue 20, item 7, over HTTPS: readers slower than gatehouse can send
/// hold no request thread, and an answer finished off the request thread
/// arrives whole (no TLS record lost or sent twice when a writer stops
/// and another carries on).
#[test]
fn slow_https_readers_hold_no_request_thread_and_every_byte_arrives() {
    use crate::flood::{ATTACKER, connect_from_with, dechunk, request_threads};
    let pki = pki();
    let size = 12 * 1024 * 1024;
    let (up, stop_upstream) = crate::flood::upstream(size);
    let toml = format!(
        "[[apps]]\nname = \"files\"\nprefix = \"/apps/files/\"\nupstream = \"http://{up}\"\n"
    );
    let (app, _files) = https_app_with_file(
        &pki,
        &toml,
        &[("threads", "2"), ("login_queue_timeout", "0s")],
    );
    app.add_user("alice", "correct horse", false);
    let at = addr(&app);
    let client = verifying_client(&pki.ca_der);
    let session = sign_in(at, &client, "alice");
    let get =
        format!("GET /apps/files/big HTTP/1.1\r\nHost: localhost\r\nCookie: {session}\r\n\r\n");
    let tls_over = |sock: TcpStream| {
        let name = ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(Arc::clone(&client), name).expect("client");
        rustls::StreamOwned::new(conn, sock)
    };
    // Slow readers, more than there are request threads.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..request_threads(2) + 2)
        .map(|_| {
            let sock = connect_from_with(ATTACKER, at, Some(4096)).expect("connect");
            let mut tls = tls_over(sock);
            tls.write_all(get.as_bytes()).expect("send");
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    if matches!(tls.read(&mut buf), Ok(0) | Err(_)) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let started = std::time::Instant::now();
    let resp = exchange(at, &client, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .expect("answered beside the slow readers");
    assert_eq!(resp.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered only after {:?}",
        started.elapsed()
    );
    // A reader a little slower than gatehouse gets every byte, in order.
    let sock = TcpStream::connect(at).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut tls = tls_over(sock);
    tls.write_all(get.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !raw.ends_with(b"\r\n0\r\n\r\n") {
        let n = tls.read(&mut buf).expect("the answer goes on");
        assert!(n > 0, "closed after {} bytes", raw.len());
        raw.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(10));
    }
    let at_body = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    assert!(raw.starts_with(b"HTTP/1.1 200"));
    let body = dechunk(&raw[at_body..]);
    assert_eq!(body.len() as u64, size);
    assert!(body.iter().all(|b| *b == b'x'));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for r in readers {
        let _ = r.join();
    }
    stop_upstream.store(true, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn plain_http_or_garbage_on_the_https_port_is_refused_and_serving_goes_on() {
    let pki = pki();
    let (app, _files) = https_app(&pki, &[]);
    let at = addr(&app);

    let mut s = TcpStream::connect(at).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    assert!(answer.contains("HTTPS"), "{answer:?}");

    // Bytes that are neither HTTP nor a TLS record, and a record that lies
    // about its length: closed, no crash.
    for junk in [
        &b"\x00\x01\x02garbage\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3],
    ] {
        let mut s = TcpStream::connect(at).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s.write_all(junk).expect("write");
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
        assert!(!String::from_utf8_lossy(&sink).contains("200 OK"));
    }

    let client = verifying_client(&pki.ca_der);
    let resp =
        exchange(at, &client, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n").expect("https");
    assert_eq!(resp.status, 200);
}

#[test]
fn a_kept_alive_https_connection_serves_several_requests() {
    let pki = pki();
    let (app, _files) = https_app(&pki, &[]);
    let sock = TcpStream::connect(addr(&app)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let conn = rustls::ClientConnection::new(
        verifying_client(&pki.ca_der),
        ServerName::try_from("localhost").expect("name"),
    )
    .expect("client");
    let mut tls = rustls::StreamOwned::new(conn, sock);
    // Pipelined: both requests go out before either answer is read.
    tls.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n\
          GET /assets/style.css HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .expect("write");
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert!(out.contains("gatehouse"), "the stylesheet came through");
}

/// An upstream that answers any request `101` and then echoes every byte.
fn echo_upstream() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                               Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
                if conn.write_all(answer).is_err() {
                    return;
                }
                let mut buf = [0u8; 16384];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_websocket_through_the_proxy_flows_both_ways_over_https() {
    // Upstream's TLS stream held one lock while a reader waited on the
    // socket, so the tunnel's writer could never answer: this hung.
    let pki = pki();
    let upstream = echo_upstream();
    let toml = format!(
        "[[apps]]\nname = \"echo\"\nprefix = \"/apps/echo/\"\nupstream = \"http://{upstream}\"\n"
    );
    let (app, _files) = https_app_with_file(&pki, &toml, &[]);
    app.add_user("alice", "correct horse", false);
    let client = verifying_client(&pki.ca_der);
    let at = addr(&app);
    let session = sign_in(at, &client, "alice");

    let sock = TcpStream::connect(at).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let conn = rustls::ClientConnection::new(
        Arc::clone(&client),
        ServerName::try_from("localhost").expect("name"),
    )
    .expect("client");
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(
        tls,
        "GET /apps/echo/socket HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: {session}\r\n\r\n"
    )
    .expect("send");
    tls.flush().expect("flush");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for round in 0..4u8 {
        let message = vec![round; 64 * 1024];
        tls.write_all(&message).expect("write");
        tls.flush().expect("flush");
        let mut echoed = vec![0u8; message.len()];
        tls.read_exact(&mut echoed).expect("echoed");
        assert!(echoed == message, "round {round} came back changed");
    }
}

#[test]
fn a_wrong_key_or_a_missing_file_stops_start_up_with_its_name() {
    let a = pki();
    let b = pki();
    let dir = tempfile::tempdir().expect("dir");
    let (cert, _) = write_pki(dir.path(), &a);
    let other_key = dir.path().join("other.pem");
    std::fs::write(&other_key, &b.key_pem).expect("write");
    for (cert, key, want) in [
        (
            cert.clone(),
            other_key.clone(),
            "cannot serve the certificate",
        ),
        (
            dir.path().join("missing.pem"),
            other_key.clone(),
            "missing.pem",
        ),
        (other_key.clone(), other_key.clone(), "no certificate"),
    ] {
        let data = tempfile::tempdir().expect("dir");
        let config = crate::helpers::config(
            data.path(),
            &[
                ("tls_cert".to_owned(), cert.display().to_string()),
                ("tls_key".to_owned(), key.display().to_string()),
            ],
        );
        let err = match gatehouse::app::start_with_logging(&config, false) {
            Ok(_) => panic!("started with {cert:?} and {key:?}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(want), "{err}");
    }
}

/// `gatehouse serve` with HTTPS on port 0, its stderr lines on a channel.
fn serve_https(dir: &Path, env: &[(&str, String)]) -> (Child, SocketAddr, mpsc::Receiver<String>) {
    let mut child = crate::helpers::command(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GATEHOUSE_DATA", dir)
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .envs(crate::helpers::backend_env(dir))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let (first, url) = crate::raw::served_url(&mut child);
    let addr = url
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("not https: {first}"))
        .parse()
        .expect("address");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, addr, rx)
}

fn signal(child: &Child, sig: &str) {
    assert!(
        std::process::Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .expect("kill")
            .success()
    );
}

fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => panic!("no log line with {needle:?}"),
        }
    }
}

fn stop(mut child: Child) {
    signal(&child, "-TERM");
    for _ in 0..200 {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status:?}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("serve did not stop within 10 s of SIGTERM");
}

#[test]
fn sighup_serves_a_renewed_certificate_and_a_bad_one_keeps_the_old() {
    let first = pki();
    let files = tempfile::tempdir().expect("dir");
    let (cert, key) = write_pki(files.path(), &first);
    let data = tempfile::tempdir().expect("dir");
    let (child, at, logs) = serve_https(
        data.path(),
        &[
            ("GATEHOUSE_TLS_CERT", cert.display().to_string()),
            ("GATEHOUSE_TLS_KEY", key.display().to_string()),
        ],
    );
    assert_eq!(presented_fingerprint(at), sha256(&first.leaf_der));

    // A renewal: new files, then SIGHUP.
    let renewed = pki();
    write_pki(files.path(), &renewed);
    signal(&child, "-HUP");
    let line = wait_for_line(&logs, "tls reloaded");
    assert!(line.contains(&sha256(&renewed.leaf_der)), "{line}");
    assert_eq!(presented_fingerprint(at), sha256(&renewed.leaf_der));

    // A broken renewal (a truncated chain, a key from another pair): the
    // renewed certificate stays, and the log says why.
    replace_file(&cert, b"-----BEGIN CERTIFICATE-----\nAAAA\n");
    signal(&child, "-HUP");
    let line = wait_for_line(&logs, "tls reload refused");
    assert!(line.contains("chain.pem"), "{line}");
    assert_eq!(presented_fingerprint(at), sha256(&renewed.leaf_der));

    write_pki(files.path(), &renewed);
    replace_file(&key, pki().key_pem.as_bytes());
    signal(&child, "-HUP");
    let line = wait_for_line(&logs, "tls reload refused");
    assert!(line.contains("cannot serve the certificate"), "{line}");
    assert_eq!(presented_fingerprint(at), sha256(&renewed.leaf_der));

    stop(child);
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn self_signed_writes_private_files_that_serve_picks_up() {
    let data = tempfile::tempdir().expect("dir");
    let run = |args: &[&str]| {
        crate::helpers::command(BIN)
            .args(args)
            .env("GATEHOUSE_DATA", data.path())
            .output()
            .expect("run")
    };
    let out = run(&[
        "tls",
        "self-signed",
        "--host",
        "localhost",
        "--host",
        "127.0.0.1",
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let tls_dir = data.path().join("tls");
    let cert = tls_dir.join("cert.pem");
    let key = tls_dir.join("key.pem");
    #[cfg(unix)]
    {
        assert_eq!(mode(&tls_dir), 0o700);
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&cert), 0o600);
    }
    let pem = std::fs::read(&cert).expect("cert");
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(&pem)
        .map(|c: CertificateDer<'static>| c.to_vec())
        .expect("a PEM certificate");
    let print = sha256(&der);
    assert!(
        stdout.contains(&format!("SHA-256 fingerprint: {print}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("tls_cert = "),
        "prints the settings: {stdout}"
    );
    assert!(
        std::fs::read_to_string(&key)
            .expect("key")
            .contains("PRIVATE KEY")
    );

    // Not replaced by accident, and host names are checked.
    let again = run(&["tls", "self-signed", "--host", "localhost"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read(&cert).expect("cert"), pem, "left alone");
    let bad = run(&["tls", "self-signed", "--host", "bad host", "--force"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bad host"));
    let none = run(&["tls", "self-signed"]);
    assert!(!none.status.success(), "--host is required");

    // `serve` on that data directory speaks HTTPS with them, no setting needed.
    let (child, at, _logs) = serve_https(data.path(), &[]);
    assert_eq!(presented_fingerprint(at), print);
    stop(child);
}

/// One plain HTTP request to `at` and its answer.
fn plain(at: SocketAddr, request: &str) -> Resp {
    let mut s = TcpStream::connect(at).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse(&out)
}

#[test]
fn the_redirect_listener_answers_301_to_https_and_serves_nothing_else() {
    let pki = pki();
    let (app, _files) = https_app(&pki, &[("redirect_http", "127.0.0.1:0")]);
    app.add_user("alice", "correct horse", true);
    let running = app.running.as_ref().expect("running");
    let redirect = running.redirect_addr().expect("a redirect listener");
    let port = running.addr().port();

    let resp = plain(
        redirect,
        "GET /login?next=%2Faccount HTTP/1.1\r\nHost: auth.lan:8080\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 301);
    assert_eq!(
        resp.header("Location"),
        Some(format!("https://auth.lan:{port}/login?next=%2Faccount").as_str())
    );

    // Every route, every method: a redirect, never the route itself.
    for request in [
        "GET /healthz HTTP/1.1\r\nHost: auth.lan\r\nConnection: close\r\n\r\n",
        "GET /auth/verify HTTP/1.1\r\nHost: auth.lan\r\nConnection: close\r\n\r\n",
        "GET /admin HTTP/1.1\r\nHost: auth.lan\r\nConnection: close\r\n\r\n",
        "GET /setup HTTP/1.1\r\nHost: auth.lan\r\nConnection: close\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: auth.lan\r\nConnection: close\r\n\r\n",
        "POST /api/login HTTP/1.1\r\nHost: auth.lan\r\nContent-Type: application/json\r\n\
         Content-Length: 46\r\nConnection: close\r\n\r\n\
         {\"username\":\"alice\",\"password\":\"correct horse\"}",
    ] {
        let resp = plain(redirect, request);
        assert_eq!(resp.status, 301, "{request}: {resp:?}");
        assert!(resp.set_cookies().is_empty(), "{request}: no cookie ever");
        assert!(
            resp.header("Location")
                .is_some_and(|l| l.starts_with("https://auth.lan:")),
            "{resp:?}"
        );
    }

    // A Host that would break out of the URL is refused, not echoed.
    for host in ["evil.example/x", "a b", "[::1]x", "auth.lan\"><"] {
        let resp = plain(
            redirect,
            &format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(resp.status, 400, "{host}: {resp:?}");
        assert_eq!(resp.header("Location"), None);
    }
    // A path that would read as another host goes to the root instead.
    let resp = plain(
        redirect,
        "GET //evil.example/ HTTP/1.1\r\nHost: auth.lan\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        resp.header("Location"),
        Some(format!("https://auth.lan:{port}/").as_str())
    );
}

#[test]
fn the_redirect_goes_to_public_url_when_set_and_needs_https() {
    let pki = pki();
    let (app, _files) = https_app(
        &pki,
        &[
            ("redirect_http", "127.0.0.1:0"),
            ("public_url", "https://auth.example.lan"),
        ],
    );
    let redirect = app
        .running
        .as_ref()
        .expect("running")
        .redirect_addr()
        .expect("listener");
    let resp = plain(
        redirect,
        "GET /account HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 301);
    assert_eq!(
        resp.header("Location"),
        Some("https://auth.example.lan/account")
    );

    // Without HTTPS a redirect listener would send people nowhere.
    let dir = tempfile::tempdir().expect("dir");
    let mut layers = gatehouse::config::Layers::new();
    layers.env([(
        "GATEHOUSE_REDIRECT_HTTP".to_owned(),
        "127.0.0.1:0".to_owned(),
    )]);
    let err = layers
        .build(dir.path().to_owned())
        .expect_err("refused")
        .to_string();
    assert!(err.contains("redirect_http"), "{err}");
}

/// A tiny_http server speaking TLS with `header_timeout` (not yet a
/// gatehouse setting, so the server is built directly).
fn tls_server_with_header_timeout(
    pki: &TestPki,
    dir: &Path,
    timeout: Duration,
) -> tiny_http::Server {
    let (cert, key) = write_pki(dir, pki);
    let certs =
        gatehouse::tls::Certificates::open(gatehouse::tls::TlsFiles { cert, key }).expect("certs");
    let options = tiny_http::Options {
        header_timeout: timeout,
        tls: Some(gatehouse::tls::server_config(certs).expect("config")),
        ..tiny_http::Options::default()
    };
    tiny_http::with_options(options, || tiny_http::Server::http("127.0.0.1:0")).expect("server")
}

/// Whether the server has closed `conn` (end of file or a reset), waiting
/// up to a generous bound.
fn closed_by_server(conn: &mut TcpStream) -> bool {
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            // An alert, say: keep reading until the close.
            Ok(_) => {}
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

#[test]
fn a_handshake_must_finish_within_the_header_timeout_as_a_whole() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("dir");
    let server = tls_server_with_header_timeout(&pki, dir.path(), Duration::from_millis(500));
    let at = server.server_addr().to_ip().expect("ip");

    // Silent: closed once the deadline passes.
    let mut silent = TcpStream::connect(at).expect("connect");
    assert!(closed_by_server(&mut silent), "a silent client is closed");

    // A real ClientHello, one byte every 100 ms: each read comes well
    // within 500 ms, but the handshake as a whole does not.
    let mut hello = Vec::new();
    let mut client = rustls::ClientConnection::new(
        verifying_client(&pki.ca_der),
        ServerName::try_from("localhost").expect("name"),
    )
    .expect("client");
    while client.wants_write() {
        client.write_tls(&mut hello).expect("hello");
    }
    assert!(hello.len() > 100, "{} bytes", hello.len());
    let mut drip = TcpStream::connect(at).expect("connect");
    drip.set_nonblocking(false).expect("blocking");
    let mut sent = 0;
    for byte in &hello {
        if drip.write_all(&[*byte]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        sent < hello.len(),
        "the server took the whole ClientHello at one byte per 100 ms ({sent} bytes)"
    );
}
