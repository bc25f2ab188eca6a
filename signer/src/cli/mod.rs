//! The command line: one file per subcommand.

mod audit;
mod client;
mod cometbft;
mod commit_boost;
mod dev;
mod docs;
mod init;
mod keys;
mod lifecycle;
mod metrics_http;
mod policy;
mod reload;
mod reseal;
mod rotate;
mod serve;
mod slashing;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Remote signing service for proof-of-stake validators.
#[derive(Debug, Parser)]
#[command(name = "signer", version = signer::VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Quick start: write a throwaway setup (if DIR does not exist) and serve it.
    Dev(dev::DevArgs),
    /// Run the signing daemon.
    Serve(serve::ServeArgs),
    /// Make the running signer re-read TLS, the policy and the keys; print what changed.
    Reload(reload::ReloadArgs),
    /// What the running signer sees: readiness, keys, chains, database, certificates.
    Status(status::StatusArgs),
    /// Talk to a running signer (list keys, sign samples).
    Client(client::ClientArgs),
    /// Write a complete throwaway development setup (CA, certificates, keys, policy, config).
    Init(init::InitArgs),
    /// Keys: generate, list and seal in HSMs; disable, enable or retire one on every instance.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Lint a policy file or explain its effective permissions.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The audit log: verify its chain and anchor; acknowledge a loss.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Commit-Boost: list the proxy keys modules have made.
    #[command(subcommand, name = "commit-boost")]
    CommitBoost(commit_boost::CommitBoostCommand),
    /// CometBFT migration: import another signer's state (offline).
    #[command(subcommand)]
    Cometbft(cometbft::CometbftCommand),
    /// Moved: the benchmark is its own binary, `signer-bench`.
    #[command(hide = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Offline work on the slashing-protection database (refuses while a daemon holds it).
    #[command(subcommand)]
    Slashing(slashing::SlashingCommand),
    /// Print a shell completion script, e.g. `signer completions bash >
    /// /etc/bash_completion.d/signer` (zsh: a file `_signer` on $fpath).
    Completions(docs::CompletionsArgs),
    /// Print the signer(1) man page, or write every page with --dir.
    Man(docs::ManArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Dev(a) => dev::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Reload(a) => reload::run(a),
        Command::Status(a) => status::run(a),
        Command::Client(a) => client::run(a),
        Command::Init(a) => init::run(a),
        Command::Audit(c) => audit::run(c),
        Command::Keys(c) => keys::run(c),
        Command::Policy(c) => policy::run(c),
        Command::Slashing(c) => slashing::run(c),
        Command::Cometbft(c) => cometbft::run(c),
        Command::CommitBoost(c) => commit_boost::run(c),
        Command::Completions(a) => docs::completions(a),
        Command::Man(a) => docs::man(a),
        Command::Bench { .. } => Err(
            "the benchmark is a binary of its own now: cargo build --release -p signer -p signer-bench \
             && target/release/signer-bench (same options)"
                .into(),
        ),
    }
}
