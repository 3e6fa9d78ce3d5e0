//! The `gatehouse` executable: run the command line, print the error chain,
//! pick the exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Before anything is written: files at rest are private.
    gatehouse::files::private_umask();
    match gatehouse::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e = anyhow::Error::from(e);
            eprintln!("gatehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}
