//! `signer audit verify FILE`: checks the audit log's hash chain.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use signer::audit;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check that no line was altered, removed, inserted or reordered. Exit 1 if one was.
    Verify {
        /// The audit log (JSON lines).
        file: PathBuf,
    },
}

pub fn run(c: AuditCommand) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let AuditCommand::Verify { file } = c;
    match audit::verify(&file)? {
        Ok(v) => {
            let torn = if v.torn_tail {
                " (the last line is incomplete: a crash during a write, not part of the chain)"
            } else {
                ""
            };
            println!(
                "{}: {} records, chain intact{torn}",
                file.display(),
                v.records
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            println!("{}: {problem}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}
