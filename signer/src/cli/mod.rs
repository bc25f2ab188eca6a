//! The command line: one file per subcommand.

mod audit;
mod dev;
mod init;
mod policy;
mod slashing;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Remote signing service for proof-of-stake validators.
#[derive(Debug, Parser)]
#[command(name = "signer", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Quick start (today: a slashing-protection demonstration; the daemon comes later).
    Dev,
    /// Write a complete throwaway development setup (CA, certificates, keys, policy, config).
    Init(init::InitArgs),
    /// Lint a policy file or explain its effective permissions.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Check an audit log's hash chain.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Offline work on the slashing-protection database (refuses while a daemon holds it).
    #[command(subcommand)]
    Slashing(slashing::SlashingCommand),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Dev => dev::run(),
        Command::Init(a) => init::run(a),
        Command::Audit(c) => audit::run(c),
        Command::Policy(c) => policy::run(c),
        Command::Slashing(c) => slashing::run(c),
    }
}
