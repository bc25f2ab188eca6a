//! The daemon: loads the configuration, policy, keys, database, audit log
//! and TLS material; serves gRPC over mutual TLS and the operations
//! endpoints; reloads on SIGHUP; shuts down gracefully on SIGTERM/SIGINT.
//!
//! Start-up refuses to serve with anything missing or wrong (a key that
//! does not decrypt, a policy with errors, a database in use): a signer
//! running with fewer keys or a looser policy than configured is worse than
//! one that does not start.
//!
//! This file is the composition root's state ([`Shared`]); the rest by
//! concept: `run` (start-up and serving), `reload` (SIGHUP, `/reload`),
//! `readiness` (`/readyz`), `keys` (loading keys from their backends),
//! `routes` (gRPC and health on one listener), [`http`] (the operations
//! endpoints).

mod commit_boost;
pub mod control;
pub mod http;
pub mod keymanager;
mod keys;
mod readiness;
mod reload;
mod routes;
mod run;
mod start_cache;
pub mod starting;
mod status;
pub mod systemd;

pub use keys::{Backends, load_keys};
pub use reload::ReloadReport;
pub use run::run;

use reload::Reloads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::config::KeySource;
use crate::pipeline::Pipeline;
use crate::pool::Pool;
use crate::tls::{self, ReloadableConfig};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Command-line overrides of the configuration.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--grpc-listen`.
    pub grpc_listen: Option<SocketAddr>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// `--http-listen` (enables the Web3Signer API if the file does not).
    pub http_listen: Option<SocketAddr>,
    /// Where the configuration was read from, for the commands that
    /// messages tell an operator to run.
    pub config_file: Option<PathBuf>,
    /// Printed on standard error once every listener accepts (`signer dev`
    /// says how to call it then, not before).
    pub announce: Option<String>,
}

/// What the daemon's tasks share.
#[derive(Debug)]
pub struct Shared {
    /// The pipeline.
    pub pipeline: Arc<Pipeline>,
    tls: Arc<ReloadableConfig>,
    tls_files: tls::TlsFiles,
    policy_file: PathBuf,
    stopping: AtomicBool,
    health: tonic_health::server::HealthReporter,
    pool: Arc<Pool>,
    max_wait: Duration,
    http_tls: Option<Arc<ReloadableConfig>>,
    key_sources: Vec<KeySource>,
    /// Remote backends (they outlive key reloads).
    backends: Backends,
    reloads: Reloads,
    metrics_reload: crate::config::MetricsReload,
    http_timeouts: crate::net::HttpTimeouts,
    /// CometBFT chains and their nodes' labels, for readiness.
    privval_nodes: Vec<(String, Vec<String>)>,
    /// On SQLite: the token for key state changes through the daemon.
    control: Option<control::Control>,
    /// `[keymanager]`, when the Keymanager API is on.
    keymanager: Option<crate::config::Keymanager>,
    /// `[commit_boost]`, when the Commit-Boost API is on (secrets re-read on reload).
    commit_boost: Option<crate::config::CommitBoost>,
}

impl Shared {
    /// The worker pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Longest wait in the queue.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// The HTTP listener's TLS setup, when it has one.
    pub fn http_tls(&self) -> Option<&ReloadableConfig> {
        self.http_tls.as_deref()
    }
}

/// The Web3Signer frontend's narrow view of the daemon.
impl crate::api::web3signer::Host for Shared {
    fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    fn pool(&self) -> &Pool {
        Shared::pool(self)
    }

    fn max_wait(&self) -> Duration {
        Shared::max_wait(self)
    }

    fn http_tls(&self) -> Option<&ReloadableConfig> {
        Shared::http_tls(self)
    }

    fn http_timeouts(&self) -> crate::net::HttpTimeouts {
        self.http_timeouts
    }

    fn readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        Shared::readiness(self)
    }

    fn start_key_reload(self: Arc<Self>, client: &str) -> bool {
        Shared::start_key_reload(&self, client)
    }

    fn key_reload_status(&self) -> serde_json::Value {
        Shared::key_reload_status(self)
    }

    fn keymanager(
        &self,
        op: crate::api::web3signer::KeymanagerOp,
        client: &crate::policy::ClientId,
        authorization: Option<&[u8]>,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        Shared::keymanager(self, op, client, authorization, body)
    }
}
