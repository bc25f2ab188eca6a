//! The Ethereum Keymanager API's keystore operations, as the daemon does
//! them (`/eth/v1/keystores`; the frontend is `api::keymanager`).
//!
//! - **Who.** A client the policy's `[keymanager]` names, over mutual TLS,
//!   with its own bearer token (`[keymanager] token_dir`/`<client>.token`).
//!   No token: 401; a token that is not any client's: 401; another
//!   client's token: 403; a client the policy does not name: 403.
//! - **Import** is all or nothing: every keystore is decrypted (on every
//!   core) and its declared public key checked against its secret, and the
//!   EIP-3076 history is merged into the slashing database, before any key
//!   is stored; a keystore that does not open or does not match, or a
//!   history that does not import, refuses the whole request (400) with the
//!   item named. Then the keystores and their passwords are written to the
//!   store (a Web3Signer key directory, files 0600, the key-configuration
//!   file last) and the keys reloaded. A key already served is `duplicate`.
//! - **Delete** takes the store's key-configuration file away and reloads
//!   keys, then waits until no batch still holds the old key set, so that
//!   nothing more can be signed with the key, and only then exports its
//!   history: the history returned is complete. A key served from
//!   `signer.toml`'s own sources is `error` (readonly); a key not served
//!   with history in the database is `not_active` (its history returned).
//!
//! Every import and delete is an audit record (`keymanager.import`,
//! `keymanager.delete`) naming the client.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::Shared;
use crate::api::web3signer::KeymanagerOp as Operation;
use crate::audit::Entry;
use crate::backend::soft::keystore;
use crate::config;
use crate::policy::ClientId;

fn error(code: u16, message: impl Into<String>) -> (u16, Value) {
    (code, json!({"code": code, "message": message.into()}))
}

/// The token file of `client`.
fn token_file(dir: &Path, client: &str) -> PathBuf {
    dir.join(format!("{client}.token"))
}

/// Makes `client`'s token if it has none: 32 random bytes, hex, 0600.
fn ensure_token(dir: &Path, client: &str) -> Result<bool, String> {
    let file = token_file(dir, client);
    if file.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| e.to_string())?;
    let text = Zeroizing::new(format!("{}\n", hex::encode(raw)));
    let tmp = crate::secret_file::beside(&file, ".tmp");
    crate::secret_file::replace(&file, &tmp, text.as_bytes())?;
    Ok(true)
}

/// At start: the store exists, and every client the policy allows has a
/// token (logged where, never what).
pub(super) fn prepare(
    config: &config::Keymanager,
    policy: &crate::policy::Policy,
) -> Result<(), String> {
    std::fs::create_dir_all(&config.store)
        .map_err(|e| format!("keymanager store {}: {e}", config.store.display()))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(&config.store, std::fs::Permissions::from_mode(0o700));
    }
    for client in policy.keymanager_clients() {
        if ensure_token(&config.token_dir, client)? {
            tracing::info!(
                client,
                file = %token_file(&config.token_dir, client).display(),
                "keymanager: made a bearer token for this client; give it to the client"
            );
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    keystores: Vec<String>,
    passwords: Vec<String>,
    #[serde(default)]
    slashing_protection: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    pubkeys: Vec<String>,
}

/// Most keystores in one import (each costs a KDF run).
const MAX_IMPORT: usize = 1000;

impl Shared {
    /// One Keymanager request from `client` (mutual TLS already checked),
    /// with its `Authorization` header: (HTTP status, JSON answer).
    /// Blocking: an import runs the KDF, a delete waits for batches.
    pub fn keymanager(
        &self,
        op: Operation,
        client: &ClientId,
        authorization: Option<&[u8]>,
        body: &[u8],
    ) -> (u16, Value) {
        let Some(config) = &self.keymanager else {
            return error(
                404,
                "the Keymanager API is not configured ([keymanager] in signer.toml)",
            );
        };
        if let Err(e) = self.keymanager_auth(config, client, authorization) {
            tracing::info!(client = %client, error = %e.1, "keymanager: refused");
            return error(e.0, e.1);
        }
        match op {
            Operation::List => (200, self.keymanager_list(config)),
            Operation::Import => self.keymanager_import(config, client, body),
            Operation::Delete => self.keymanager_delete(config, client, body),
        }
    }

    fn keymanager_auth(
        &self,
        config: &config::Keymanager,
        client: &ClientId,
        authorization: Option<&[u8]>,
    ) -> Result<(), (u16, String)> {
        let policy = self.pipeline.policy();
        let given = authorization
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(given) = given.filter(|g| !g.is_empty()) else {
            return Err((
                401,
                "missing bearer token: send Authorization: Bearer <the client's token from [keymanager] token_dir>".into(),
            ));
        };
        let matches = |name: &str| {
            crate::secret_file::read_password_file(&token_file(&config.token_dir, name)).is_ok_and(
                |t| crate::secret_file::constant_time_eq(t.trim().as_bytes(), given.as_bytes()),
            )
        };
        let allowed = policy.keymanager_allows(client.as_str());
        if allowed && matches(client.as_str()) {
            return Ok(());
        }
        if policy
            .keymanager_clients()
            .any(|other| other != client.as_str() && matches(other))
        {
            return Err((
                403,
                format!("this bearer token is another client's, not {client}'s"),
            ));
        }
        if !allowed {
            return Err((
                403,
                format!(
                    "not allowed by policy: client {client} is not in the policy's [keymanager] clients"
                ),
            ));
        }
        if let Ok(true) = ensure_token(&config.token_dir, client.as_str()) {
            return Err((
                401,
                format!(
                    "client {client} had no token; one was just made in {}: send it as the bearer token",
                    token_file(&config.token_dir, client.as_str()).display()
                ),
            ));
        }
        Err((401, "wrong bearer token".into()))
    }

    /// Public keys (hex, no 0x) whose keys the store holds.
    fn managed(config: &config::Keymanager) -> BTreeSet<String> {
        std::fs::read_dir(&config.store)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let stem = name.strip_suffix(".yaml")?.to_owned();
                (stem.len() == 96 && hex::decode(&stem).is_ok()).then_some(stem)
            })
            .collect()
    }

    fn keymanager_list(&self, config: &config::Keymanager) -> Value {
        let managed = Self::managed(config);
        let keys = self.pipeline.keys();
        let mut data: Vec<(String, bool)> = keys
            .entries()
            .filter(|(pk, _)| pk.len() == 48)
            .map(|(pk, _)| {
                let h = hex::encode(pk);
                let readonly = !managed.contains(&h);
                (h, readonly)
            })
            .collect();
        data.sort();
        json!({"data": data.into_iter().map(|(h, readonly)| json!({
            "validating_pubkey": format!("0x{h}"),
            "derivation_path": "",
            "readonly": readonly,
        })).collect::<Vec<_>>()})
    }

    fn keymanager_import(
        &self,
        config: &config::Keymanager,
        client: &ClientId,
        body: &[u8],
    ) -> (u16, Value) {
        let req: ImportBody = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return error(400, format!("request body: {e}")),
        };
        if req.keystores.len() != req.passwords.len() {
            return error(
                400,
                format!(
                    "{} keystores and {} passwords: give one password per keystore, in order",
                    req.keystores.len(),
                    req.passwords.len()
                ),
            );
        }
        if req.keystores.len() > MAX_IMPORT {
            return error(
                400,
                format!("at most {MAX_IMPORT} keystores per request (each costs a KDF run)"),
            );
        }
        // Every keystore opened and checked before anything is stored.
        let jobs: Vec<(Vec<u8>, Zeroizing<String>)> = req
            .keystores
            .iter()
            .zip(&req.passwords)
            .map(|(k, p)| (k.as_bytes().to_vec(), Zeroizing::new(p.clone())))
            .collect();
        let mut opened = Vec::with_capacity(jobs.len());
        {
            let Ok(mut memo) = self.reloads.memo.lock() else {
                return error(500, "internal state poisoned; restart the signer");
            };
            memo.warm(&jobs, super::keys::kdf_threads(), &|_| {});
            for (i, (json, password)) in jobs.iter().enumerate() {
                match keystore::load_bls_with(&mut memo, json, password) {
                    Ok(key) => opened.push(key.public_key().to_bytes()),
                    Err(e) => {
                        return error(400, format!("keystores[{i}]: {e}; nothing was imported"));
                    }
                }
            }
        }
        // The history first: a key must never sign before it is in.
        if let Some(text) = &req.slashing_protection {
            let file: slashing_db::Interchange = match serde_json::from_str(text) {
                Ok(f) => f,
                Err(e) => {
                    return error(
                        400,
                        format!(
                            "slashing_protection: not an EIP-3076 interchange: {e}; nothing was imported"
                        ),
                    );
                }
            };
            match self.pipeline.db().import_interchange(file) {
                Ok(s) => tracing::info!(
                    client = %client,
                    validators = s.validators,
                    blocks = s.blocks,
                    attestations = s.attestations,
                    "keymanager: slashing protection history merged"
                ),
                Err(e) => {
                    return error(
                        400,
                        format!("slashing_protection: {e}; nothing was imported"),
                    );
                }
            }
        }
        let served = self.pipeline.keys();
        let mut statuses: Vec<Value> = Vec::with_capacity(opened.len());
        let mut seen = BTreeSet::new();
        let mut new = Vec::new();
        for ((pk, keystore_json), password) in opened.iter().zip(&req.keystores).zip(&req.passwords)
        {
            let h = hex::encode(pk);
            if served.contains(pk) || !seen.insert(h.clone()) {
                statuses.push(
                    json!({"status": "duplicate", "message": format!("0x{h} is already served")}),
                );
                continue;
            }
            if let Err(e) = store_key(config, &h, keystore_json, password) {
                statuses.push(json!({"status": "error", "message": format!("storing 0x{h}: {e}")}));
                continue;
            }
            new.push(pk);
            statuses.push(json!({"status": "imported"}));
        }
        drop(served);
        if !new.is_empty() {
            if let Err(e) = self.reload_keys_waiting() {
                return error(500, format!("stored, but the key reload failed: {e}"));
            }
            let keys = self.pipeline.keys();
            for (pk, status) in opened.iter().zip(statuses.iter_mut()) {
                if new.contains(&pk) && !keys.contains(pk) {
                    *status = json!({"status": "error", "message": "stored, but did not load (see the signer's log)"});
                }
            }
        }
        let entries = opened
            .iter()
            .zip(&statuses)
            .map(|(pk, s)| Entry {
                client: client.as_str().to_owned(),
                frontend: Some("keymanager".into()),
                key: hex::encode(pk),
                request: "keymanager.import".into(),
                position: None,
                outcome: s["status"].as_str().unwrap_or("error").to_owned(),
                note: s["message"].as_str().map(str::to_owned),
            })
            .collect();
        self.pipeline.audit_events(entries);
        (200, json!({"data": statuses}))
    }

    fn keymanager_delete(
        &self,
        config: &config::Keymanager,
        client: &ClientId,
        body: &[u8],
    ) -> (u16, Value) {
        let req: DeleteBody = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return error(400, format!("request body: {e}")),
        };
        let mut keys = Vec::with_capacity(req.pubkeys.len());
        for (i, p) in req.pubkeys.iter().enumerate() {
            match p
                .strip_prefix("0x")
                .and_then(|h| hex::decode(h).ok())
                .filter(|b| b.len() == 48)
            {
                Some(b) => keys.push(b),
                None => {
                    return error(
                        400,
                        format!("pubkeys[{i}]: expected 0x and 96 hex digits; nothing was deleted"),
                    );
                }
            }
        }
        let managed = Self::managed(config);
        let served = self.pipeline.keys();
        // What to say for each, and which store files go.
        let mut statuses: Vec<(&'static str, Option<String>)> = Vec::new();
        let mut removed = Vec::new();
        for pk in &keys {
            let h = hex::encode(pk);
            if managed.contains(&h) {
                match std::fs::remove_file(config.store.join(format!("{h}.yaml"))) {
                    Ok(()) => {
                        removed.push(h);
                        statuses.push(("deleted", None));
                    }
                    Err(e) => {
                        statuses.push(("error", Some(format!("removing it from the store: {e}"))))
                    }
                }
            } else if served.contains(pk) {
                statuses.push((
                    "error",
                    Some("served from signer.toml's key sources, not imported through this API (readonly): remove it there".into()),
                ));
            } else {
                statuses.push(("not_found", None));
            }
        }
        if !removed.is_empty() {
            if let Err(e) = self.reload_keys_waiting() {
                return error(
                    500,
                    format!("removed from the store, but the key reload failed: {e}"),
                );
            }
            // Batches that started with the old keys finish first: after
            // this, nothing can sign with a deleted key, and the history
            // exported below is all there is.
            let deadline = Instant::now() + Duration::from_secs(30);
            while Arc::strong_count(&served) > 1 {
                if Instant::now() > deadline {
                    return error(
                        503,
                        "deleted keys stopped taking requests, but a batch that started before still runs after 30 s; ask again for the history",
                    );
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        drop(served);
        // The history of every key asked for (deleted, or not served).
        let export = match self.pipeline.db().export_interchange() {
            Ok(mut file) => {
                let asked: BTreeSet<&[u8]> = keys.iter().map(Vec::as_slice).collect();
                file.data.retain(|v| asked.contains(v.pubkey.as_bytes()));
                file
            }
            Err(e) => {
                return error(
                    500,
                    format!("slashing database: exporting the history: {e}"),
                );
            }
        };
        let with_history: BTreeSet<Vec<u8>> = export
            .data
            .iter()
            .map(|v| v.pubkey.as_bytes().to_vec())
            .collect();
        for (status, pk) in statuses.iter_mut().zip(&keys) {
            if status.0 == "not_found" && with_history.contains(pk) {
                *status = (
                    "not_active",
                    Some("not served here; its slashing protection history is returned".into()),
                );
            }
        }
        for h in &removed {
            for ext in ["json", "pass"] {
                let _ = std::fs::remove_file(config.store.join(format!("{h}.{ext}")));
            }
        }
        let entries = keys
            .iter()
            .zip(&statuses)
            .map(|(pk, (status, message))| Entry {
                client: client.as_str().to_owned(),
                frontend: Some("keymanager".into()),
                key: hex::encode(pk),
                request: "keymanager.delete".into(),
                position: None,
                outcome: (*status).to_owned(),
                note: message.clone(),
            })
            .collect();
        self.pipeline.audit_events(entries);
        let data: Vec<Value> = statuses
            .into_iter()
            .map(|(status, message)| match message {
                Some(m) => json!({"status": status, "message": m}),
                None => json!({"status": status}),
            })
            .collect();
        let history = serde_json::to_string(&export).unwrap_or_default();
        (200, json!({"data": data, "slashing_protection": history}))
    }
}

/// Writes one imported key into the store: keystore and password (0600),
/// then the key-configuration file that makes it a key source (last: a
/// crash before it leaves files that load nothing).
fn store_key(
    config: &config::Keymanager,
    hex_pk: &str,
    keystore_json: &str,
    password: &str,
) -> Result<(), String> {
    let put = |name: String, bytes: &[u8]| {
        let path = config.store.join(&name);
        let tmp = crate::secret_file::beside(&path, ".tmp");
        crate::secret_file::replace(&path, &tmp, bytes)
    };
    put(format!("{hex_pk}.json"), keystore_json.as_bytes())?;
    put(format!("{hex_pk}.pass"), password.as_bytes())?;
    put(
        format!("{hex_pk}.yaml"),
        format!(
            "type: \"file-keystore\"\nkeyType: \"BLS\"\nkeystoreFile: \"{hex_pk}.json\"\nkeystorePasswordFile: \"{hex_pk}.pass\"\n"
        )
        .as_bytes(),
    )
}
