//! `signer keys disable|enable|retire KEY --reason TEXT --config FILE`: take
//! a key out of service (for a validator that is exiting, or a key suspected
//! compromised), put it back, or retire it for good. The state is kept in
//! the slashing database, so every instance sharing it refuses the key
//! (`KEY_DISABLED`) within about a second; each records the change in its
//! audit log, and so does this command when no signer holds the local log.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use signer::audit::{AuditError, AuditLog};
use signer::pipeline::lifecycle::{Plan, audit_entry, plan};
use slashing_db::{KeyState, Lifecycle};

type Error = Box<dyn std::error::Error>;

#[derive(Debug, Args)]
pub struct StateArgs {
    /// The key's public key: hex (BLS, 48 bytes), or for CometBFT keys hex,
    /// base64 or what `show-validator` prints.
    key: String,
    /// Why (kept in the slashing database and the audit logs).
    #[arg(long)]
    reason: String,
    /// The daemon's configuration (its slashing database and audit log).
    #[arg(long)]
    config: PathBuf,
    /// Say what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
}

fn parse_key(text: &str) -> Result<Vec<u8>, String> {
    let unprefixed = text.trim().strip_prefix("0x").unwrap_or(text.trim());
    if unprefixed.len() == 96
        && let Ok(b) = hex::decode(unprefixed)
    {
        return blst::min_pk::PublicKey::key_validate(&b)
            .map(|_| b)
            .map_err(|_| "48 bytes of hex, but not a BLS public key".to_owned());
    }
    super::cometbft::parse_key(text).map_err(|e| {
        format!("{e} (a BLS key is 48 bytes: 96 hex digits; an Ed25519 key 32 bytes; secp256k1 33)")
    })
}

pub(crate) fn describe(s: &KeyState) -> String {
    let what = match s.state {
        Lifecycle::Enabled => "in service (enabled",
        Lifecycle::Disabled => "disabled (",
        Lifecycle::Retired => "retired (",
    };
    let sep = if s.state == Lifecycle::Enabled {
        " "
    } else {
        ""
    };
    format!("{what}{sep}{} by {}: {})", s.at, s.by, s.reason)
}

pub fn run(state: Lifecycle, a: StateArgs) -> Result<ExitCode, Error> {
    let key = parse_key(&a.key).map_err(|e| format!("KEY: {e}"))?;
    let reason = a.reason.trim();
    if reason.len() < 10 {
        return Err("--reason: say why, for the audit log (at least 10 characters)".into());
    }
    let config = signer::config::Config::load(&a.config)?;
    let db = match signer::storage::open(&config.slashing, None) {
        Ok(db) => db,
        Err(e) => {
            // SQLite held by a serving signer: it makes the change itself.
            if let (None, Some(path)) = (&config.slashing.postgres, &config.slashing.database) {
                let token = signer::server::control::token_file(path);
                if token.exists() {
                    return through_daemon(state, &a, &key, reason, &token);
                }
            }
            return Err(format!(
                "slashing database: {e}\n(no running signer announced itself beside it either: is one starting, or was it killed? then retry, or start it)"
            )
            .into());
        }
    };
    let hexkey = hex::encode(&key);
    let before = db
        .key_states()?
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, s)| s);
    if let Some(done) = before_change(&hexkey, state, before.as_ref(), reason, a.dry_run) {
        return done;
    }
    let new = KeyState {
        state,
        reason: reason.to_owned(),
        by: super::audit::operator(),
        at: signer::audit::now(),
    };
    if let Err(e) = db.set_key_state(&key, &new)? {
        return Err(format!("key 0x{hexkey}: {e}").into());
    }
    changed(&hexkey, before.as_ref(), &new);
    // The audit record: here if no signer holds the log, else by the
    // signer(s), which see the change within a second.
    let log_file = config.audit.as_ref().map(|a| a.file.clone());
    match log_file {
        Some(f) if f.exists() => match AuditLog::open(&f) {
            Ok(mut log) => {
                let r = log.append(audit_entry(&key, &new, "cli"))?;
                log.sync()?;
                println!("  audit record {} in {}", r.seq, f.display());
            }
            Err(AuditError::InUse { .. }) => println!(
                "  the running signer refuses it within a second and records the change in {}",
                f.display()
            ),
            Err(e) => {
                return Err(
                    format!("the state is set, but the audit record was not written: {e}").into(),
                );
            }
        },
        Some(f) => println!(
            "  no audit log at {} yet: the change is recorded in the slashing database only",
            f.display()
        ),
        None => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// The change made by the running signer that holds the SQLite database
/// (`POST /keys/state` on its metrics listener, with the token it wrote
/// beside the database).
fn through_daemon(
    state: Lifecycle,
    a: &StateArgs,
    key: &[u8],
    reason: &str,
    token_file: &std::path::Path,
) -> Result<ExitCode, Error> {
    let body = serde_json::json!({
        "key": hex::encode(key),
        "state": state,
        "reason": reason,
        "by": super::audit::operator(),
        "dry_run": a.dry_run,
    });
    let (status, text, v) = ask_daemon(token_file, &body)?;
    if let Some(e) = v.get("error").and_then(serde_json::Value::as_str) {
        return Err(format!("the running signer refused the change ({status}): {e}").into());
    }
    let field = |name: &str| v.get(name).cloned().unwrap_or_default();
    let before: Option<KeyState> = serde_json::from_value(field("before"))?;
    let after: KeyState = serde_json::from_value(field("after"))?;
    let hexkey = hex::encode(key);
    if let Some(done) = before_change(&hexkey, state, before.as_ref(), reason, a.dry_run) {
        return done;
    }
    if v.get("changed").and_then(serde_json::Value::as_bool) != Some(true) {
        return Err(format!(
            "the running signer made no change (it answered {})",
            text.trim()
        )
        .into());
    }
    changed(&hexkey, before.as_ref(), &after);
    println!(
        "  made by the running signer, which holds the SQLite database: in force now, recorded in its audit log"
    );
    Ok(ExitCode::SUCCESS)
}

/// `POST /keys/state` with `body` to the running signer that holds the
/// SQLite database, with the token it wrote beside it: (status, text, JSON).
fn ask_daemon(
    token_file: &std::path::Path,
    body: &serde_json::Value,
) -> Result<(u16, String, serde_json::Value), Error> {
    let control: serde_json::Value = std::fs::read_to_string(token_file)
        .map_err(|e| {
            format!(
                "the running signer holds the database; its control token {} cannot be read ({e}): run this as the signer's user",
                token_file.display()
            )
        })
        .and_then(|t| serde_json::from_str(&t).map_err(|e| format!("{}: {e}", token_file.display())))?;
    let (Some(token), Some(addr)) = (
        control.get("token").and_then(serde_json::Value::as_str),
        control
            .get("metrics")
            .and_then(serde_json::Value::as_str)
            .and_then(|m| m.parse::<std::net::SocketAddr>().ok()),
    ) else {
        return Err(format!("{}: not a control token file", token_file.display()).into());
    };
    // A wildcard listener is reached on loopback.
    let addr = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    };
    let auth = format!("Bearer {token}");
    let (status, text) = super::metrics_http::exchange_with(
        addr,
        "POST",
        "/keys/state",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body.to_string(),
    )?;
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .map_err(|_| format!("the signer at {addr} answered {status}: {}", text.trim()))?;
    Ok((status, text, v))
}

/// The state the slashing database holds for `key` (`None`: never changed,
/// in service): read from the database, or — SQLite held by a serving
/// signer — asked of that signer (a dry run of `enable`, which changes
/// nothing).
pub(crate) fn state_of(
    config: &signer::config::Config,
    key: &[u8],
) -> Result<Option<KeyState>, Error> {
    match signer::storage::open(&config.slashing, None) {
        Ok(db) => Ok(db
            .key_states()?
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| s)),
        Err(e) => {
            let token = match (&config.slashing.postgres, &config.slashing.database) {
                (None, Some(path)) => Some(signer::server::control::token_file(path)),
                _ => None,
            };
            let Some(token) = token.filter(|t| t.exists()) else {
                return Err(format!(
                    "slashing database: {e}\n(no running signer announced itself beside it either: is one starting, or was it killed? then retry, or start it)"
                )
                .into());
            };
            let body = serde_json::json!({
                "key": hex::encode(key),
                "state": Lifecycle::Enabled,
                "reason": "read the key state (signer keys rotate)",
                "by": super::audit::operator(),
                "dry_run": true,
            });
            let (status, _, v) = ask_daemon(&token, &body)?;
            if let Some(e) = v.get("error").and_then(serde_json::Value::as_str) {
                return Err(format!("the running signer could not say ({status}): {e}").into());
            }
            Ok(serde_json::from_value(
                v.get("before").cloned().unwrap_or_default(),
            )?)
        }
    }
}

/// What is said, and the exit, when nothing is to be changed (retired,
/// already in that state, a dry run); `None` when the change goes ahead.
fn before_change(
    hexkey: &str,
    state: Lifecycle,
    before: Option<&KeyState>,
    reason: &str,
    dry_run: bool,
) -> Option<Result<ExitCode, Error>> {
    let now = describe_before(before);
    match plan(state, before) {
        Plan::Final => Some(Err(
            format!("key 0x{hexkey}: {now}; retirement is final").into()
        )),
        Plan::Unchanged => {
            println!("key 0x{hexkey}: {now}; nothing to change");
            Some(Ok(ExitCode::SUCCESS))
        }
        Plan::Change if dry_run => {
            println!(
                "key 0x{hexkey}: {now}\n  would {}: {reason}\n  (dry run: nothing changed)",
                verb(state)
            );
            Some(Ok(ExitCode::SUCCESS))
        }
        Plan::Change => None,
    }
}

/// What is said once the state changed.
fn changed(hexkey: &str, before: Option<&KeyState>, now: &KeyState) {
    println!(
        "key 0x{hexkey}: was {}\n  now {}",
        describe_before(before),
        describe(now)
    );
    println!(
        "  (whether this signer holds the key is not checked: a key it does not hold refuses anyway)"
    );
}

fn verb(state: Lifecycle) -> &'static str {
    match state {
        Lifecycle::Enabled => "enable it",
        Lifecycle::Disabled => "disable it",
        Lifecycle::Retired => "retire it for good (it can never sign again through this database)",
    }
}

fn describe_before(s: Option<&KeyState>) -> String {
    s.map_or_else(|| "in service".to_owned(), describe)
}
