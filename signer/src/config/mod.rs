//! The daemon's configuration file (`signer.example.toml` documents every
//! field). Strict: unknown fields are errors, values are typed (socket
//! addresses, paths, enums), and relative paths are taken relative to the
//! configuration file's directory, so a setup directory can move as a whole.
//!
//! One file because it is one concept, the configuration's schema: every
//! section's types, their defaults and the checks across sections (paths
//! resolved, listeners distinct) read together; about half of it is
//! doc comments an operator reads as the reference.

mod backends;

pub use backends::{KmsConfig, Pkcs11Config, TokenConfig};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cometbft::ProtocolVersion;
use crate::cometbft::node::NodeAddr;
use crate::eth2::{Clock, Network, PresetKind};
use crate::tls::TlsFiles;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners.
    pub server: Server,
    /// Mutual TLS.
    pub tls: Tls,
    /// Who may sign what.
    pub policy: PolicyFile,
    /// Slashing protection.
    pub slashing: Slashing,
    /// The Web3Signer-compatible HTTP API (off unless configured).
    #[serde(default)]
    pub http: Option<Http>,
    /// The CometBFT privval connector's own identity (SecretConnection key).
    #[serde(default)]
    pub privval: Option<Privval>,
    /// CometBFT chains whose nodes the signer dials.
    #[serde(default)]
    pub cometbft: Vec<CometChain>,
    /// The audit log (default: `audit.jsonl` beside the database).
    #[serde(default)]
    pub audit: Option<Audit>,
    /// The Ethereum network's parameters requests do not carry.
    #[serde(default)]
    pub ethereum: Ethereum,
    /// PKCS#11 tokens (HSMs) that hold keys.
    #[serde(default)]
    pub pkcs11: Option<Pkcs11Config>,
    /// AWS KMS.
    #[serde(default)]
    pub kms: Option<KmsConfig>,
    /// Where keys come from.
    #[serde(default)]
    pub keys: Vec<KeySource>,
    /// Decrypted keystores kept sealed between starts (off unless set).
    #[serde(default)]
    pub start_cache: Option<StartCache>,
    /// The Ethereum Keymanager API on the HTTPS listener (off unless set).
    #[serde(default)]
    pub keymanager: Option<Keymanager>,
    /// The Commit-Boost signer API on the HTTPS listener (off unless set).
    #[serde(default)]
    pub commit_boost: Option<CommitBoost>,
    /// Logging.
    #[serde(default)]
    pub logging: Logging,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// gRPC over mutual TLS.
    pub grpc_listen: SocketAddr,
    /// Prometheus metrics, `/healthz`, `/readyz` (plain HTTP; keep it on a private address).
    pub metrics_listen: SocketAddr,
    /// Who may `POST /reload` on the metrics listener: `loopback` (the
    /// default), `any`, or `off`. The listener has no authentication; a
    /// reload re-reads files and decrypts changed keystores.
    #[serde(default)]
    pub metrics_reload: MetricsReload,
    /// HTTP/1 listeners (HTTPS API, metrics): time allowed for a request's
    /// headers, and idle time between requests on a kept-alive connection.
    #[serde(default = "ten_seconds_ms")]
    pub header_timeout_ms: u64,
    /// HTTP/1 listeners: time allowed for a request's body.
    #[serde(default = "ten_seconds_ms")]
    pub body_timeout_ms: u64,
    /// Signing worker threads; 0 means one per core.
    #[serde(default)]
    pub workers: usize,
    /// Items that may wait for a worker; beyond it requests get `OVERLOADED`.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Longest time an item may wait for a worker (a shorter gRPC deadline wins).
    #[serde(default = "default_max_queue_wait_ms")]
    pub max_queue_wait_ms: u64,
    /// Most items a worker takes from the queue at once (decided in one
    /// database transaction).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
}

/// `[server] metrics_reload`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsReload {
    /// From loopback addresses only.
    #[default]
    Loopback,
    /// From anywhere that reaches the listener.
    Any,
    /// Not at all (SIGHUP and the HTTPS `/reload` remain).
    Off,
}

fn ten_seconds_ms() -> u64 {
    10_000
}

fn default_queue_capacity() -> usize {
    16_384
}

fn default_max_queue_wait_ms() -> u64 {
    5_000
}

fn default_max_batch() -> usize {
    256
}

/// `[http]`: the Web3Signer-compatible eth2 API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Web3Signer's known-clients file (`<name> <sha256 fingerprint>` per
    /// line): these certificates are accepted without a CA, named by the file.
    #[serde(default)]
    pub known_clients_file: Option<PathBuf>,
    /// Plain HTTP, no TLS: every local process is the policy client whose
    /// identity is `insecure:loopback-http`. Only on a loopback address.
    #[serde(default)]
    pub insecure_plaintext: bool,
}

/// `[privval]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Privval {
    /// The signer's SecretConnection identity: a file holding a 32-byte
    /// Ed25519 seed as hex (`signer init --dev` writes one). Nodes see its
    /// node id; it signs no consensus messages.
    pub identity_key: PathBuf,
}

/// A `[[cometbft]]` chain.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CometChain {
    /// Chain id.
    pub chain_id: String,
    /// Protocol generation: `v0.34`, `v0.37`, `v0.38` or `v1`.
    pub protocol: ProtocolVersion,
    /// The consensus key's public key (`0x` + hex), loaded from `[[keys]]`.
    pub key: String,
    /// Sign vote extensions (v0.38+; default true).
    #[serde(default = "yes")]
    pub sign_extensions: bool,
    /// Refuse anything above this height (a chain halting at an upgrade).
    #[serde(default)]
    pub max_height: Option<i64>,
    /// Nodes to dial: `tcp://<node id>@host:port` or `unix:///path`.
    pub nodes: Vec<NodeAddr>,
    /// A consensus key rotation (`signer keys rotate`): from `switch_height`
    /// on, the chain is signed with this key (`0x` + hex, loaded from
    /// `[[keys]]`) and `key` is no longer used for it.
    #[serde(default)]
    pub next_key: Option<String>,
    /// The first height `next_key` signs (with `next_key`).
    #[serde(default)]
    pub switch_height: Option<i64>,
}

/// `[keymanager]`: the Ethereum Keymanager API (`/eth/v1/keystores`) on the
/// `[http]` listener, for the clients the policy's `[keymanager]` names,
/// each with its bearer token. See `docs/keymanager.md`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keymanager {
    /// Where imported keys are kept: their EIP-2335 keystores (encrypted),
    /// password files (0600) and Web3Signer key-configuration files. Loaded
    /// like a `web3signer_dir` key source; created if missing.
    pub store: PathBuf,
    /// One bearer token per client, `<client>.token` (made at start, 0600,
    /// for each client the policy allows that has none).
    pub token_dir: PathBuf,
}

/// `[commit_boost]`: the Commit-Boost signer API (`/signer/v1/…`) on the
/// `[http]` listener, for the modules listed. See `docs/commit-boost.md`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitBoost {
    /// The EVM chain id commitments are bound to. Needed unless
    /// `[ethereum] genesis_fork_version` is a public network's (mainnet 1,
    /// sepolia 11155111, holesky 17000, hoodi 560048).
    #[serde(default)]
    pub chain_id: Option<u64>,
    /// Where proxy keys are kept, encrypted: `<module>/<consensus key>/{bls,ecdsa}/`.
    /// Created if missing.
    pub proxy_dir: PathBuf,
    /// The password proxy keystores are encrypted under.
    pub proxy_password_file: PathBuf,
    /// Make secp256k1 proxies inside a backend instead of encrypted files:
    /// `"pkcs11:TOKEN"` (a `[[pkcs11.tokens]]` name) or `"kms"`.
    #[serde(default)]
    pub ecdsa_proxy_vault: Option<String>,
    /// The modules allowed to call.
    #[serde(default, rename = "module")]
    pub modules: Vec<CommitBoostModule>,
}

/// `[[commit_boost.module]]`: one Commit-Boost module.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitBoostModule {
    /// The module's id: its tokens' `module` claim (letters, digits, `_`, `-`).
    pub id: String,
    /// Its 32-byte signing id (0x and 64 hex digits), bound into every
    /// signature it gets.
    pub signing_id: String,
    /// The file holding the secret its tokens are signed with (HS256).
    pub jwt_secret_file: PathBuf,
    /// The policy client it is: the client its TLS certificate names, and
    /// the one the policy grants `commit_boost.*` to.
    pub client: String,
}

impl CommitBoostModule {
    /// The signing id's bytes (checked when the configuration loads).
    pub fn signing_id_bytes(&self) -> Option<[u8; 32]> {
        let h = self.signing_id.strip_prefix("0x")?;
        hex::decode(h).ok()?.try_into().ok()
    }
}

/// Where secp256k1 proxies are made (`ecdsa_proxy_vault`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVaultSetting<'a> {
    /// In this `[[pkcs11.tokens]]` token.
    Pkcs11(&'a str),
    /// In AWS KMS (`[kms]`).
    Kms,
}

impl CommitBoost {
    /// `ecdsa_proxy_vault`, read (`Err`: the text, not a valid setting).
    pub fn ecdsa_proxy_vault(&self) -> Option<Result<ProxyVaultSetting<'_>, &str>> {
        let v = self.ecdsa_proxy_vault.as_deref()?;
        Some(match v.split_once(':') {
            _ if v == "kms" => Ok(ProxyVaultSetting::Kms),
            Some(("pkcs11", t)) if !t.is_empty() => Ok(ProxyVaultSetting::Pkcs11(t)),
            _ => Err(v),
        })
    }

    /// `chain_id`, or the public network's for this genesis fork version.
    pub fn chain_id_for(&self, genesis_fork_version: [u8; 4]) -> Option<u64> {
        self.chain_id
            .or_else(|| crate::eth2::public_chain_id(genesis_fork_version))
    }
}

/// `[start_cache]`: the keystores' decrypted secrets, kept in one file
/// sealed under exactly one of an operator secret, a PKCS#11 token's AES key
/// or a KMS key, so that a restart with unchanged keystores runs no KDF.
/// See `docs/keys.md`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartCache {
    /// The cache file (written 0600, replaced atomically).
    pub file: PathBuf,
    /// Seal under a key derived (scrypt, once per start) from this file's
    /// secret…
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// …or under `TOKEN:LABEL`: the AES key `LABEL` of the `[[pkcs11.tokens]]`
    /// entry named `TOKEN`…
    #[serde(default)]
    pub pkcs11: Option<String>,
    /// …or under this KMS symmetric key (id, alias or ARN).
    #[serde(default)]
    pub kms: Option<String>,
}

impl StartCache {
    /// `pkcs11 = "TOKEN:LABEL"`, split.
    pub fn pkcs11_target(&self) -> Option<(&str, &str)> {
        self.pkcs11
            .as_deref()
            .and_then(|s| s.split_once(':'))
            .filter(|(t, l)| !t.is_empty() && !l.is_empty())
    }
}

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    /// The audit log (JSON lines, hash-chained).
    pub file: PathBuf,
    /// The log's name in the slashing database, which anchors it (its
    /// latest durable record). Default: `<hostname>:<absolute file path>`,
    /// unique per instance when several share one PostgreSQL database. Set
    /// it when the host name is not stable (a Kubernetes Deployment's pod
    /// names; a StatefulSet's are stable), and never give two instances
    /// the same name.
    #[serde(default)]
    pub name: Option<String>,
    /// How often written records are made durable (`fdatasync`), in
    /// milliseconds, 1 to 1000 (default 5). Records are written before each
    /// answer, so a crash of the process loses none; a power loss may lose
    /// the records of the last interval — never a slashing decision. Each
    /// flush of the growing file is a journal commit on the disk the
    /// database also syncs on: a longer interval takes that load off the
    /// votes' commits (docs/performance.md, issue 21).
    #[serde(default)]
    pub flush_interval_ms: Option<u64>,
}

impl Audit {
    /// [`Audit::flush_interval_ms`], or the audit sink's default.
    pub fn flush_interval(&self) -> std::time::Duration {
        self.flush_interval_ms.map_or(
            crate::audit::DEFAULT_FLUSH_INTERVAL,
            std::time::Duration::from_millis,
        )
    }

    /// The log's name in the slashing database (see [`Audit::name`]).
    pub fn anchor_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let path = std::path::absolute(&self.file).unwrap_or_else(|_| self.file.clone());
        format!("{host}:{}", path.display())
    }
}

/// `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Server certificate chain (PEM).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Or: the server identity from a PKCS#12 keystore (as Web3Signer's
    /// `--tls-keystore-file`)…
    #[serde(default)]
    pub keystore: Option<PathBuf>,
    /// …and the file holding its password.
    #[serde(default)]
    pub keystore_password_file: Option<PathBuf>,
    /// CAs issuing client certificates (PEM).
    pub client_cas: Vec<PathBuf>,
    /// Certificate revocation lists (PEM).
    #[serde(default)]
    pub crls: Vec<PathBuf>,
}

impl Tls {
    /// The files, for [`crate::tls`].
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.cert.clone().unwrap_or_default(),
            key: self.key.clone().unwrap_or_default(),
            client_cas: self.client_cas.clone(),
            crls: self.crls.clone(),
            pkcs12: self
                .keystore
                .clone()
                .zip(self.keystore_password_file.clone()),
        }
    }
}

/// `[policy]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The policy file.
    pub file: PathBuf,
}

/// `[slashing]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slashing {
    /// `sqlite` (one instance, a local file: the default) or `postgres`
    /// (a shared database for several instances: high availability).
    #[serde(default)]
    pub engine: SlashingEngine,
    /// The SQLite database file (engine `sqlite` only).
    #[serde(default)]
    pub database: Option<PathBuf>,
    /// The shared database (engine `postgres` only).
    #[serde(default)]
    pub postgres: Option<Postgres>,
    /// Pin the Ethereum network (`0x` + 64 hex); otherwise the first request or import pins it.
    #[serde(default)]
    pub genesis_validators_root: Option<String>,
    /// Run SQLite's quick_check at start (reads the whole file once).
    #[serde(default = "yes")]
    pub integrity_check_on_open: bool,
}

fn yes() -> bool {
    true
}

/// `[slashing] engine`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlashingEngine {
    /// A local SQLite file, owned by one signer process.
    #[default]
    Sqlite,
    /// A shared PostgreSQL database (several signer instances).
    Postgres,
}

/// `[slashing.postgres]`: the shared slashing database.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Postgres {
    /// `postgresql://user@host1:5432,host2:5432/db?target_session_attrs=read-write`
    /// (no password, no `ssl*` options: see the fields below).
    pub url: String,
    /// A file holding the password (a systemd credential, a mounted secret).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// `verify-full` (the default: the server's certificate must chain to
    /// `ca_file` and name the host dialled) or `disable` (only for a Unix
    /// socket or a loopback address).
    #[serde(default)]
    pub tls: PostgresTls,
    /// PEM roots that sign the server's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The longest one statement or COMMIT may take; past it the request is
    /// refused and the connection dropped.
    #[serde(default = "pg_statement_timeout")]
    pub statement_timeout_ms: u64,
    /// The longest connecting may take.
    #[serde(default = "pg_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Refuse to start (and report not ready) unless a synchronous standby
    /// acknowledges every commit. Asynchronous replication can lose
    /// acknowledged decisions on failover — a double signature waiting to
    /// happen.
    #[serde(default)]
    pub require_synchronous_replication: bool,
}

fn pg_statement_timeout() -> u64 {
    5_000
}

fn pg_connect_timeout() -> u64 {
    10_000
}

/// `[slashing.postgres] tls`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PostgresTls {
    /// Verify the chain and the host name (libpq's `verify-full`).
    #[default]
    VerifyFull,
    /// No TLS (Unix sockets and loopback only).
    Disable,
}

/// `[ethereum]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ethereum {
    /// `mainnet` (every public network) or `minimal`.
    #[serde(default = "mainnet")]
    pub preset: Preset,
    /// `GENESIS_FORK_VERSION`, for builder registrations (`0x` + 8 hex).
    #[serde(default = "mainnet_fork")]
    pub genesis_fork_version: String,
    /// The network's genesis time (Unix seconds). Known for mainnet, sepolia,
    /// holesky and hoodi from `genesis_fork_version`; set it for other
    /// networks so far-future slots are refused.
    #[serde(default)]
    pub genesis_time: Option<u64>,
    /// `SECONDS_PER_SLOT`.
    #[serde(default = "twelve")]
    pub seconds_per_slot: u64,
    /// How many slots ahead of the network's clock a block or attestation
    /// may be; `"off"` turns the check off (networks with no wall clock).
    #[serde(default)]
    pub max_slots_ahead: SlotsAhead,
    /// `GLOAS_FORK_EPOCH` from the network's `config.yaml`. Until it is set,
    /// the Gloas message types (bids, envelopes, payload attestations,
    /// proposer preferences, builder request authorisations, Gloas blocks)
    /// are refused; before that epoch, too.
    #[serde(default)]
    pub gloas_fork_epoch: Option<u64>,
}

/// `[ethereum] max_slots_ahead`: a number of slots, or `"off"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotsAhead {
    /// At most this many slots ahead.
    Slots(u64),
    /// No check (`"off"`).
    Off,
}

impl<'de> Deserialize<'de> for SlotsAhead {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SlotsAhead;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of slots (0 or more) or \"off\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SlotsAhead, E> {
                u64::try_from(v)
                    .map(SlotsAhead::Slots)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SlotsAhead, E> {
                Ok(SlotsAhead::Slots(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SlotsAhead, E> {
                match v {
                    "off" => Ok(SlotsAhead::Off),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Default for SlotsAhead {
    /// Two epochs of the mainnet preset: clock skew and early proposals fit
    /// many times over; a poisoned watermark does not.
    fn default() -> Self {
        SlotsAhead::Slots(64)
    }
}

fn twelve() -> u64 {
    12
}

impl Default for Ethereum {
    fn default() -> Self {
        Self {
            preset: Preset::Mainnet,
            genesis_fork_version: mainnet_fork(),
            genesis_time: None,
            seconds_per_slot: twelve(),
            max_slots_ahead: SlotsAhead::default(),
            gloas_fork_epoch: None,
        }
    }
}

fn mainnet() -> Preset {
    Preset::Mainnet
}

fn mainnet_fork() -> String {
    "0x00000000".into()
}

/// A consensus preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Mainnet sizes.
    Mainnet,
    /// Minimal sizes.
    Minimal,
}

/// A `[[keys]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeySource {
    /// An EIP-2335 keystore or our key file, with its password file.
    File {
        /// The key file.
        path: PathBuf,
        /// Its password file.
        password_file: PathBuf,
    },
    /// Every Web3Signer key-configuration file of a directory.
    Web3signerDir {
        /// The directory.
        path: PathBuf,
    },
    /// A CometBFT `priv_validator_key.json` (migration; unencrypted on disk).
    PrivValidatorKey {
        /// The file.
        path: PathBuf,
    },
    /// An Ed25519 or secp256k1 key pair inside PKCS#11 tokens.
    Pkcs11 {
        /// `CKA_LABEL`…
        #[serde(default)]
        label: Option<String>,
        /// …or `CKA_ID` (hex).
        #[serde(default)]
        id: Option<String>,
        /// The `[[pkcs11.tokens]]` holding it (default: all), tried in this order.
        #[serde(default)]
        tokens: Vec<String>,
    },
    /// A BLS key sealed under a token's AES key (`signer keys seal`).
    Pkcs11Sealed {
        /// The sealed key file.
        path: PathBuf,
        /// Tokens that may unseal it (default: all).
        #[serde(default)]
        tokens: Vec<String>,
    },
    /// A secp256k1 or Ed25519 key in AWS KMS.
    Kms {
        /// Key id, ARN, or `alias/NAME`.
        key_id: String,
    },
    /// Every KMS key carrying all these tags.
    KmsTags {
        /// Tag key → value.
        tags: std::collections::BTreeMap<String, String>,
    },
    /// A BLS key sealed with a KMS symmetric key (`signer keys seal --backend kms`).
    KmsSealed {
        /// The sealed key file.
        path: PathBuf,
    },
}

/// `[logging]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// `human` or `json`.
    #[serde(default = "human")]
    pub format: LogFormat,
    /// A tracing filter (`info`, `signer=debug`, …).
    #[serde(default = "info")]
    pub level: String,
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: info(),
        }
    }
}

fn human() -> LogFormat {
    LogFormat::Human
}

fn info() -> String {
    "info".into()
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// For people.
    Human,
    /// One JSON object per line.
    Json,
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML of the configuration's shape (unknown fields included).
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line and column.
        message: String,
    },
    /// A value of the right type but not a valid one.
    #[error("{}: {field}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// `[commit_boost]`: served on the HTTPS listener, bound to a chain,
/// modules with distinct ids that can name directories, and signing ids.
fn check_commit_boost(cb: &CommitBoost, c: &Config) -> Result<(), (&'static str, String)> {
    if c.http.as_ref().is_none_or(|h| h.insecure_plaintext) {
        return Err((
            "commit_boost",
            "the Commit-Boost signer API is served on the HTTPS listener: configure [http] with TLS (not insecure_plaintext)".into(),
        ));
    }
    let gfv = c.ethereum.network().map(|n| n.genesis_fork_version);
    if gfv.and_then(|g| cb.chain_id_for(g)).is_none() {
        return Err((
            "commit_boost.chain_id",
            "give the EVM chain id commitments are for (e.g. chain_id = 1): the genesis fork version is not a public network's".into(),
        ));
    }
    match cb.ecdsa_proxy_vault() {
        None => {}
        Some(Err(v)) => {
            return Err((
                "commit_boost.ecdsa_proxy_vault",
                format!("{v:?}: use \"pkcs11:TOKEN\" (a [[pkcs11.tokens]] name) or \"kms\""),
            ));
        }
        Some(Ok(ProxyVaultSetting::Kms)) if c.kms.is_none() => {
            return Err((
                "commit_boost.ecdsa_proxy_vault",
                "\"kms\" needs a [kms] section".into(),
            ));
        }
        Some(Ok(ProxyVaultSetting::Pkcs11(t))) => {
            let known = c
                .pkcs11
                .as_ref()
                .is_some_and(|p| p.tokens.iter().any(|k| k.name == t));
            if !known {
                return Err((
                    "commit_boost.ecdsa_proxy_vault",
                    format!("no [[pkcs11.tokens]] named {t:?}"),
                ));
            }
        }
        Some(Ok(_)) => {}
    }
    if cb.modules.is_empty() {
        return Err((
            "commit_boost.module",
            "list at least one [[commit_boost.module]] (id, signing_id, jwt_secret_file, client)"
                .into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for m in &cb.modules {
        if m.id.is_empty()
            || m.id.len() > 64
            || !m
                .id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        {
            return Err((
                "commit_boost.module.id",
                format!("{:?}: use 1 to 64 letters, digits, '_' or '-'", m.id),
            ));
        }
        if !seen.insert(m.id.to_ascii_lowercase()) {
            return Err((
                "commit_boost.module.id",
                format!("{:?} is listed twice (ids are compared without case)", m.id),
            ));
        }
        if m.signing_id_bytes().is_none() {
            return Err((
                "commit_boost.module.signing_id",
                format!(
                    "module {:?}: {:?} is not 0x and 64 hex digits (the module's 32-byte signing id)",
                    m.id, m.signing_id
                ),
            ));
        }
        if m.client.trim().is_empty() {
            return Err((
                "commit_boost.module.client",
                format!("module {:?}: name the policy client it is", m.id),
            ));
        }
    }
    Ok(())
}

/// `[slashing]`: one engine, its own fields only, and a PostgreSQL
/// connection that can be neither plaintext over a network nor carry its
/// password in the file.
fn check_slashing(s: &Slashing, has_audit: bool) -> Result<(), (&'static str, String)> {
    match s.engine {
        SlashingEngine::Sqlite => {
            if s.database.is_none() {
                return Err((
                    "slashing.database",
                    "engine sqlite needs the database file (e.g. database = \"data/slashing.sqlite\")"
                        .into(),
                ));
            }
            if s.postgres.is_some() {
                return Err((
                    "slashing.postgres",
                    "[slashing.postgres] is set but engine is sqlite: set engine = \"postgres\" or remove the section".into(),
                ));
            }
        }
        SlashingEngine::Postgres => {
            if s.database.is_some() {
                return Err((
                    "slashing.database",
                    "engine postgres keeps no local database file: remove database (to move an \
                     existing SQLite history, use `signer slashing migrate`)"
                        .into(),
                ));
            }
            let Some(pg) = &s.postgres else {
                return Err((
                    "slashing.postgres",
                    "engine postgres needs a [slashing.postgres] section with url".into(),
                ));
            };
            if !has_audit {
                return Err((
                    "audit.file",
                    "with engine postgres there is no database directory to put the audit log \
                     beside: set [audit] file"
                        .into(),
                ));
            }
            if !s.integrity_check_on_open {
                return Err((
                    "slashing.integrity_check_on_open",
                    "an SQLite setting; remove it with engine postgres".into(),
                ));
            }
            let opts = slashing_db::PostgresOptions::from_url(&pg.url)
                .map_err(|e| ("slashing.postgres.url", e))?;
            if pg.password_file.is_some() && pg.password_env.is_some() {
                return Err((
                    "slashing.postgres",
                    "give password_file or password_env, not both".into(),
                ));
            }
            match pg.tls {
                PostgresTls::VerifyFull if pg.ca_file.is_none() => {
                    return Err((
                        "slashing.postgres.ca_file",
                        "tls = \"verify-full\" needs ca_file: the PEM roots that sign the server's certificate".into(),
                    ));
                }
                PostgresTls::Disable if !opts.only_local_hosts() => {
                    return Err((
                        "slashing.postgres.tls",
                        format!(
                            "tls = \"disable\" is allowed only for Unix sockets and loopback; {} is reached over a network: use verify-full with ca_file",
                            opts.target()
                        ),
                    ));
                }
                _ => {}
            }
            if pg.statement_timeout_ms == 0 || pg.connect_timeout_ms == 0 {
                return Err(("slashing.postgres", "timeouts must be above 0 ms".into()));
            }
        }
    }
    Ok(())
}

fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

impl Config {
    /// Reads, parses, checks and resolves the configuration at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text` as if read from `path` (relative paths resolve against its directory).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut c: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |field, message: &str| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            message: message.into(),
        };
        let pem = (c.tls.cert.is_some(), c.tls.key.is_some());
        let p12 = (
            c.tls.keystore.is_some(),
            c.tls.keystore_password_file.is_some(),
        );
        match (pem, p12) {
            ((true, true), (false, false)) | ((false, false), (true, true)) => {}
            _ => {
                return Err(invalid(
                    "tls",
                    "give either cert and key (PEM), or keystore and keystore_password_file (PKCS#12)",
                ));
            }
        }
        if c.tls.client_cas.is_empty() {
            return Err(invalid(
                "tls.client_cas",
                "name at least one CA: without one every client is refused",
            ));
        }
        check_slashing(&c.slashing, c.audit.is_some())
            .map_err(|(field, message)| invalid(field, &message))?;
        if let Some(name) = c.audit.as_ref().and_then(|a| a.name.as_deref())
            && (name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control))
        {
            return Err(invalid(
                "audit.name",
                "give a name of 1 to 200 printable characters, unique to this instance",
            ));
        }
        if let Some(ms) = c.audit.as_ref().and_then(|a| a.flush_interval_ms)
            && !(1..=1000).contains(&ms)
        {
            return Err(invalid(
                "audit.flush_interval_ms",
                &format!(
                    "{ms} is out of range: give 1 to 1000 milliseconds (default {}); records \
                     written since the last flush are what a power loss may take",
                    crate::audit::DEFAULT_FLUSH_INTERVAL.as_millis()
                ),
            ));
        }
        if let Some(root) = &c.slashing.genesis_validators_root {
            let ok = root
                .strip_prefix("0x")
                .and_then(|h| hex::decode(h).ok())
                .is_some_and(|b| b.len() == 32);
            if !ok {
                return Err(invalid(
                    "slashing.genesis_validators_root",
                    "expected 0x and 64 hex digits",
                ));
            }
        }
        if c.ethereum.seconds_per_slot == 0 {
            return Err(invalid("ethereum.seconds_per_slot", "must be at least 1"));
        }
        if c.ethereum.network().is_none() {
            return Err(invalid(
                "ethereum.genesis_fork_version",
                "expected 0x and 8 hex digits",
            ));
        }
        if c.server.header_timeout_ms == 0 || c.server.body_timeout_ms == 0 {
            return Err(invalid(
                "server.header_timeout_ms",
                "header_timeout_ms and body_timeout_ms must be at least 1",
            ));
        }
        if c.server.queue_capacity == 0 || c.server.max_batch == 0 {
            return Err(invalid(
                "server.queue_capacity",
                "queue_capacity and max_batch must be at least 1",
            ));
        }
        // Port 0 asks for any free port: two of them never collide.
        if c.server.grpc_listen == c.server.metrics_listen && c.server.grpc_listen.port() != 0 {
            return Err(invalid(
                "server.metrics_listen",
                "must differ from grpc_listen",
            ));
        }
        if let Some(h) = &c.http {
            if h.insecure_plaintext && !h.listen.ip().is_loopback() {
                return Err(invalid(
                    "http.insecure_plaintext",
                    "plain HTTP only on a loopback address (127.0.0.1 or ::1)",
                ));
            }
            if h.insecure_plaintext && h.known_clients_file.is_some() {
                return Err(invalid(
                    "http.known_clients_file",
                    "plain HTTP has no client certificates to match",
                ));
            }
        }
        let token_names: Vec<&str> = c
            .pkcs11
            .iter()
            .flat_map(|p| p.tokens.iter().map(|t| t.name.as_str()))
            .collect();
        if let Some(p) = &c.pkcs11 {
            if p.tokens.is_empty() {
                return Err(invalid("pkcs11.tokens", "name at least one token"));
            }
            for (i, t) in p.tokens.iter().enumerate() {
                if token_names.iter().take(i).any(|n| *n == t.name) {
                    return Err(invalid("pkcs11.tokens.name", "names must be unique"));
                }
                if let Err(e) = t.check_selector() {
                    return Err(invalid("pkcs11.tokens", &e));
                }
                if t.pin_file.is_some() == t.pin_env.is_some() {
                    return Err(invalid(
                        "pkcs11.tokens",
                        "give exactly one of pin_file, pin_env (the PIN never goes in this file)",
                    ));
                }
            }
        }
        for k in &c.keys {
            if matches!(
                k,
                KeySource::Kms { .. } | KeySource::KmsTags { .. } | KeySource::KmsSealed { .. }
            ) && c.kms.is_none()
            {
                return Err(invalid("keys", "kms keys need a [kms] section"));
            }
            let (KeySource::Pkcs11 { tokens, .. } | KeySource::Pkcs11Sealed { tokens, .. }) = k
            else {
                continue;
            };
            if c.pkcs11.is_none() {
                return Err(invalid("keys", "pkcs11 keys need a [pkcs11] section"));
            }
            if let Some(t) = tokens.iter().find(|t| !token_names.contains(&t.as_str())) {
                return Err(invalid(
                    "keys.tokens",
                    &format!("no [[pkcs11.tokens]] named {t:?}"),
                ));
            }
            if let KeySource::Pkcs11 { label, id, .. } = k
                && label.is_some() == id.is_some()
            {
                return Err(invalid(
                    "keys",
                    "a pkcs11 key needs exactly one of label, id",
                ));
            }
        }
        if c.keymanager.is_some() && c.http.as_ref().is_none_or(|h| h.insecure_plaintext) {
            return Err(invalid(
                "keymanager",
                "the Keymanager API is served on the HTTPS listener: configure [http] with TLS (not insecure_plaintext)",
            ));
        }
        if let Some(cb) = &c.commit_boost {
            check_commit_boost(cb, &c).map_err(|(field, message)| invalid(field, &message))?;
        }
        if let Some(sc) = &c.start_cache {
            let given = [
                sc.password_file.is_some(),
                sc.pkcs11.is_some(),
                sc.kms.is_some(),
            ];
            if given.iter().filter(|g| **g).count() != 1 {
                return Err(invalid(
                    "start_cache",
                    "give exactly one of password_file, pkcs11 (\"TOKEN:LABEL\"), kms (a key id, alias or ARN) to seal the cache under",
                ));
            }
            if sc.pkcs11.is_some() {
                match sc.pkcs11_target() {
                    None => {
                        return Err(invalid(
                            "start_cache.pkcs11",
                            "give \"TOKEN:LABEL\": a [[pkcs11.tokens]] name and the label of its AES key",
                        ));
                    }
                    Some((t, _)) if !token_names.contains(&t) => {
                        return Err(invalid(
                            "start_cache.pkcs11",
                            &format!("no [[pkcs11.tokens]] named {t:?}"),
                        ));
                    }
                    Some(_) => {}
                }
            }
            if sc.kms.is_some() && c.kms.is_none() {
                return Err(invalid(
                    "start_cache.kms",
                    "a kms key needs a [kms] section",
                ));
            }
        }
        for chain in &c.cometbft {
            if chain.nodes.is_empty() {
                return Err(invalid("cometbft.nodes", "name at least one node"));
            }
            match (&chain.next_key, chain.switch_height) {
                (None, None) => {}
                (Some(next), Some(h)) => {
                    if h < 1 {
                        return Err(invalid("cometbft.switch_height", "a height is 1 or more"));
                    }
                    if next.eq_ignore_ascii_case(&chain.key) {
                        return Err(invalid(
                            "cometbft.next_key",
                            "the same as key: a rotation needs a new key",
                        ));
                    }
                }
                _ => {
                    return Err(invalid(
                        "cometbft.next_key",
                        "give next_key and switch_height together (signer keys rotate prints both)",
                    ));
                }
            }
            let tcp = chain
                .nodes
                .iter()
                .any(|n| matches!(n, NodeAddr::Tcp { .. }));
            if tcp && c.privval.is_none() {
                return Err(invalid(
                    "privval.identity_key",
                    "tcp:// nodes need the signer's SecretConnection identity",
                ));
            }
        }
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        for p in [
            &mut c.tls.cert,
            &mut c.tls.key,
            &mut c.tls.keystore,
            &mut c.tls.keystore_password_file,
        ]
        .into_iter()
        .flatten()
        {
            resolve(&base, p);
        }
        c.tls.client_cas.iter_mut().for_each(|p| resolve(&base, p));
        c.tls.crls.iter_mut().for_each(|p| resolve(&base, p));
        resolve(&base, &mut c.policy.file);
        if let Some(db) = &mut c.slashing.database {
            resolve(&base, db);
        }
        if let Some(pg) = &mut c.slashing.postgres {
            for p in [&mut pg.password_file, &mut pg.ca_file]
                .into_iter()
                .flatten()
            {
                resolve(&base, p);
            }
        }
        if let Some(Http {
            known_clients_file: Some(p),
            ..
        }) = &mut c.http
        {
            resolve(&base, p);
        }
        if let Some(p) = &mut c.privval {
            resolve(&base, &mut p.identity_key);
        }
        for chain in &mut c.cometbft {
            for node in &mut chain.nodes {
                if let NodeAddr::Unix(path) = node {
                    resolve(&base, path);
                }
            }
        }
        match &mut c.audit {
            Some(a) => resolve(&base, &mut a.file),
            None => {
                // Checked at parse: with PostgreSQL [audit] file is required.
                let db = c.slashing.database.as_deref().unwrap_or(Path::new("."));
                let dir = db.parent().unwrap_or(Path::new("."));
                c.audit = Some(Audit {
                    file: dir.join("audit.jsonl"),
                    name: None,
                    flush_interval_ms: None,
                });
            }
        }
        if let Some(p) = &mut c.pkcs11 {
            for t in &mut p.tokens {
                if let Some(f) = &mut t.pin_file {
                    resolve(&base, f);
                }
            }
        }
        if let Some(k) = &mut c.keymanager {
            resolve(&base, &mut k.store);
            resolve(&base, &mut k.token_dir);
            // Imported keys load like any Web3Signer key directory.
            c.keys.push(KeySource::Web3signerDir {
                path: k.store.clone(),
            });
        }
        if let Some(cb) = &mut c.commit_boost {
            resolve(&base, &mut cb.proxy_dir);
            resolve(&base, &mut cb.proxy_password_file);
            for m in &mut cb.modules {
                resolve(&base, &mut m.jwt_secret_file);
            }
        }
        if let Some(sc) = &mut c.start_cache {
            resolve(&base, &mut sc.file);
            if let Some(p) = &mut sc.password_file {
                resolve(&base, p);
            }
        }
        for k in &mut c.keys {
            match k {
                KeySource::File {
                    path,
                    password_file,
                } => {
                    resolve(&base, path);
                    resolve(&base, password_file);
                }
                KeySource::Web3signerDir { path }
                | KeySource::PrivValidatorKey { path }
                | KeySource::Pkcs11Sealed { path, .. }
                | KeySource::KmsSealed { path } => resolve(&base, path),
                KeySource::Pkcs11 { .. } | KeySource::Kms { .. } | KeySource::KmsTags { .. } => {}
            }
        }
        Ok(c)
    }
}

impl Ethereum {
    /// The network parameters for [`crate::eth2::decode`], if the fields are valid.
    pub fn network(&self) -> Option<Network> {
        let v = self
            .genesis_fork_version
            .strip_prefix("0x")
            .and_then(|h| hex::decode(h).ok())?;
        let genesis_fork_version: [u8; 4] = v.try_into().ok()?;
        let preset = match self.preset {
            Preset::Mainnet => PresetKind::Mainnet,
            Preset::Minimal => PresetKind::Minimal,
        };
        let genesis_time = self
            .genesis_time
            .or_else(|| Clock::known(genesis_fork_version).map(|(_, t)| t));
        let clock = match (genesis_time, self.max_slots_ahead) {
            (Some(genesis_time), SlotsAhead::Slots(max_slots_ahead))
                if self.seconds_per_slot > 0 =>
            {
                Some(Clock {
                    genesis_time,
                    seconds_per_slot: self.seconds_per_slot,
                    max_slots_ahead,
                })
            }
            _ => None,
        };
        Some(Network {
            preset,
            genesis_fork_version,
            gloas_fork_epoch: self.gloas_fork_epoch,
            clock,
        })
    }
}

impl Server {
    /// The HTTP/1 listeners' timeouts.
    pub fn http_timeouts(&self) -> crate::net::HttpTimeouts {
        crate::net::HttpTimeouts {
            header: std::time::Duration::from_millis(self.header_timeout_ms),
            body: std::time::Duration::from_millis(self.body_timeout_ms),
        }
    }
}
