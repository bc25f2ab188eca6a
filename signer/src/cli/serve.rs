//! `signer serve --config FILE [--grpc-listen ADDR] [--metrics-listen ADDR]`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use signer::config::{Config, LogFormat};
use signer::server::{self, Overrides};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file (see signer.example.toml).
    #[arg(long)]
    config: PathBuf,
    /// Listen for gRPC here instead of `server.grpc_listen` (port 0: any free port).
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// Serve metrics and health here instead of `server.metrics_listen`.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Serve the Web3Signer-compatible HTTP API here (HTTPS with the same
    /// certificates), instead of or without `[http]`.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
}

/// Logs to stderr as the configuration says; `SIGNER_LOG` overrides the filter.
pub fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("SIGNER_LOG").unwrap_or_else(|_| config.logging.level.clone());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.logging.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Loads the configuration, starts logging, and serves until stopped.
pub fn serve(path: &Path, overrides: Overrides) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let config = Config::load(path)?;
    init_logging(&config);
    let overrides = Overrides {
        config_file: Some(path.to_owned()),
        ..overrides
    };
    server::run(config, overrides).map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

pub fn run(a: ServeArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    serve(
        &a.config,
        Overrides {
            grpc_listen: a.grpc_listen,
            metrics_listen: a.metrics_listen,
            http_listen: a.http_listen,
            config_file: None,
            announce: None,
        },
    )
}
