//! The `gatehouse` executable: run the command line, print the error chain,
//! pick the exit code.
//!
//! The library is built for size and this crate for speed; the request
//! path, `#[inline]` from `cli::run` down, is compiled here
//! (docs/ARCHITECTURE.md, "Two packages").

use std::process::ExitCode;

fn main() -> ExitCode {
    // Before anything is written: files at rest are private.
    gatehouse::files::private_umask();
    match gatehouse::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each cause once: most messages already carry their cause in
            // words, and printing the whole chain would repeat it.
            let e = anyhow::Error::from(e);
            let mut message = e.to_string();
            for cause in e.chain().skip(1) {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message.push_str(": ");
                    message.push_str(&cause);
                }
            }
            eprintln!("gatehouse: {message}");
            ExitCode::FAILURE
        }
    }
}
