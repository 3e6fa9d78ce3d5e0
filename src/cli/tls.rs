//! `tls self-signed`: a key and a self-signed certificate in the data
//! directory, which `serve` then uses.

use std::io::Write;
use std::path::Path;

use clap::Subcommand;

use super::{CliError, Global};

#[derive(Subcommand, Debug)]
pub(super) enum TlsCommand {
    /// Make a key and a self-signed certificate for HOSTs in DIR/tls/, which
    /// `serve` then uses (HTTPS only) when tls_cert and tls_key are not set.
    SelfSigned {
        /// A name (or IP address) browsers use to reach gatehouse; repeat for more.
        #[arg(long = "host", value_name = "HOST", required = true)]
        hosts: Vec<String>,
        /// Replace a key and certificate already there.
        #[arg(long)]
        force: bool,
    },
}

pub(super) fn self_signed(global: &Global, hosts: &[String], force: bool) -> Result<(), CliError> {
    let files = crate::tls::TlsFiles::in_data_dir(&global.data);
    let made = crate::tls::self_signed(&files, hosts, force)?;
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "wrote the private key {} (mode 0600)",
        made.files.key.display()
    )?;
    writeln!(
        out,
        "wrote the certificate {} for {} (valid until {})",
        made.files.cert.display(),
        hosts.join(", "),
        made.valid_until
    )?;
    writeln!(out, "SHA-256 fingerprint: {}", made.fingerprint)?;
    writeln!(
        out,
        "`gatehouse serve` with this data directory now speaks HTTPS only, with these files \
         (restart it; a running one that already serves them picks up new ones on SIGHUP)."
    )?;
    writeln!(
        out,
        "Unless tls_cert and tls_key name other files; to name these ones explicitly:"
    )?;
    writeln!(
        out,
        "    tls_cert = \"{}\"",
        absolute(&made.files.cert).display()
    )?;
    writeln!(
        out,
        "    tls_key = \"{}\"",
        absolute(&made.files.key).display()
    )?;
    writeln!(
        out,
        "Browsers warn about a self-signed certificate: accept it once after checking that \
         the fingerprint they show is the one above."
    )?;
    Ok(())
}
