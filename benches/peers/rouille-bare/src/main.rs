//! A bare rouille server that answers every request with a constant: the
//! most any rouille app, gatehouse included, can do on this machine.
fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "0".into());
    let threads: usize = std::env::var("THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(16);
    let server = rouille::Server::new(format!("127.0.0.1:{port}"), |_request| {
        rouille::Response::text("ok").with_additional_header("Remote-User", "alice")
    })
    .expect("listen")
    .pool_size(threads);
    println!("listening on http://{}", server.server_addr());
    server.run();
}
