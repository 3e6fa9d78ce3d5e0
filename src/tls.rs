//! HTTPS certificates: reading a PEM chain and key, the resolver that hands
//! rustls the current one and swaps it on reload (`SIGHUP`), the rustls
//! server configuration, fingerprints, and `gatehouse tls self-signed`.
//! TLS to the servers gatehouse connects to (the backends, the directory)
//! is in [`client`].
//!
//! No cryptography of our own: rustls with the `ring` provider does TLS,
//! rcgen (on `ring`) makes keys and certificates.

pub mod client;

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Where the certificate chain and its key are read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files `gatehouse tls self-signed` writes, which `serve` uses when
    /// `tls_cert` and `tls_key` are not set.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        let dir = data_dir.join("tls");
        Self {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// Why a certificate could not be used or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the kind wanted.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key is unusable or belongs to another certificate.
    #[error("the key in {key} cannot serve the certificate in {cert}: {reason}")]
    Key {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        reason: String,
    },
    /// A host name given for a new certificate is not one.
    #[error("{0:?} is not a host name or IP address")]
    Host(String),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// rcgen could not make the key or certificate.
    #[error("cannot make the certificate: {0}")]
    Generate(String),
    /// Files already there would be replaced.
    #[error("{0} already exists (pass --force to replace it)")]
    Exists(PathBuf),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks a chain and its key: both parse, the key is one rustls
/// can sign with, and it matches the first certificate.
///
/// # Errors
///
/// Any [`TlsError`] naming the file at fault.
pub fn load(files: &TlsFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(&files.cert)?;
    let key_pem = Zeroizing::new(read(&files.key)?);
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: files.cert.clone(),
            reason: format!("not a PEM certificate chain: {e}"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: files.cert.clone(),
            reason: "holds no certificate (no -----BEGIN CERTIFICATE----- block)".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: files.key.clone(),
        reason: format!("holds no usable private key: {e}"),
    })?;
    let key_err = |e: rustls::Error| TlsError::Key {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: e.to_string(),
    };
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(key_err)?;
    // from_der lets "cannot tell" pass; ring can always tell for the keys
    // it loads, so insist.
    certified.keys_match().map_err(key_err)?;
    Ok(Arc::new(certified))
}

/// The SHA-256 fingerprint of a DER certificate, as `AB:CD:...` (the form
/// browsers and `openssl x509 -fingerprint -sha256` show).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(95);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}

/// The certificate in use, swapped whole on reload: a handshake takes the
/// `Arc` current when it starts, so renewals reach new connections only.
pub struct Certificates {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Loads `files`.
    ///
    /// # Errors
    ///
    /// See [`load`].
    pub fn open(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let current = RwLock::new(load(&files)?);
        Ok(Arc::new(Self { files, current }))
    }

    /// Reads the files again and, when they are good, serves them from the
    /// next handshake on. When they are not, the old certificate stays.
    ///
    /// # Errors
    ///
    /// Why the new files were refused (the old certificate is kept).
    pub fn reload(&self) -> Result<String, TlsError> {
        let new = load(&self.files)?;
        let print = fingerprint(new.end_entity_cert().map_or(&[][..], |c| c.as_ref()));
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = new;
        Ok(print)
    }

    /// The fingerprint of the certificate served now.
    pub fn fingerprint(&self) -> String {
        let current = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        fingerprint(current.end_entity_cert().map_or(&[][..], |c| c.as_ref()))
    }

    /// The files this reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The rustls configuration of gatehouse's listener: TLS 1.2 and 1.3 with
/// rustls' safe defaults, no client certificates, HTTP/1.1, the
/// certificate from `certs`.
///
/// # Errors
///
/// Never in practice (ring supports the default protocol versions); a
/// provider without them would be refused here.
pub fn server_config(certs: Arc<Certificates>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Generate(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What `gatehouse tls self-signed` wrote.
#[derive(Debug)]
pub struct SelfSigned {
    /// The files.
    pub files: TlsFiles,
    /// The certificate's SHA-256 fingerprint.
    pub fingerprint: String,
    /// The last day it is valid (`YYYY-MM-DD`).
    pub valid_until: String,
}

/// How long a self-signed certificate lasts: about five years, so a small
/// install that pinned it does not break soon; renew by running the
/// command again with `--force`.
const SELF_SIGNED_DAYS: i64 = 5 * 365;

/// Makes a new key (ECDSA P-256) and a self-signed certificate for
/// `hosts`, and writes them (mode 0600, in a 0700 directory) to `files`.
///
/// # Errors
///
/// A bad host name, files already there without `force`, or a write that
/// failed.
pub fn self_signed(
    files: &TlsFiles,
    hosts: &[String],
    force: bool,
) -> Result<SelfSigned, TlsError> {
    if hosts.is_empty() {
        return Err(TlsError::Host(String::new()));
    }
    for host in hosts {
        if host.is_empty() || ServerName::try_from(host.as_str()).is_err() {
            return Err(TlsError::Host(host.clone()));
        }
    }
    if !force {
        for path in [&files.cert, &files.key] {
            if path.exists() {
                return Err(TlsError::Exists(path.clone()));
            }
        }
    }
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(generate)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hosts[0].clone());
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let at = |secs: i64| {
        time::OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|e| TlsError::Generate(e.to_string()))
    };
    // A day's slack for clients whose clock is a little behind.
    params.not_before = at(now - 86_400)?;
    params.not_after = at(now + SELF_SIGNED_DAYS * 86_400)?;
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;
    let key_pem = Zeroizing::new(key.serialize_pem().into_bytes());
    if let Some(dir) = files.key.parent() {
        create_private_dir(dir)?;
    }
    if let Some(dir) = files.cert.parent() {
        create_private_dir(dir)?;
    }
    write_private(&files.key, &key_pem)?;
    write_private(&files.cert, cert.pem().as_bytes())?;
    let until = params.not_after;
    Ok(SelfSigned {
        files: files.clone(),
        fingerprint: fingerprint(cert.der()),
        valid_until: format!(
            "{:04}-{:02}-{:02}",
            until.year(),
            u8::from(until.month()),
            until.day()
        ),
    })
}

fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: dir.to_owned(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(err)
}

/// Writes `bytes` to `path` through a temporary file made 0600 from the
/// start, renamed over the old one, so a reader never sees half a file and
/// the key is never readable by others, not even for a moment.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension(format!(
        "tmp{}",
        u32::from_le_bytes(crate::crypto::random_bytes::<4>())
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> TlsFiles {
        TlsFiles::in_data_dir(dir)
    }

    #[test]
    fn a_self_signed_certificate_loads_and_its_fingerprint_is_stable() {
        let dir = tempfile::tempdir().expect("dir");
        let made = self_signed(&files(dir.path()), &["auth.lan".into()], false).expect("made");
        let certs = Certificates::open(made.files.clone()).expect("loads");
        assert_eq!(certs.fingerprint(), made.fingerprint);
        assert_eq!(made.fingerprint.len(), 95);
    }

    #[test]
    fn existing_files_are_not_replaced_without_force() {
        let dir = tempfile::tempdir().expect("dir");
        let f = files(dir.path());
        let first = self_signed(&f, &["a.lan".into()], false).expect("made");
        assert!(matches!(
            self_signed(&f, &["a.lan".into()], false),
            Err(TlsError::Exists(_))
        ));
        let second = self_signed(&f, &["a.lan".into()], true).expect("replaced");
        assert_ne!(first.fingerprint, second.fingerprint);
    }

    #[test]
    fn bad_host_names_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        for bad in ["", "a b", "auth.lan/x", "-"] {
            assert!(
                matches!(
                    self_signed(&files(dir.path()), &[bad.to_owned()], false),
                    Err(TlsError::Host(_))
                ),
                "{bad:?}"
            );
        }
        assert!(!files(dir.path()).key.exists());
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let a = tempfile::tempdir().expect("dir");
        let b = tempfile::tempdir().expect("dir");
        self_signed(&files(a.path()), &["a.lan".into()], false).expect("a");
        self_signed(&files(b.path()), &["b.lan".into()], false).expect("b");
        let mixed = TlsFiles {
            cert: files(a.path()).cert,
            key: files(b.path()).key,
        };
        assert!(
            matches!(load(&mixed), Err(TlsError::Key { .. })),
            "mismatch"
        );
    }

    #[test]
    fn a_bad_reload_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().expect("dir");
        let f = files(dir.path());
        let made = self_signed(&f, &["a.lan".into()], false).expect("made");
        let certs = Certificates::open(f.clone()).expect("loads");
        std::fs::write(&f.cert, "not a certificate").expect("write");
        assert!(certs.reload().is_err());
        assert_eq!(certs.fingerprint(), made.fingerprint);
        let again = self_signed(&f, &["a.lan".into()], true).expect("made");
        assert_eq!(certs.reload().expect("good file"), again.fingerprint);
        assert_eq!(certs.fingerprint(), again.fingerprint);
    }
}
