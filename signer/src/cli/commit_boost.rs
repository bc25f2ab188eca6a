//! `signer commit-boost proxies --config FILE [--module M]`: the Commit-Boost
//! proxy keys in `[commit_boost] proxy_dir`, read from their files without
//! the password (nothing is decrypted): module, consensus key, scheme,
//! proxy, and where its secret is. A running daemon need not be asked: the
//! files are what every instance loads.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use signer::backend::proxies;
use signer::config::Config;

type Error = Box<dyn std::error::Error>;

#[derive(Debug, Subcommand)]
pub enum CommitBoostCommand {
    /// List the proxy keys modules have made (no password needed).
    Proxies(ProxiesArgs),
}

#[derive(Debug, Args)]
pub struct ProxiesArgs {
    /// The daemon's configuration (its [commit_boost] proxy_dir).
    #[arg(long)]
    config: PathBuf,
    /// Only this module's.
    #[arg(long)]
    module: Option<String>,
}

pub fn run(c: CommitBoostCommand) -> Result<ExitCode, Error> {
    match c {
        CommitBoostCommand::Proxies(a) => proxies_list(a),
    }
}

fn proxies_list(a: ProxiesArgs) -> Result<ExitCode, Error> {
    let config = Config::load(&a.config)?;
    let Some(cb) = config.commit_boost else {
        return Err(format!(
            "{}: no [commit_boost] section, so no proxy keys (docs/commit-boost.md)",
            a.config.display()
        )
        .into());
    };
    let dir = &cb.proxy_dir;
    if !dir.exists() {
        println!(
            "no proxy keys yet ({} does not exist; the signer makes it at start)",
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut all = proxies::list(dir)?;
    if let Some(m) = &a.module {
        if !cb.modules.iter().any(|x| &x.id == m) {
            eprintln!("note: module {m:?} is not in [[commit_boost.module]]");
        }
        all.retain(|p| &p.module == m);
    }
    all.sort_by(|x, y| {
        (&x.module, &x.delegator, &x.scheme, &x.proxy).cmp(&(
            &y.module,
            &y.delegator,
            &y.scheme,
            &y.proxy,
        ))
    });
    for p in &all {
        let configured = cb.modules.iter().any(|m| m.id == p.module);
        println!(
            "{}\t{}\t{}\t{}\t{}{}",
            p.module,
            p.delegator,
            p.scheme,
            p.proxy,
            p.held,
            if configured {
                ""
            } else {
                "\t(module not configured: never served)"
            }
        );
    }
    println!(
        "{} proxy key(s) in {}{}",
        all.len(),
        dir.display(),
        a.module
            .map(|m| format!(" for module {m}"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}
