//! `signer reload --config FILE`: asks the running signer (its metrics
//! listener, from this host) to re-read TLS material, the policy and the key
//! sources, and prints what changed — keys added, removed (refused from now
//! on), unchanged, and sources that failed with why.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

type Error = Box<dyn std::error::Error>;

#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// The daemon's configuration (to find its metrics listener).
    #[arg(long)]
    config: PathBuf,
    /// The metrics listener to ask instead (`host:port`).
    #[arg(long)]
    metrics: Option<SocketAddr>,
}

pub fn run(a: ReloadArgs) -> Result<ExitCode, Error> {
    let addr = super::metrics_http::address(&a.config, a.metrics)?;
    let (status, body) = super::metrics_http::exchange(addr, "POST", "/reload")?;
    print!("{body}");
    Ok(match status {
        200 => ExitCode::SUCCESS,
        409 => {
            eprintln!("nothing reloaded: ask again when the running reload has ended");
            ExitCode::FAILURE
        }
        _ => ExitCode::FAILURE,
    })
}
