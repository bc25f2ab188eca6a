//! `signer policy check FILE`, `signer policy explain FILE [--client NAME]`
//! and `signer policy diff OLD NEW [--exit-code]`.

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
    /// Print what a policy change grants and takes away, per client, in
    /// effective permissions (operation × network × key, identities, pins,
    /// rate limits) — for reviewing a policy change.
    Diff {
        /// The policy in force.
        old: PathBuf,
        /// The proposed one.
        new: PathBuf,
        /// Exit 1 when the change gains anything (a CI gate: gains need a
        /// reviewer's approval; removals do not).
        #[arg(long)]
        exit_code: bool,
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
            let warnings = findings.len() - errors;
            let plural = |n: usize, what: &str| match n {
                1 => format!("1 {what}"),
                n => format!("{n} {what}s"),
            };
            println!(
                "{}: {}, {}",
                file.display(),
                plural(errors, "error"),
                plural(warnings, "warning")
            );
            Ok(if errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PolicyCommand::Diff {
            old,
            new,
            exit_code,
        } => {
            let load = |file: &Path| -> Result<Policy, Box<dyn std::error::Error>> {
                let text = read(file)?;
                Ok(Policy::load(&text)
                    .map_err(|e| format!("{}: {e}", file.display()))?
                    .0)
            };
            let d = policy::diff(&load(&old)?, &load(&new)?);
            print!("{}", d.text);
            Ok(if exit_code && d.gains > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
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
