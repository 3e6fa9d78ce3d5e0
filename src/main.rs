//! The `gatehouse` executable: run the command line, print the error chain,
//! pick the exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    match gatehouse::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Every message already carries its cause in plain words; the
            // alternate form would print each cause a second time.
            let e = anyhow::Error::from(e);
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
    }
}
