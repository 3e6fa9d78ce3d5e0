//! The server's threads, counted from `/proc/<pid>/task` of the real binary
//! run as a child (issue 22): few at idle, none made per request on a
//! kept-alive connection, and none made anew when load comes back after a
//! pause. Counts and thread ids, never times.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::raw::{collect_log, served_url};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// The server child, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> (tempfile::TempDir, Server) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = crate::helpers::command(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("GATEHOUSE_DATA", dir.path())
            // Cost 4 hashes fast, so the sign-in queue may hold its most
            // (256) waiting callers: the largest request pool there is.
            .env("GATEHOUSE_BCRYPT_COST", "4")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve");
        let _log = collect_log(&mut child);
        let (_, url) = served_url(&mut child);
        let addr = url.trim_start_matches("http://").to_owned();
        (dir, Server { child, addr })
    }

    /// The ids of the server's threads now (under an emulator, of the
    /// emulator's, which runs one per guest thread).
    fn threads(&self) -> BTreeSet<u64> {
        std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .expect("the server's task list")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// A kept-alive connection that has been answered once.
    fn connect(&self) -> Conn {
        let stream = TcpStream::connect(&self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut conn = Conn {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            stream,
        };
        conn.get("/healthz");
        conn
    }
}

struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// One request on this connection; its answer read whole, its status
    /// returned.
    fn get(&mut self, path: &str) -> u16 {
        self.stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: gatehouse\r\n\r\n").as_bytes())
            .expect("send");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("length");
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("body");
        status
    }
}

#[test]
fn few_threads_at_idle_and_none_made_per_kept_alive_request() {
    if !crate::helpers::on_sqlite("few_threads_at_idle_and_none_made_per_kept_alive_request") {
        return;
    }
    let (_dir, server) = Server::start();
    let mut conn = server.connect();
    let idle = server.threads();
    // The accept threads, the connection threads kept ready, one request
    // thread, the reaper, the database's: about a dozen. The request pool
    // made all its threads at start before (16 + 2 + 256 here, 285 in all).
    assert!(
        idle.len() <= 40,
        "{} threads at idle: the request pool is made eagerly",
        idle.len()
    );
    for _ in 0..300 {
        assert_eq!(conn.get("/auth/verify"), 401);
    }
    let after = server.threads();
    let made = after.difference(&idle).count();
    // One per request would be 300. A few may be made on a busy machine:
    // a request that arrives before the last one's thread is back waiting
    // starts one more, which then stays warm (3 were seen while other
    // suites ran beside this one; the bound was 2).
    assert!(
        made <= 4,
        "{made} threads made across 300 requests on one connection"
    );
}

#[test]
fn load_that_comes_back_after_a_pause_finds_its_threads_warm() {
    if !crate::helpers::on_sqlite("load_that_comes_back_after_a_pause_finds_its_threads_warm") {
        return;
    }
    let (_dir, server) = Server::start();
    // A burst of 16 connections, each answered, then closed.
    let burst = || {
        let mut conns: Vec<Conn> = (0..16).map(|_| server.connect()).collect();
        for conn in &mut conns {
            assert_eq!(conn.get("/auth/verify"), 401);
        }
    };
    burst();
    let warm = server.threads();
    // Longer than upstream tiny_http kept a spare connection thread (5 s).
    std::thread::sleep(Duration::from_secs(7));
    burst();
    let made = server.threads().difference(&warm).count();
    // Dropped while idle, all 16 would be made again. A busy machine (CI
    // runs other suites beside this one) can answer the second burst with
    // more at once than the first, and make a few more (4 were seen).
    assert!(
        made <= 6,
        "{made} threads made anew when the same load came back after a pause"
    );
}
