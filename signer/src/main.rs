//! `signer`: the remote-signing daemon and its operator CLI.
//!
//! Exit codes: 0 success; 1 the command ran and failed or refused (policy
//! errors, database in use, …); 2 usage errors.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("signer: {e}");
            ExitCode::FAILURE
        }
    }
}
