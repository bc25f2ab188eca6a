//! `signer cometbft import-state`: migrate from CometBFT's file signer or
//! tmkms without a height gap, by raising the slashing database's
//! height/round/step for a consensus key and chain to what the old signer
//! last signed. Offline, like the other database commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use clap::Subcommand;
use serde_json::Value;
use slashing_db::{ChainId, CometProposal, CometRecord, ConsensusKey, Height, Hrs, Step};

#[derive(Debug, Subcommand)]
pub enum CometbftCommand {
    /// Import CometBFT's priv_validator_state.json or a tmkms state file.
    ImportState {
        /// The SQLite database (created if missing)…
        #[arg(long, conflicts_with = "config", required_unless_present = "config")]
        db: Option<PathBuf>,
        /// …or the daemon's configuration: its [slashing] section names the
        /// database, and the key is checked against the chain's
        /// `[[cometbft]] key`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The chain the state belongs to.
        #[arg(long)]
        chain_id: String,
        /// The consensus public key: 32-byte Ed25519 or 33-byte compressed
        /// secp256k1, in hex (0x optional) or base64, or the JSON that
        /// `cometbft show-validator` / `<appd> tendermint show-validator`
        /// prints…
        #[arg(
            long,
            conflicts_with = "priv_validator_key",
            required_unless_present = "priv_validator_key"
        )]
        key: Option<String>,
        /// …or the priv_validator_key.json it belongs to.
        #[arg(long)]
        priv_validator_key: Option<PathBuf>,
        /// Import even though the configuration does not serve this key for
        /// this chain (with --config).
        #[arg(long)]
        force: bool,
        /// The state file.
        state: PathBuf,
    },
}

fn number(v: &Value, field: &str) -> Result<i64, String> {
    match v.get(field) {
        Some(Value::String(s)) => s.parse().map_err(|_| format!("{field}: not a number")),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("{field}: not an integer")),
        _ => Err(format!("{field}: missing")),
    }
}

fn public_key(key: Option<&str>, file: Option<&Path>) -> Result<Vec<u8>, String> {
    match (key, file) {
        (Some(k), _) => parse_key(k).map_err(|e| format!("--key: {e}")),
        (None, Some(f)) => {
            let json = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
            signer::backend::soft::cometbft::load_priv_validator_key(&json)
                .map(|k| k.public_key())
                .map_err(|e| format!("{}: {e}", f.display()))
        }
        (None, None) => Err("give --key or --priv-validator-key".into()),
    }
}

/// A consensus public key as operators have it at hand: hex (what the
/// signer prints), base64 (what Cosmos tools print), or the JSON of
/// `show-validator` (`{"type":…,"value":…}` or `{"@type":…,"key":…}`).
/// Exactly a valid 32-byte Ed25519 point or 33-byte compressed secp256k1
/// point: anything else would protect a key nobody signs with.
pub(crate) fn parse_key(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if text.starts_with('{') {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let inner = v
            .get("value")
            .or_else(|| v.get("key"))
            .and_then(Value::as_str)
            .ok_or(
                "JSON without a \"value\" or \"key\" string (expected what show-validator prints)",
            )?;
        return parse_key(inner);
    }
    let unprefixed = text.strip_prefix("0x").unwrap_or(text);
    let b64 = base64::engine::general_purpose::STANDARD;
    let (bytes, form) = match hex::decode(unprefixed) {
        Ok(b) => (b, "hex"),
        Err(_) if text.starts_with("0x") => return Err("0x but not hex".into()),
        Err(_) => match b64.decode(text) {
            Ok(b) => (b, "base64"),
            Err(_) => {
                return Err(
                    "neither hex nor base64; give the consensus public key (show-validator prints it)"
                        .into(),
                );
            }
        },
    };
    match bytes.len() {
        32 => {
            ed25519_dalek::VerifyingKey::from_bytes(&bytes.as_slice().try_into().unwrap_or([0; 32]))
                .map(|_| bytes)
                .map_err(|_| format!("32 bytes of {form}, but not an Ed25519 public key"))
        }
        33 => k256::PublicKey::from_sec1_bytes(&bytes)
            .map(|_| bytes)
            .map_err(|_| format!("33 bytes of {form}, but not a compressed secp256k1 public key")),
        20 => Err(format!(
            "20 bytes of {form}: a validator address, not a public key; give the consensus public key (show-validator prints it)"
        )),
        64 => Err(format!(
            "64 bytes of {form}: a private key (priv_key.value), not a public key; give pub_key.value or --priv-validator-key"
        )),
        n => Err(format!(
            "{n} bytes of {form}; expected a 32-byte Ed25519 or 33-byte compressed secp256k1 public key"
        )),
    }
}

/// What the configuration says about `chain`'s key: `Ok` if it serves
/// `key`, otherwise why not.
/// The chains `[[cometbft]]` serves, for messages: `a, b` or `none`.
pub(crate) fn configured_chains(config: &signer::config::Config) -> String {
    let known: Vec<&str> = config
        .cometbft
        .iter()
        .map(|c| c.chain_id.as_str())
        .collect();
    if known.is_empty() {
        "none".to_owned()
    } else {
        known.join(", ")
    }
}

fn check_served(config: &signer::config::Config, chain: &str, key: &[u8]) -> Result<(), String> {
    let Some(c) = config
        .cometbft
        .iter()
        .find(|c| c.chain_id.as_str() == chain)
    else {
        return Err(format!(
            "the configuration serves no chain {chain:?} (its [[cometbft]] chains: {})",
            configured_chains(config)
        ));
    };
    let served = parse_key(&c.key).unwrap_or_default();
    if served == key {
        Ok(())
    } else {
        Err(format!(
            "the configuration signs {chain} with 0x{}, not 0x{}",
            hex::encode(&served),
            hex::encode(key)
        ))
    }
}

/// Reads a state file into the record to import (`None`: nothing signed yet).
fn record(
    state: &Value,
    key: &ConsensusKey,
    chain: &ChainId,
) -> Result<Option<CometRecord>, String> {
    let height = number(state, "height")?;
    let round = number(state, "round")?;
    let step = number(state, "step")?;
    if height == 0 && step == 0 {
        return Ok(None);
    }
    let hrs = Hrs {
        height: Height(u64::try_from(height).map_err(|_| "height: negative")?),
        round: u32::try_from(round).map_err(|_| "round: out of range")?,
        step: Step::from_i64(step)
            .ok_or("step: expected 1 (propose), 2 (prevote) or 3 (precommit)")?,
    };
    // CometBFT's file signer keeps the bytes it signed and the signature;
    // tmkms keeps the position only.
    let sign_bytes = match state.get("signbytes").and_then(Value::as_str) {
        Some(h) if !h.is_empty() => hex::decode(h).map_err(|_| "signbytes: not hex")?,
        _ => Vec::new(),
    };
    if !sign_bytes.is_empty() {
        let parsed = CometProposal::from_sign_bytes(key.clone(), chain.clone(), sign_bytes.clone())
            .map_err(|e| format!("signbytes: {e}"))?;
        if parsed.hrs() != hrs {
            return Err(format!(
                "signbytes are for {}, the state says {hrs}",
                parsed.hrs()
            ));
        }
    }
    let signature = match state.get("signature").and_then(Value::as_str) {
        Some(b) if !b.is_empty() && !sign_bytes.is_empty() => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|_| "signature: not base64")?,
        ),
        _ => None,
    };
    Ok(Some(CometRecord {
        hrs,
        sign_bytes,
        signature,
    }))
}

pub fn run(c: CometbftCommand) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let CometbftCommand::ImportState {
        db,
        config,
        chain_id,
        key,
        priv_validator_key,
        force,
        state,
    } = c;
    let pk = public_key(key.as_deref(), priv_validator_key.as_deref())?;
    let chain = ChainId::new(chain_id.clone()).ok_or("--chain-id: longer than 50 bytes")?;
    let config = config
        .as_deref()
        .map(|path| {
            signer::config::Config::load(path)
                .map(|c| (path, c))
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .transpose()?;
    match &config {
        Some((path, c)) => {
            if let Err(why) = check_served(c, &chain_id, &pk) {
                if !force {
                    return Err(format!(
                        "{}: {why}. Importing would protect a key the signer does not sign this chain with; check --key and --chain-id (or pass --force to import anyway)",
                        path.display()
                    )
                    .into());
                }
                eprintln!(
                    "WARNING: {}: {why}; importing anyway (--force)",
                    path.display()
                );
            }
        }
        None => eprintln!(
            "WARNING: not checked that the signer serves 0x{} for {chain_id}: pass --config (instead of --db) to check it against [[cometbft]]",
            hex::encode(&pk)
        ),
    }
    let key = ConsensusKey::new(pk).ok_or("the key is not a consensus public key")?;
    let text = std::fs::read_to_string(&state).map_err(|e| format!("{}: {e}", state.display()))?;
    let json: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", state.display()))?;
    let Some(record) =
        record(&json, &key, &chain).map_err(|e| format!("{}: {e}", state.display()))?
    else {
        println!(
            "{}: nothing was signed yet; nothing to import",
            state.display()
        );
        return Ok(ExitCode::SUCCESS);
    };
    let hrs = record.hrs;
    let exact = !record.sign_bytes.is_empty();
    let db = match (&db, &config) {
        (Some(db), _) => super::slashing::open(db, true)?,
        (None, Some((path, c))) => signer::storage::open(&c.slashing, None)
            .map_err(|e| format!("{}: [slashing]: {e}", path.display()))?,
        (None, None) => return Err("give --db FILE or --config FILE".into()),
    };
    if db.import_cometbft_state(key, chain.clone(), record)? {
        println!(
            "imported {}: last signed {hrs}{}",
            chain.as_str(),
            if exact {
                " (with its sign bytes: the same message is re-served)"
            } else {
                " (position only: anything at exactly that position is refused)"
            }
        );
    } else {
        println!(
            "kept: the database already protects {} at or beyond {hrs}",
            chain.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}
