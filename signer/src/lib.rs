//! The signer's core, as a library so its tests and benches can use it; the
//! daemon and CLI are `src/main.rs`.

pub mod api;
pub mod audit;
pub mod backend;
pub mod client;
pub mod cometbft;
pub mod config;
pub mod crypto;
pub mod eth2;
pub mod json;
pub mod metrics;
pub mod net;
pub mod pipeline;
pub mod policy;
pub mod pool;
pub mod secret_file;
pub mod server;
pub mod storage;
pub mod tls;

/// The commit this binary was built from (`unknown` outside a checkout).
pub const COMMIT: &str = env!("SIGNER_COMMIT");

/// `signer --version`: the release and the commit.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SIGNER_COMMIT"),
    ")"
);
