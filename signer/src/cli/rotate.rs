//! `signer keys rotate`: a new consensus key for a CometBFT chain, made in
//! the backend the operator names, with everything needed to put it in
//! force printed: its public key in the forms the chain's rotation
//! transaction (`MsgRotateConsPubKey`) and `priv_validator_key.json` use,
//! and the configuration to serve it.
//!
//! Two ways to switch, both without a moment where two keys sign one
//! height:
//! - **A second node** (default): the new key is served to another node of
//!   the chain (a second `[[cometbft]]` entry) while the old node keeps the
//!   old key. Once the chain's validator set holds the new key, retire the
//!   old one (`signer keys retire`).
//! - **At a height** (`--at-height H`): the chain's `[[cometbft]]` entry
//!   gets `next_key` and `switch_height`; the same nodes are signed for with
//!   the old key below H and with the new key from H on. At start the daemon
//!   raises the new key's slashing record to the higher of H − 1 and the old
//!   key's last signed height, so the new key never signs at or below a
//!   height the old one may have signed.
//!
//! Moving a key to another backend with its history (chains without
//! on-chain rotation) is `--move`: the key in use, from its key file, is
//! imported into the token; the public key — and with it the slashing
//! history — stays the same.
//!
//! The command changes no configuration file: it prints what to add, for a
//! reviewer to see in the change that makes it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Args;
use sha2::{Digest, Sha256};
use slashing_db::Lifecycle;
use zeroize::Zeroizing;

use signer::backend::pkcs11::Registry;
use signer::backend::pkcs11::admin::KeyKind;
use signer::backend::soft::keystore::Kdf;
use signer::backend::soft::{self, Scheme, SecretKey};
use signer::config::{Config, KeySource};

type Error = Box<dyn std::error::Error>;

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The daemon's configuration: the chain's [[cometbft]] entry names the
    /// key in use; its [pkcs11] tokens reach a new key's token.
    #[arg(long)]
    config: PathBuf,
    /// The chain whose consensus key to rotate.
    #[arg(long)]
    chain_id: String,
    /// Where the new key is made: `file:PATH` (our encrypted key file, with
    /// --password-file) or `pkcs11:TOKEN:LABEL` (generated inside the token
    /// named TOKEN in [[pkcs11.tokens]], never extractable).
    #[arg(long)]
    new_key: String,
    /// file: the password for the new key file.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Switch the chain's nodes to the new key at this height (the first
    /// height at which the chain's validator set holds the new key).
    /// Without it the new key is served to a second node.
    #[arg(long)]
    at_height: Option<i64>,
    /// Move the key in use (from its key file) into the token instead of
    /// making a new one: same public key, same slashing history.
    #[arg(long, conflicts_with = "at_height")]
    r#move: bool,
    /// Check everything and say what would be done; make no key.
    #[arg(long)]
    dry_run: bool,
}

/// Where the new key goes.
enum Target {
    File(PathBuf),
    Pkcs11 { token: String, label: String },
}

fn parse_target(s: &str) -> Result<Target, String> {
    let usage = || {
        format!(
            "--new-key {s:?}: give file:PATH (a new key file) or pkcs11:TOKEN:LABEL (a token name from the configuration and a new label)"
        )
    };
    match s.split_once(':') {
        Some(("file", path)) if !path.is_empty() => Ok(Target::File(PathBuf::from(path))),
        Some(("pkcs11", rest)) => match rest.split_once(':') {
            Some((token, label)) if !token.is_empty() && !label.is_empty() => Ok(Target::Pkcs11 {
                token: token.into(),
                label: label.into(),
            }),
            _ => Err(usage()),
        },
        _ => Err(usage()),
    }
}

/// The forms of an Ed25519 consensus public key operators paste elsewhere.
fn print_forms(pk: &[u8]) {
    let b64 = B64.encode(pk);
    let address = hex::encode_upper(Sha256::digest(pk).get(..20).unwrap_or_default());
    println!(
        "  public key (hex, for signer.toml and policy.toml): 0x{}",
        hex::encode(pk)
    );
    println!("  public key (base64): {b64}");
    println!("  validator address: {address}");
    println!(
        "  for the rotation transaction (MsgRotateConsPubKey new_pubkey, `<appd> tx staking rotate-cons-pubkey`):"
    );
    println!("    {{\"@type\":\"/cosmos.crypto.ed25519.PubKey\",\"key\":\"{b64}\"}}");
    println!("  as priv_validator_key.json and `show-validator` write it:");
    println!("    {{\"type\":\"tendermint/PubKeyEd25519\",\"value\":\"{b64}\"}}");
}

pub fn run(a: RotateArgs) -> Result<ExitCode, Error> {
    let target = parse_target(&a.new_key)?;
    let config = Config::load(&a.config).map_err(|e| format!("{}: {e}", a.config.display()))?;
    let chains: Vec<_> = config
        .cometbft
        .iter()
        .filter(|c| c.chain_id == a.chain_id)
        .collect();
    let chain = match chains.as_slice() {
        [one] => *one,
        [] => {
            return Err(format!(
                "{}: no [[cometbft]] entry for chain {:?} (configured: {})",
                a.config.display(),
                a.chain_id,
                super::cometbft::configured_chains(&config)
            )
            .into());
        }
        _ => {
            return Err(format!(
                "{}: {} [[cometbft]] entries serve chain {:?} (a rotation to a second node is under way?): finish it first — retire the key no longer in the validator set and remove its entry",
                a.config.display(),
                chains.len(),
                a.chain_id
            )
            .into());
        }
    };
    if let (Some(next), Some(h)) = (&chain.next_key, chain.switch_height) {
        return Err(format!(
            "chain {}: a rotation is already configured (next_key {next} from height {h}); finish it first: once the chain signs with the new key, retire the old one, make next_key the key and remove switch_height",
            a.chain_id
        )
        .into());
    }
    let old = hex::decode(chain.key.trim_start_matches("0x"))
        .map_err(|_| format!("chain {}: key is not hex", a.chain_id))?;
    if old.len() != 32 {
        return Err(format!(
            "chain {}: key {} is not an Ed25519 key; this command rotates Ed25519 consensus keys",
            a.chain_id, chain.key
        )
        .into());
    }
    if let Some(h) = a.at_height
        && h < 2
    {
        return Err(
            "--at-height: a height above 1 (the old key signs the heights below it)".into(),
        );
    }

    // The key in use must be in service: rotating away from a disabled or
    // retired key would leave the chain with no key that signs until the
    // switch (enable it first, or retire it and start the new key at once).
    let state = super::lifecycle::state_of(&config, &old)?;
    if let Some(s) = state.as_ref().filter(|s| s.state != Lifecycle::Enabled) {
        return Err(format!(
            "chain {}: key {} is {}; rotate from a key in service (enable it first with `signer keys enable`), or serve a new key on its own",
            a.chain_id,
            chain.key,
            super::lifecycle::describe(s)
        )
        .into());
    }

    // What the new key needs: a password file, or a token we can reach.
    let password = match (&target, &a.password_file) {
        (Target::File(_), Some(p)) if !a.r#move => {
            let pw = soft::keystore::read_password_file(p)
                .map_err(|e| format!("--password-file {}: {e}", p.display()))?;
            if pw.len() < 8 {
                return Err(
                    format!("--password-file {}: at least 8 characters", p.display()).into(),
                );
            }
            Some(pw)
        }
        (Target::File(_), None) if !a.r#move => {
            return Err(
                "--new-key file:PATH needs --password-file (the new key file's password)".into(),
            );
        }
        (Target::File(_), _) => {
            return Err(
                "--move moves a key into a token: give --new-key pkcs11:TOKEN:LABEL".into(),
            );
        }
        _ => None,
    };
    if let Target::File(path) = &target
        && path.exists()
    {
        return Err(format!("{} exists; name a new file", path.display()).into());
    }
    let registry = match &target {
        Target::Pkcs11 { token, .. } => {
            let c = config.pkcs11.as_ref().ok_or(
                "--new-key pkcs11:…: the configuration has no [pkcs11] section naming the token",
            )?;
            if !c.tokens.iter().any(|t| &t.name == token) {
                return Err(format!("--new-key: no [[pkcs11.tokens]] named {token:?}").into());
            }
            Some(Registry::open(c).map_err(|e| format!("pkcs11: {e}"))?)
        }
        Target::File(_) => None,
    };
    let old_secret = if a.r#move {
        Some(secret_of(&config, &old)?)
    } else {
        None
    };

    println!(
        "chain {}: consensus key {} ({})",
        a.chain_id,
        chain.key,
        state
            .as_ref()
            .map_or_else(|| "in service".to_owned(), super::lifecycle::describe)
    );
    let place = match &target {
        Target::File(p) => format!("key file {}", p.display()),
        Target::Pkcs11 { token, label } => format!("pkcs11 token {token}, label {label:?}"),
    };
    if a.dry_run {
        if a.r#move {
            println!("  would import it into {place} (same public key, same history)");
        } else {
            println!("  would generate a new Ed25519 key in {place}");
        }
        println!("  (dry run: no key made, nothing changed)");
        return Ok(ExitCode::SUCCESS);
    }

    // Make (or move) the key.
    let new_pk: Vec<u8> = match (&target, &old_secret) {
        (Target::Pkcs11 { token, label }, Some(secret)) => {
            let session_registry = registry.as_ref().ok_or("no token")?;
            let g = session_registry.import(token, Scheme::Ed25519, label, secret)?;
            let pk = g.public_key.ok_or("the token returned no public key")?;
            if pk != old {
                return Err(format!(
                    "the token's copy has public key 0x{}, not 0x{}: not used",
                    hex::encode(&pk),
                    hex::encode(&old)
                )
                .into());
            }
            pk
        }
        (Target::Pkcs11 { token, label }, None) => {
            let r = registry.as_ref().ok_or("no token")?;
            r.generate(token, KeyKind::Ed25519, label)?
                .public_key
                .ok_or("the token returned no public key")?
        }
        (Target::File(path), _) => {
            let mut secret = Zeroizing::new([0u8; 32]);
            getrandom::fill(&mut *secret).map_err(|e| e.to_string())?;
            let key = SecretKey::from_secret(Scheme::Ed25519, &*secret)?;
            let text = soft::write_key_file(
                &key,
                &*secret,
                password.as_deref().map_or("", |p| p.as_str()),
                Kdf::DEFAULT,
                &format!("{} consensus key", a.chain_id),
            )?;
            write_new(path, &text)?;
            key.public_key()
        }
    };
    if a.r#move {
        println!("  imported into {place}: same public key, same slashing history");
    } else {
        println!("  new Ed25519 key made in {place}");
        print_forms(&new_pk);
    }
    let new_hex = format!("0x{}", hex::encode(&new_pk));
    let key_entry = match &target {
        // Absolute: the configuration resolves relative paths against its
        // own directory, not where this command ran.
        Target::File(p) => format!(
            "[[keys]]\ntype = \"file\"\npath = \"{}\"\npassword_file = \"{}\"",
            absolute(p).display(),
            absolute(a.password_file.as_deref().unwrap_or(Path::new(""))).display()
        ),
        Target::Pkcs11 { token, label } => {
            format!("[[keys]]\ntype = \"pkcs11\"\nlabel = \"{label}\"\ntokens = [\"{token}\"]")
        }
    };
    println!();
    println!("Next steps:");
    if a.r#move {
        println!(
            "1. In {}, replace the [[keys]] entry that serves {} with:\n\n{}\n",
            a.config.display(),
            chain.key,
            indent(&key_entry)
        );
        println!(
            "2. Restart the signer (its nodes reconnect within seconds). The key file is not deleted: once the signer serves the key from the token, shred it and its backups."
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "1. Serve the new key: add to {}\n\n{}\n",
        a.config.display(),
        indent(&key_entry)
    );
    println!(
        "2. Let the chain's nodes use it: add {new_hex} to the key group that the chain's [[grant]] with cometbft.consensus names, in {}.",
        config.policy.file.display()
    );
    match a.at_height {
        Some(h) => {
            println!(
                "3. In the chain's [[cometbft]] entry (chain_id = \"{}\"), add\n\n    next_key = \"{new_hex}\"\n    switch_height = {h}\n",
                a.chain_id
            );
            println!(
                "4. Check (`signer policy check`), then restart the signer before height {h}. Below {h} its nodes are signed for with {}; from {h} on with the new key, which refuses any height the old key may have signed (at start its record is raised to height {}).",
                chain.key,
                h - 1
            );
        }
        None => {
            println!(
                "3. Serve it to the second node: add to {}\n\n    [[cometbft]]\n    chain_id = \"{}\"\n    protocol = \"{}\"\n    key = \"{new_hex}\"\n    nodes = [\"tcp://NODE_ID@HOST:PORT\"]   # the second node's priv_validator_laddr\n",
                a.config.display(),
                a.chain_id,
                chain.protocol.name()
            );
            println!(
                "4. Restart the signer, then submit the rotation transaction with the new public key above. The old node keeps signing with {} until the chain's validator set holds the new key.",
                chain.key
            );
        }
    }
    println!(
        "5. Once the chain signs with the new key: `signer keys retire {} --reason \"rotated to {new_hex}\" --config {}` (it then refuses everything). Then, in the chain's [[cometbft]] entry, set key to the new key and remove next_key and switch_height (or, with a second node, remove the old node's entry).",
        chain.key,
        a.config.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The secret of `pk` from the key file that serves it (for `--move`).
fn secret_of(config: &Config, pk: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    for source in &config.keys {
        let secret = match source {
            KeySource::File {
                path,
                password_file,
            } => {
                let json = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let password = soft::keystore::read_password_file(password_file)
                    .map_err(|e| format!("{}: {e}", password_file.display()))?;
                let d = soft::keystore::decrypt(&json, &password)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                d.secret
            }
            KeySource::PrivValidatorKey { path } => {
                let json = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                soft::cometbft::priv_validator_secret(&json)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                    .1
            }
            _ => continue,
        };
        let Ok(key) = SecretKey::from_secret(Scheme::Ed25519, &secret) else {
            continue;
        };
        if key.public_key() == pk {
            return Ok(secret);
        }
    }
    Err(format!(
        "--move: no key file in the configuration holds 0x{} (a key already in a token or KMS cannot be moved out of it)",
        hex::encode(pk)
    )
    .into())
}

/// Writes a new file (0600), refusing to replace one.
fn write_new(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}
