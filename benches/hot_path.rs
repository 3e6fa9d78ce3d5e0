//! Microbenchmarks of the hot path: what `/auth/verify` does per request.
//! `cargo bench --bench hot_path`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::crypto::Signer;
use gatehouse::session::{SessionId, SqliteStore, Store, conformance};

fn cookie_verify(c: &mut Criterion) {
    let signer = Signer::new(vec![
        b"a benchmark secret of 64 bytes, give or take a few bytes".to_vec(),
    ]);
    let id = SessionId::generate();
    let cookie = signer.sign("session", id.as_str());
    let header = format!("other=1; gatehouse_session={cookie}; theme=dark");
    c.bench_function("cookie: find + verify signature + parse id", |b| {
        b.iter(|| {
            let value = gatehouse::session::cookie::find(black_box(&header), "gatehouse_session")
                .next()
                .expect("cookie");
            let payload = signer.verify("session", value).expect("valid");
            black_box(SessionId::parse(payload).expect("id").key())
        });
    });
    let forged = format!("{}.{}", id.as_str(), "A".repeat(43));
    c.bench_function("cookie: reject a forged signature", |b| {
        b.iter(|| black_box(signer.verify("session", black_box(&forged))));
    });
}

fn store_load(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::open(&dir.path().join("bench.db")).expect("open");
    let now = gatehouse::clock::now();
    let mut keys = Vec::new();
    for _ in 0..1000 {
        let key = SessionId::generate().key();
        store
            .create(&conformance::record(key, now))
            .expect("create");
        keys.push(key);
    }
    let mut i = 0;
    c.bench_function("sqlite store: load one of 1,000 sessions", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(store.load(&keys[i], now).expect("load").expect("live"))
        });
    });
}

criterion_group!(benches, cookie_verify, store_load);
criterion_main!(benches);
