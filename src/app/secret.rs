//! The cookie-signing secrets the server starts with: the configured
//! `secrets`, or else the secret file in the data directory, generated on
//! first start (64 random bytes, mode 0600) and reused after, so that a
//! restart logs nobody out. Configuration only names the file; creating it
//! is start-up's job.

use std::io::Write as _;
use std::path::PathBuf;

use crate::config::Config;

/// The secret file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot use secret file {path}: {reason}")]
pub struct SecretFileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// The secrets to sign with: the configured ones, or else the contents of
/// [`Config::secret_file`], generated on first use.
///
/// # Errors
///
/// When the secret file cannot be read or created, or is too short.
pub fn signing_secrets(config: &Config) -> Result<Vec<Vec<u8>>, SecretFileError> {
    if !config.secrets.is_empty() {
        return Ok(config.secrets.iter().map(|s| s.expose().to_vec()).collect());
    }
    let path = config.secret_file();
    let err = |e: std::io::Error| SecretFileError {
        path: path.clone(),
        reason: e.to_string(),
    };
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() >= 32 => return Ok(vec![bytes]),
        Ok(_) => {
            return Err(SecretFileError {
                path,
                reason: "shorter than 32 bytes; delete it to have a new one made".into(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let secret = crate::crypto::random_bytes::<64>();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(&secret)
                .and_then(|()| file.sync_all())
                .map_err(err)?;
            Ok(vec![secret.to_vec()])
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(vec![std::fs::read(&path).map_err(err)?])
        }
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Layers;

    #[test]
    fn a_generated_secret_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().expect("dir");
        let c = Layers::new().build(dir.path().to_owned()).expect("valid");
        let first = signing_secrets(&c).expect("made");
        assert_eq!(first[0].len(), 64);
        assert_eq!(signing_secrets(&c).expect("read"), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secret"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_secret_file_too_short_is_refused_not_replaced() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("secret"), b"short").expect("write");
        let c = Layers::new().build(dir.path().to_owned()).expect("valid");
        let err = signing_secrets(&c).expect_err("too short").to_string();
        assert!(
            err.starts_with("cannot use secret file ") && err.contains("shorter than 32 bytes"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(dir.path().join("secret")).expect("kept"),
            b"short"
        );
    }

    #[test]
    fn configured_secrets_are_used_and_no_file_is_made() {
        let dir = tempfile::tempdir().expect("dir");
        let mut layers = Layers::new();
        layers.env([("GATEHOUSE_SECRETS".to_owned(), "k".repeat(40))]);
        let c = layers.build(dir.path().to_owned()).expect("valid");
        assert_eq!(
            signing_secrets(&c).expect("configured"),
            vec![b"k".repeat(40)]
        );
        assert!(!dir.path().join("secret").exists());
    }
}
