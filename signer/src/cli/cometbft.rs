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
        /// The slashing database (created if missing).
        #[arg(long)]
        db: PathBuf,
        /// The chain the state belongs to.
        #[arg(long)]
        chain_id: String,
        /// The consensus public key (0x + hex)…
        #[arg(
            long,
            conflicts_with = "priv_validator_key",
            required_unless_present = "priv_validator_key"
        )]
        key: Option<String>,
        /// …or the priv_validator_key.json it belongs to.
        #[arg(long)]
        priv_validator_key: Option<PathBuf>,
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
        (Some(k), _) => {
            hex::decode(k.trim_start_matches("0x")).map_err(|_| "--key: not hex".into())
        }
        (None, Some(f)) => {
            let json = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
            signer::backend::soft::cometbft::load_priv_validator_key(&json)
                .map(|k| k.public_key())
                .map_err(|e| format!("{}: {e}", f.display()))
        }
        (None, None) => Err("give --key or --priv-validator-key".into()),
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
        chain_id,
        key,
        priv_validator_key,
        state,
    } = c;
    let pk = public_key(key.as_deref(), priv_validator_key.as_deref())?;
    let key = ConsensusKey::new(pk).ok_or("the key is not a consensus public key")?;
    let chain = ChainId::new(chain_id).ok_or("chain id longer than 50 bytes")?;
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
    let db = super::slashing::open(&db, true)?;
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
