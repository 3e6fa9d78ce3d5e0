//! TLS through rustls (gatehouse patch: upstream's OpenSSL backend is gone,
//! and the rustls one is ported to rustls 0.23; see `ssl/rustls.rs`).

#[cfg(feature = "ssl-rustls")]
pub(crate) mod rustls;
#[cfg(feature = "ssl-rustls")]
pub(crate) use self::rustls::RustlsStream as SslStream;
