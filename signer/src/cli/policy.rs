//! `signer policy check FILE` and `signer policy explain FILE [--client NAME]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use signer::policy::{self, Policy, Severity};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Lint a policy: syntax, unknown names, grants wider than they look. Exit 1 on errors.
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Print the effective permissions of every client (or one).
    Explain {
        /// The policy file.
        file: PathBuf,
        /// Only this client (its policy name).
        #[arg(long)]
        client: Option<String>,
    },
}

fn read(file: &Path) -> Result<String, Box<dyn std::error::Error>> {
    std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()).into())
}

pub fn run(c: PolicyCommand) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match c {
        PolicyCommand::Check { file } => {
            let text = read(&file)?;
            let (_, findings) =
                policy::check(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            for f in &findings {
                println!("{f}");
            }
            let errors = findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count();
            println!(
                "{}: {errors} errors, {} warnings",
                file.display(),
                findings.len() - errors
            );
            Ok(if errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PolicyCommand::Explain { file, client } => {
            let text = read(&file)?;
            let (policy, _) =
                Policy::load(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            if let Some(name) = &client
                && policy.client(name).is_none()
            {
                return Err(format!("{}: no client named {name:?}", file.display()).into());
            }
            print!("{}", policy.explain(client.as_deref()));
            Ok(ExitCode::SUCCESS)
        }
    }
}
