//! The key backends' sections, `[pkcs11]` and `[kms]`: plain data, read
//! here so that the configuration imports no backend; the backends take
//! these types (`backend::pkcs11::Pkcs11Config` re-exports them).

use std::path::PathBuf;

use serde::Deserialize;

/// `[pkcs11]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// A signature (failover included) that takes longer fails with
    /// `BACKEND_UNAVAILABLE`.
    #[serde(default = "default_timeout_ms")]
    pub operation_timeout_ms: u64,
    /// Sessions (and threads) per token; 0 means one per core.
    #[serde(default)]
    pub sessions_per_token: usize,
    /// Idle sessions are probed this often (tokens that drop idle sessions).
    #[serde(default = "default_keepalive_secs")]
    pub keepalive_secs: u64,
    /// The tokens.
    pub tokens: Vec<TokenConfig>,
}

fn default_timeout_ms() -> u64 {
    2000
}

fn default_keepalive_secs() -> u64 {
    30
}

/// `[[pkcs11.tokens]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The name keys, logs and metrics use.
    pub name: String,
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token's label…
    #[serde(default)]
    pub token_label: Option<String>,
    /// …or its serial number.
    #[serde(default)]
    pub token_serial: Option<String>,
    /// The user PIN: from a file (first line)…
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// …or from an environment variable. Never in this file.
    #[serde(default)]
    pub pin_env: Option<String>,
}

impl TokenConfig {
    /// Exactly one of `token_label`, `token_serial`.
    pub fn check_selector(&self) -> Result<(), String> {
        if self.token_label.is_some() == self.token_serial.is_some() {
            return Err(format!(
                "pkcs11 token {:?}: give exactly one of token_label, token_serial",
                self.name
            ));
        }
        Ok(())
    }
}

/// `[kms]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsConfig {
    /// AWS region (default: from the standard AWS configuration).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (a VPC endpoint, or a test endpoint).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// A signature, retries included, that takes longer is refused with
    /// `BACKEND_UNAVAILABLE` (default 2000).
    #[serde(default = "default_kms_timeout_ms")]
    pub operation_timeout_ms: u64,
    /// One HTTP attempt (default 1000).
    #[serde(default = "default_attempt_ms")]
    pub attempt_timeout_ms: u64,
    /// Consecutive failures to reach KMS that open the circuit breaker (default 5).
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open breaker fails fast before one trial call (default 1000).
    #[serde(default = "default_breaker_open_ms")]
    pub breaker_open_ms: u64,
}

fn default_kms_timeout_ms() -> u64 {
    2000
}
fn default_attempt_ms() -> u64 {
    1000
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_open_ms() -> u64 {
    1000
}
