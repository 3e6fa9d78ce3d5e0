//! Helpers below ureq, shared by the test modules that need them: raw bytes
//! over a socket, the output of the real binary started as a child, and
//! small upstreams for the proxy tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::TestApp;

/// Sends `request` as raw bytes (for targets and headers a normal client
/// cannot send) and returns everything the server answered until it
/// closed or `Connection: close` took effect.
pub fn raw(app: &TestApp, request: &str) -> String {
    let addr = app.base.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    conn.write_all(request.as_bytes()).expect("send");
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads the first line `gatehouse serve` prints on a piped stdout, which
/// ends with the URL it listens on, and returns that line and the URL. The
/// rest of stdout is drained on a thread, so a full pipe never blocks the
/// server.
pub fn served_url(child: &mut Child) -> (String, String) {
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let url = first.split_whitespace().last().expect("url").to_owned();
    std::thread::spawn(move || for _ in lines {});
    (first, url)
}

/// Collects the lines the child writes on a piped stderr, as they come.
pub fn collect_log(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&log);
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().expect("log").push(line);
        }
    });
    log
}

pub use crate::helpers::upstream;
