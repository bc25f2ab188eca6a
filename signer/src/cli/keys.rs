//! `signer keys`: keys inside HSMs — generate, list, and seal BLS keys.
//!
//! ```text
//! signer keys generate --backend pkcs11 --module /usr/lib/softhsm/libsofthsm2.so \
//!     --token-label validators --pin-file hsm.pin --scheme ed25519 --label cosmoshub-val
//! signer keys list --backend pkcs11 --module … --token-label validators --pin-file hsm.pin
//! signer keys seal --backend pkcs11 --module … --token-label validators --pin-file hsm.pin \
//!     --wrapping-key bls-wrap --keystore keystore.json --password-file pw --out val.sealed.json
//! signer keys seal --backend kms --kms-key alias/bls-seal --keystore keystore.json \
//!     --password-file pw --out val.kms.json
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use signer::backend::pkcs11::{self, admin, seal, token::Selector};
use zeroize::Zeroizing;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Take a key out of service on every signer sharing the slashing
    /// database (a validator exiting, a key suspected compromised): it
    /// refuses every request with KEY_DISABLED until enabled again.
    Disable(super::lifecycle::StateArgs),
    /// Move sealed BLS key files under another wrapping key (token AES key
    /// A → B, KMS key A → B, token ↔ KMS): each verified before it replaces
    /// the old file atomically; run again to finish an interrupted run.
    Reseal(super::reseal::ResealArgs),
    /// Rotate a CometBFT chain's consensus key: make a new key in a key
    /// file or a token, print its public key for the chain's rotation
    /// transaction, and how to serve it (a second node, or a switch height);
    /// or, with --move, move the key in use into a token with its history.
    Rotate(super::rotate::RotateArgs),
    /// Put a disabled key back in service.
    Enable(super::lifecycle::StateArgs),
    /// Take a key out of service for good (its history is kept, for export).
    Retire(super::lifecycle::StateArgs),
    /// Generate a key inside the backend (sensitive, never extractable).
    Generate {
        #[command(flatten)]
        token: TokenArgs,
        /// What to generate (`aes256`: a key that seals BLS keys).
        #[arg(long, value_enum)]
        scheme: GenScheme,
        /// The key's label (`CKA_LABEL`), unique on the token.
        #[arg(long)]
        label: String,
    },
    /// Import an existing Ed25519 or secp256k1 key into the token (non-extractable from then on).
    Import {
        #[command(flatten)]
        token: TokenArgs,
        /// The label to give it.
        #[arg(long)]
        label: String,
        /// Our key file or an EIP-2335-style keystore…
        #[arg(
            long,
            required_unless_present = "priv_validator_key",
            requires = "password_file"
        )]
        key_file: Option<PathBuf>,
        /// …with its password file.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Or CometBFT's priv_validator_key.json.
        #[arg(long, conflicts_with = "key_file")]
        priv_validator_key: Option<PathBuf>,
    },
    /// List the keys the backend holds (KMS: every key, its scheme, public key and tags).
    List {
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Seal a BLS key under the token's AES key or a KMS key (a file useless without them).
    Seal {
        #[command(flatten)]
        token: TokenArgs,
        /// pkcs11: label of the token's AES key (`keys generate --scheme aes256`).
        #[arg(long)]
        wrapping_key: Option<String>,
        /// The EIP-2335 keystore to seal…
        #[arg(long, required_unless_present = "generate", requires = "password_file")]
        keystore: Option<PathBuf>,
        /// …with its password file.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Or seal a fresh random BLS key.
        #[arg(long, conflicts_with = "keystore")]
        generate: bool,
        /// Where to write the sealed key (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// A PKCS#11 token.
    Pkcs11,
    /// AWS KMS (seal only: create KMS keys with AWS's own tools).
    Kms,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenScheme {
    /// Ed25519 key pair (CometBFT consensus keys).
    Ed25519,
    /// secp256k1 key pair.
    Secp256k1,
    /// AES-256 key for sealing BLS keys.
    Aes256,
}

/// Which token, and how to log in.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The backend.
    #[arg(long, value_enum, default_value = "pkcs11")]
    backend: Backend,
    /// pkcs11: the module (shared library).
    #[arg(long)]
    module: Option<PathBuf>,
    /// pkcs11: the token's label…
    #[arg(long)]
    token_label: Option<String>,
    /// …or its serial number.
    #[arg(long, conflicts_with = "token_label")]
    token_serial: Option<String>,
    /// pkcs11: the user PIN's file…
    #[arg(long)]
    pin_file: Option<PathBuf>,
    /// …or the environment variable holding it.
    #[arg(long, conflicts_with = "pin_file")]
    pin_env: Option<String>,
    /// kms: the symmetric key that seals (id, ARN or alias/NAME).
    #[arg(long)]
    kms_key: Option<String>,
    /// kms: the region (default: the AWS configuration's).
    #[arg(long)]
    kms_region: Option<String>,
    /// kms: an endpoint override (VPC endpoint, test endpoint).
    #[arg(long)]
    kms_endpoint: Option<String>,
}

impl TokenArgs {
    /// A KMS client for one-off commands (long timeouts, no breaker).
    fn kms(&self) -> Result<std::sync::Arc<signer::backend::kms::Kms>, String> {
        signer::backend::kms::Kms::new(
            &signer::backend::kms::KmsConfig {
                region: self.kms_region.clone(),
                endpoint: self.kms_endpoint.clone(),
                operation_timeout_ms: 10_000,
                attempt_timeout_ms: 5_000,
                breaker_failures: u32::MAX,
                breaker_open_ms: 1,
            },
            None,
        )
    }

    fn open(&self, read_write: bool) -> Result<cryptoki::session::Session, String> {
        if self.backend != Backend::Pkcs11 {
            return Err("this command works on PKCS#11 tokens; create KMS keys with AWS's tools and name them in [[keys]]".into());
        }
        let module = self.module.as_deref().ok_or("--module is required")?;
        let ctx = pkcs11::open_module(module)?;
        let selector = match (&self.token_label, &self.token_serial) {
            (Some(l), _) => Selector::Label(l.clone()),
            (None, Some(s)) => Selector::Serial(s.clone()),
            (None, None) => return Err("give --token-label or --token-serial".into()),
        };
        let pin = pkcs11::read_pin(self.pin_file.as_deref(), self.pin_env.as_deref())?;
        let token = pkcs11::Token::new(
            "cli".into(),
            ctx,
            selector,
            pin,
            pkcs11::token::PoolSettings {
                sessions: 1,
                keepalive: std::time::Duration::from_secs(60),
            },
            None,
        );
        token.open_session(read_write)
    }
}

pub fn run(c: KeysCommand) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use slashing_db::Lifecycle;
    match c {
        KeysCommand::Disable(a) => super::lifecycle::run(Lifecycle::Disabled, a),
        KeysCommand::Reseal(a) => super::reseal::run(a),
        KeysCommand::Rotate(a) => super::rotate::run(a),
        KeysCommand::Enable(a) => super::lifecycle::run(Lifecycle::Enabled, a),
        KeysCommand::Retire(a) => super::lifecycle::run(Lifecycle::Retired, a),
        KeysCommand::Generate {
            token,
            scheme,
            label,
        } => {
            let session = token.open(true)?;
            let kind = match scheme {
                GenScheme::Ed25519 => admin::KeyKind::Ed25519,
                GenScheme::Secp256k1 => admin::KeyKind::Secp256k1,
                GenScheme::Aes256 => admin::KeyKind::Aes256,
            };
            let g = admin::generate(&session, kind, &label)?;
            match g.public_key {
                Some(pk) => println!(
                    "generated {} key {label:?} id 0x{} public key 0x{}",
                    scheme_name(scheme),
                    hex::encode(&g.id),
                    hex::encode(pk)
                ),
                None => println!("generated aes256 key {label:?} id 0x{}", hex::encode(&g.id)),
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Import {
            token,
            label,
            key_file,
            password_file,
            priv_validator_key,
        } => {
            let (scheme, secret) = match (key_file, password_file, priv_validator_key) {
                (Some(k), Some(p), None) => {
                    let json = std::fs::read(&k).map_err(|e| format!("{}: {e}", k.display()))?;
                    let password = signer::backend::soft::keystore::read_password_file(&p)?;
                    let d = signer::backend::soft::keystore::decrypt(&json, &password)?;
                    let scheme = match d.key_type.as_deref() {
                        Some("ed25519") => signer::backend::Scheme::Ed25519,
                        Some("secp256k1") => signer::backend::Scheme::Secp256k1,
                        _ => return Err("only Ed25519 and secp256k1 keys are imported; BLS keys are sealed (keys seal)".into()),
                    };
                    (scheme, d.secret)
                }
                (None, None, Some(f)) => {
                    let json = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
                    signer::backend::soft::cometbft::priv_validator_secret(&json)
                        .map_err(|e| format!("{}: {e}", f.display()))?
                }
                _ => {
                    return Err(
                        "give --key-file with --password-file, or --priv-validator-key".into(),
                    );
                }
            };
            let session = token.open(true)?;
            let g = admin::import(&session, scheme, &label, &secret)?;
            println!(
                "imported {} key {label:?} id 0x{} public key 0x{}",
                scheme.key_type(),
                hex::encode(&g.id),
                hex::encode(g.public_key.unwrap_or_default())
            );
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::List { token } if token.backend == Backend::Kms => {
            for k in token.kms()?.list()? {
                let tags: Vec<String> = k.tags.iter().map(|(t, v)| format!("{t}={v}")).collect();
                let (kind, pk) = match &k.key {
                    Some((scheme, pk)) => (scheme.key_type(), format!("0x{}", hex::encode(pk))),
                    None => ("other", String::new()),
                };
                println!("{kind:<10} {} {pk} [{}]", k.arn, tags.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::List { token } => {
            let session = token.open(false)?;
            for k in admin::list(&session)? {
                println!(
                    "{:<10} {:<24} id 0x{:<16} {} {}",
                    k.kind,
                    format!("{:?}", k.label),
                    hex::encode(&k.id),
                    if k.protected {
                        "protected  "
                    } else {
                        "EXTRACTABLE"
                    },
                    k.public_key
                        .map(|p| format!("0x{}", hex::encode(p)))
                        .unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Seal {
            token,
            wrapping_key,
            keystore,
            password_file,
            generate,
            out,
        } => {
            if out.exists() {
                return Err(format!("{} exists; not overwriting a key file", out.display()).into());
            }
            let secret = match (keystore, password_file, generate) {
                (Some(k), Some(p), false) => {
                    let json = std::fs::read(&k).map_err(|e| format!("{}: {e}", k.display()))?;
                    let password = signer::backend::soft::keystore::read_password_file(&p)?;
                    let d = signer::backend::soft::keystore::decrypt(&json, &password)?;
                    if d.key_type.as_deref().is_some_and(|t| t != "bls") {
                        return Err("only BLS keys are sealed; Ed25519 and secp256k1 keys belong inside the token (keys generate)".into());
                    }
                    d.secret
                }
                (None, None, true) => {
                    let (_, secret) = super::init::random_secret(signer::backend::Scheme::Bls)?;
                    Zeroizing::new(secret.to_vec())
                }
                _ => return Err("give --keystore with --password-file, or --generate".into()),
            };
            let (public_key, json) = if token.backend == Backend::Kms {
                let key = token
                    .kms_key
                    .as_deref()
                    .ok_or("--kms-key is required with --backend kms")?;
                let sealed = token.kms()?.seal_bls(key, &secret)?;
                (
                    sealed.public_key.clone(),
                    serde_json::to_string_pretty(&sealed)?,
                )
            } else {
                let wrapping_key =
                    wrapping_key.ok_or("--wrapping-key is required with --backend pkcs11")?;
                let session = token.open(false)?;
                let sealed = seal::seal(&session, &wrapping_key, &secret, "")?;
                (
                    sealed.public_key.clone(),
                    serde_json::to_string_pretty(&sealed)?,
                )
            };
            std::fs::write(&out, json + "\n").map_err(|e| format!("{}: {e}", out.display()))?;
            println!("sealed BLS key {public_key} into {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn scheme_name(s: GenScheme) -> &'static str {
    match s {
        GenScheme::Ed25519 => "ed25519",
        GenScheme::Secp256k1 => "secp256k1",
        GenScheme::Aes256 => "aes256",
    }
}
