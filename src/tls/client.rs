//! TLS to the servers gatehouse connects to (PostgreSQL, Redis, and later
//! the directory): which certificate authorities are trusted, and the one
//! rustls client configuration every such connection is made with.
//!
//! Every connection checks the server's whole certificate, as libpq's
//! `sslmode=verify-full` does: a chain up to a trusted root, dates that
//! hold, and the host name (or address) gatehouse was told to connect to.
//! There is no switch to check less. Threat: whoever can intercept the
//! connection (an ARP or DNS spoof on the office network, a rogue hop on
//! the way to a managed database) would otherwise pose as the server and
//! read every password hash and session key, or hand out an
//! administrator's rights; encryption without the check stops only those
//! who listen, not those who answer.
//!
//! The roots are either the certificates of one PEM file ([`CaFile`]: a
//! private CA, or a provider's own, such as Amazon RDS's), and then only
//! those, or Mozilla's list built into the binary (webpki-roots). Built
//! in, not read from the system's store: gatehouse is one static binary
//! that must behave alike on a NAS, in an empty container and on a
//! desktop, and a server whose certificate is not from a public CA names
//! its CA in a file anyway. rustls with the `ring` provider, as for the
//! listener: no OpenSSL.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::TlsError;

/// The CA certificates of one PEM file, read and checked: the only roots
/// a connection made with it trusts.
#[derive(Clone)]
pub struct CaFile {
    path: PathBuf,
    pem: Vec<u8>,
    roots: Arc<RootCertStore>,
}

impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("certificates", &self.roots.len())
            .finish()
    }
}

impl CaFile {
    /// Reads `path`: one or more PEM certificates (`-----BEGIN
    /// CERTIFICATE-----`), each usable as a trust anchor.
    ///
    /// # Errors
    ///
    /// [`TlsError::Read`] when the file cannot be read, [`TlsError::Pem`]
    /// when it holds no certificate, a malformed one, or one that cannot
    /// be a root.
    pub fn read(path: &Path) -> Result<Self, TlsError> {
        let pem = std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let bad = |reason: String| TlsError::Pem {
            path: path.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
        if certs.is_empty() {
            return Err(bad(
                "holds no certificate (no -----BEGIN CERTIFICATE----- block)".to_owned(),
            ));
        }
        let mut roots = RootCertStore::empty();
        for (n, cert) in certs.into_iter().enumerate() {
            // Every certificate must count: one silently skipped could be
            // the CA the operator meant, and the failure would surface
            // only later, as an unexplained handshake error.
            roots
                .add(cert)
                .map_err(|e| bad(format!("certificate {} cannot be a root: {e}", n + 1)))?;
        }
        Ok(Self {
            path: path.to_owned(),
            pem,
            roots: Arc::new(roots),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text, for clients that take PEM (the Redis client).
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }

    /// How many certificates it holds.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether it holds none (never, once read).
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }
}

/// Mozilla's root certificates, as built into the binary.
pub fn builtin_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// The client configuration for a connection to another server: TLS 1.2
/// and 1.3 with rustls' safe defaults and the `ring` provider, no client
/// certificate, and the server's certificate checked in full (chain,
/// dates, name) against `ca`'s certificates, or Mozilla's roots when
/// `ca` is `None`.
///
/// Each caller gets its own copy, to set what its protocol needs (ALPN).
///
/// # Errors
///
/// Never in practice (ring supports the default protocol versions); a
/// provider without them would be refused here.
pub fn client_config(ca: Option<&CaFile>) -> Result<ClientConfig, TlsError> {
    let roots = ca.map_or_else(builtin_roots, |ca| (*ca.roots).clone());
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Generate(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Makes `ring` the process's default rustls provider, for client
/// libraries that build their configuration themselves from that default
/// (the Redis client does). Without it such a library would panic at its
/// first handshake should a dependency ever switch another provider on
/// too. A default set before (by a program using gatehouse as a library)
/// is kept.
pub fn install_default_provider() {
    // Err only means a default is already installed: that one stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// rustls refusing the peer's certificate, when that is what `e` is or
/// wraps. The I/O errors TLS streams return carry rustls' error inside,
/// where `source()` does not reach, and the Redis client hands its causes
/// on in an `Arc`, which hides their type; both are opened.
pub fn refused_certificate<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    // Bounded: a cycle of causes must not spin forever.
    for _ in 0..32 {
        let e = next?;
        if let Some(found @ rustls::Error::InvalidCertificate(_)) =
            e.downcast_ref::<rustls::Error>()
        {
            return Some(found);
        }
        next = if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io.get_ref().map(|inner| inner as &(dyn Error + 'static))
        } else if let Some(shared) = e.downcast_ref::<Arc<dyn Error + Send + Sync>>() {
            Some(&**shared as &(dyn Error + 'static))
        } else {
            e.source()
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    use rustls_pki_types::ServerName;

    /// A CA, and a server certificate and key it signed for `names`.
    struct Pki {
        ca_pem: String,
        server_chain: Vec<CertificateDer<'static>>,
        server_key: rustls_pki_types::PrivateKeyDer<'static>,
    }

    fn pki(names: &[&str]) -> Pki {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        let issuer = rcgen::CertifiedIssuer::self_signed(
            ca_params,
            rcgen::KeyPair::generate().expect("ca key"),
        )
        .expect("ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("params");
        let cert = params.signed_by(&key, &issuer).expect("cert");
        Pki {
            ca_pem: issuer.pem(),
            server_chain: vec![cert.der().clone()],
            server_key: rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der())
                .expect("key der"),
        }
    }

    fn ca_file(dir: &Path, pem: &str) -> Result<CaFile, TlsError> {
        let path = dir.join("ca.pem");
        std::fs::write(&path, pem).expect("write");
        CaFile::read(&path)
    }

    /// A whole handshake in memory between a client made with `config`,
    /// asking for `name`, and a server presenting `pki`'s certificate:
    /// what the client says of it.
    fn verify(config: &ClientConfig, pki: &Pki, name: &str) -> Result<(), rustls::Error> {
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())?;
        let name = ServerName::try_from(name.to_owned()).expect("name");
        let mut client = rustls::ClientConnection::new(Arc::new(config.clone()), name)?;
        let mut server = rustls::ServerConnection::new(Arc::new(server))?;
        for _ in 0..10 {
            let mut flight = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut flight).expect("to memory");
            }
            server
                .read_tls(&mut flight.as_slice())
                .expect("from memory");
            server.process_new_packets()?;
            flight.clear();
            while server.wants_write() {
                server.write_tls(&mut flight).expect("to memory");
            }
            client
                .read_tls(&mut flight.as_slice())
                .expect("from memory");
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn a_certificate_from_the_ca_file_for_the_right_name_is_accepted() {
        let dir = tempfile::tempdir().expect("dir");
        let pki = pki(&["db.lan", "127.0.0.1"]);
        let ca = ca_file(dir.path(), &pki.ca_pem).expect("ca file");
        let config = client_config(Some(&ca)).expect("config");
        verify(&config, &pki, "db.lan").expect("db.lan");
        verify(&config, &pki, "127.0.0.1").expect("127.0.0.1");
    }

    #[test]
    fn a_certificate_for_another_name_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let pki = pki(&["other.lan"]);
        let ca = ca_file(dir.path(), &pki.ca_pem).expect("ca file");
        let config = client_config(Some(&ca)).expect("config");
        let err = verify(&config, &pki, "db.lan").expect_err("another name");
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                        | rustls::CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{err:?}"
        );
        assert!(refused_certificate(&err).is_some());
        let wrapped = std::io::Error::new(std::io::ErrorKind::InvalidData, err);
        assert!(refused_certificate(&wrapped).is_some());
        assert!(refused_certificate(&std::io::Error::other("other")).is_none());
        // As the Redis client passes it on: an I/O error in an `Arc`.
        let shared: Arc<dyn Error + Send + Sync> = Arc::new(wrapped);
        assert!(refused_certificate(&shared).is_some());
    }

    #[test]
    fn a_private_ca_is_not_trusted_without_its_file() {
        let pki = pki(&["db.lan"]);
        let config = client_config(None).expect("config");
        let err = verify(&config, &pki, "db.lan").expect_err("unknown issuer");
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(_)),
            "{err:?}"
        );
    }

    #[test]
    fn with_a_ca_file_only_its_certificates_are_trusted() {
        // Another CA's file: the server's (equally private) CA is not
        // trusted, and neither would a public one be.
        let dir = tempfile::tempdir().expect("dir");
        let ours = pki(&["db.lan"]);
        let theirs = pki(&["db.lan"]);
        let ca = ca_file(dir.path(), &theirs.ca_pem).expect("ca file");
        let config = client_config(Some(&ca)).expect("config");
        assert_eq!(ca.len(), 1);
        verify(&config, &theirs, "db.lan").expect("their own server");
        assert!(verify(&config, &ours, "db.lan").is_err());
    }

    #[test]
    fn a_ca_file_must_hold_certificates_every_one_usable() {
        let dir = tempfile::tempdir().expect("dir");
        let pki = pki(&["db.lan"]);
        for (bad, what) in [
            ("", "holds no certificate"),
            ("not pem at all\n", "holds no certificate"),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "holds no certificate",
            ),
            (
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                "not a PEM certificate file",
            ),
        ] {
            let err = ca_file(dir.path(), bad).expect_err(bad);
            assert!(err.to_string().contains(what), "{bad:?}: {err}");
        }
        // A good certificate followed by garbage DER: refused, not
        // half-read.
        let garbage = format!(
            "{}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            pki.ca_pem
        );
        let err = ca_file(dir.path(), &garbage).expect_err("garbage");
        assert!(err.to_string().contains("certificate 2"), "{err}");
        let missing = CaFile::read(&dir.path().join("nope.pem")).expect_err("missing");
        assert!(matches!(missing, TlsError::Read { .. }), "{missing}");
    }

    #[test]
    fn the_builtin_roots_are_mozillas() {
        assert!(builtin_roots().len() > 100);
    }
}
