//! The Ethereum Keymanager API (issue 18, part 5) against a real daemon over
//! mutual TLS: import with history (then a slashable message refused),
//! import survives a restart, duplicate, delete (then refused, the history
//! returned equal to what was recorded), the bearer-token and policy
//! refusals, a keystore whose public key is not its secret's. The keystore
//! is EIP-2335's own test vector.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;

use proto::v1 as pb;
use serde_json::{Value, json};
use tests::daemon::{Daemon, GVR, Setup, attestation, https, refusal_of};

/// EIP-2335's test keystore: its public key and password.
const VECTOR_PK: &str = "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07";
const VECTOR_PASSWORD: &str = "𝔱𝔢𝔰𝔱𝔭𝔞𝔰𝔰𝔴𝔬𝔯𝔡🔑";

fn vector_keystore() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/vectors/eip2335/pbkdf2.json"
    ))
    .unwrap()
}

/// The setup with the Keymanager API for `vc` and `node`, and a grant that
/// lets `vc` sign with the vector key once it is imported.
fn keymanager_setup() -> Setup {
    let setup = Setup::new();
    setup.enable_http("");
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    setup.write(
        "signer.toml",
        &format!(
            "{config}\n[keymanager]\nstore = \"data/keymanager\"\ntoken_dir = \"data/keymanager-tokens\"\n"
        ),
    );
    setup.write_policy(&setup.policy_with(&format!(
        "\n[key_groups.imported]\nkeys = [\"0x{VECTOR_PK}\"]\n\n[[grant]]\nclients = [\"vc\"]\noperations = [\"eth2.duties\"]\nkey_groups = [\"imported\"]\nnetworks = [\"test-eth\"]\n\n[keymanager]\nclients = [\"vc\", \"node\"]\n"
    )));
    setup
}

fn token(setup: &Setup, client: &str) -> String {
    std::fs::read_to_string(setup.path(&format!("data/keymanager-tokens/{client}.token")))
        .unwrap()
        .trim()
        .to_owned()
}

/// A Keymanager call as `cert` with `token`: (status, JSON).
fn call(
    setup: &Setup,
    d: &Daemon,
    cert: &str,
    token: Option<&str>,
    method: &str,
    body: &Value,
) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let body = if method == "GET" {
        String::new()
    } else {
        body.to_string()
    };
    let (status, text) = https(
        setup,
        d.http_api.unwrap(),
        Some(cert),
        method,
        "/eth/v1/keystores",
        &headers,
        &body,
    )
    .unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text:?}: {e}"));
    (status, v)
}

fn history(source: u64, target: u64, slot: u64) -> String {
    json!({
        "metadata": {"interchange_format_version": "5", "genesis_validators_root": GVR},
        "data": [{
            "pubkey": format!("0x{VECTOR_PK}"),
            "signed_blocks": [{"slot": slot.to_string()}],
            "signed_attestations": [{"source_epoch": source.to_string(), "target_epoch": target.to_string()}]
        }]
    })
    .to_string()
}

fn listed(v: &Value) -> Vec<(String, bool)> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["validating_pubkey"].as_str().unwrap().to_owned(),
                k["readonly"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_with_history_then_delete_returns_the_history_and_stops_the_key() {
    let setup = keymanager_setup();
    let d = setup.start();
    let vc = token(&setup, "vc");
    let pk = hex::decode(VECTOR_PK).unwrap();

    // Listed: the configured keys, readonly.
    let (status, v) = call(&setup, &d, "vc", Some(&vc), "GET", &json!({}));
    assert_eq!(status, 200, "{v}");
    assert!(listed(&v).contains(&(format!("0x{}", hex::encode(&setup.bls)), true)));

    // Import with its history.
    let body = json!({
        "keystores": [vector_keystore()],
        "passwords": [VECTOR_PASSWORD],
        "slashing_protection": history(5, 10, 100),
    });
    let (status, v) = call(&setup, &d, "vc", Some(&vc), "POST", &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"], json!([{"status": "imported"}]));
    let (_, v) = call(&setup, &d, "vc", Some(&vc), "GET", &json!({}));
    assert!(
        listed(&v).contains(&(format!("0x{VECTOR_PK}"), false)),
        "{v}"
    );

    // The imported history is in force: a second vote for target 10 is refused.
    let mut client = d.client(setup.client_tls("vc")).await;
    let r = client
        .sign(attestation(&pk, 5, 10, 9))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refusal_of(r), Some(pb::Reason::Slashable));
    let r = client
        .sign(attestation(&pk, 6, 11, 9))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refusal_of(r), None);

    // The same keystore again: a duplicate, nothing changes.
    let (status, v) = call(&setup, &d, "vc", Some(&vc), "POST", &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"][0]["status"], "duplicate");

    // Imported keys survive a restart.
    assert!(d.stop().success());
    let d = setup.start();
    let mut client = d.client(setup.client_tls("vc")).await;
    let (_, v) = call(&setup, &d, "vc", Some(&vc), "GET", &json!({}));
    assert!(
        listed(&v).contains(&(format!("0x{VECTOR_PK}"), false)),
        "{v}"
    );

    // Delete: deleted, and its history (imported + signed here) returned.
    let (status, v) = call(
        &setup,
        &d,
        "vc",
        Some(&vc),
        "DELETE",
        &json!({"pubkeys": [format!("0x{VECTOR_PK}")]}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"], json!([{"status": "deleted"}]));
    let exported: Value = serde_json::from_str(v["slashing_protection"].as_str().unwrap()).unwrap();
    assert_eq!(exported["metadata"]["genesis_validators_root"], GVR);
    let data = exported["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["pubkey"], format!("0x{VECTOR_PK}"));
    let attestations: BTreeSet<(String, String)> = data[0]["signed_attestations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["source_epoch"].as_str().unwrap().to_owned(),
                a["target_epoch"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [("5", "10"), ("6", "11")]
        .map(|(s, t)| (s.into(), t.into()))
        .into();
    assert_eq!(attestations, expected);
    let slots: Vec<&str> = data[0]["signed_blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["slot"].as_str().unwrap())
        .collect();
    assert_eq!(slots, ["100"]);

    // Deleted: refused at once, gone from the list and the store.
    let r = client
        .sign(attestation(&pk, 7, 12, 9))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refusal_of(r), Some(pb::Reason::UnknownKey));
    let (_, v) = call(&setup, &d, "vc", Some(&vc), "GET", &json!({}));
    assert!(
        !listed(&v)
            .iter()
            .any(|(k, _)| k == &format!("0x{VECTOR_PK}"))
    );
    assert_eq!(
        std::fs::read_dir(setup.path("data/keymanager"))
            .unwrap()
            .count(),
        0
    );
    // Asked again: not served, history still returned (not_active); a
    // configured key is readonly.
    let (_, v) = call(
        &setup,
        &d,
        "vc",
        Some(&vc),
        "DELETE",
        &json!({"pubkeys": [format!("0x{VECTOR_PK}"), format!("0x{}", hex::encode(&setup.bls))]}),
    );
    assert_eq!(v["data"][0]["status"], "not_active", "{v}");
    assert_eq!(v["data"][1]["status"], "error", "{v}");
    assert!(
        v["data"][1]["message"]
            .as_str()
            .unwrap()
            .contains("readonly")
    );

    // Every import and delete is in the audit log, with the client.
    let audit = std::fs::read_to_string(setup.path("data/audit.jsonl")).unwrap();
    for (request, outcome) in [
        ("keymanager.import", "imported"),
        ("keymanager.import", "duplicate"),
        ("keymanager.delete", "deleted"),
        ("keymanager.delete", "not_active"),
    ] {
        assert!(
            audit.lines().any(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_default();
                v["request"] == request && v["outcome"] == outcome && v["client"] == "vc"
            }),
            "no {request} {outcome} in the audit log"
        );
    }
    assert!(d.stop().success());
}

#[test]
fn tokens_and_policy_decide_who_may_manage_keys() {
    let setup = keymanager_setup();
    let d = setup.start();
    let vc = token(&setup, "vc");
    let node = token(&setup, "node");
    assert_ne!(vc, node);
    let mode = {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(setup.path("data/keymanager-tokens/vc.token"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode, 0o600);
    let get = |cert: &str, token: Option<&str>| call(&setup, &d, cert, token, "GET", &json!({}));

    let (status, v) = get("vc", None);
    assert_eq!(status, 401, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("missing bearer token"),
        "{v}"
    );
    let (status, v) = get("vc", Some("0000"));
    assert_eq!(
        (status, v["message"].as_str().unwrap()),
        (401, "wrong bearer token")
    );
    let (status, v) = get("vc", Some(&node));
    assert_eq!(status, 403, "{v}");
    assert_eq!(
        v["message"],
        "this bearer token is another client's, not vc's"
    );
    let (status, _) = get("node", Some(&node));
    assert_eq!(status, 200);

    // A client the policy no longer names, even with its own token.
    let policy = std::fs::read_to_string(setup.path("policy.toml")).unwrap();
    setup.write_policy(&policy.replace("clients = [\"vc\", \"node\"]", "clients = [\"node\"]"));
    let mark = d.log().len();
    d.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !d.log()[mark..].contains("policy reloaded") {
        assert!(std::time::Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (status, v) = get("vc", Some(&vc));
    assert_eq!(status, 403, "{v}");
    assert_eq!(
        v["message"],
        "not allowed by policy: client vc is not in the policy's [keymanager] clients"
    );

    // A keystore whose declared public key is another key's: 400, nothing imported.
    let mut ks: Value = serde_json::from_str(&vector_keystore()).unwrap();
    ks["pubkey"] = Value::String(hex::encode(&setup.bls));
    let body = json!({"keystores": [ks.to_string()], "passwords": [VECTOR_PASSWORD]});
    let (status, v) = call(&setup, &d, "node", Some(&node), "POST", &body);
    assert_eq!(status, 400, "{v}");
    let m = v["message"].as_str().unwrap();
    assert!(
        m.starts_with("keystores[0]: ") && m.ends_with("nothing was imported"),
        "{m}"
    );
    assert!(m.contains("public key"), "{m}");
    // A wrong password, and a request that does not add up: 400 likewise.
    let body = json!({"keystores": [vector_keystore()], "passwords": ["not it"]});
    let (status, v) = call(&setup, &d, "node", Some(&node), "POST", &body);
    assert_eq!(status, 400, "{v}");
    let body = json!({"keystores": [vector_keystore()], "passwords": []});
    let (status, v) = call(&setup, &d, "node", Some(&node), "POST", &body);
    assert_eq!(status, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("1 keystores and 0 passwords")
    );
    assert_eq!(
        std::fs::read_dir(setup.path("data/keymanager"))
            .unwrap()
            .count(),
        0
    );
    assert!(d.stop().success());
}

/// Lodestar's Keymanager client (`@lodestar/api` from npm, installed by
/// scripts/test into tests/lodestar) lists, imports with history and
/// deletes through the API, and sees a wrong token refused.
#[test]
fn lodestars_keymanager_client_imports_lists_and_deletes() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/lodestar"));
    assert!(
        dir.join("node_modules/@lodestar/api").exists(),
        "Lodestar's API client is missing: run `npm ci` in {} (scripts/test does)",
        dir.display()
    );
    let setup = keymanager_setup();
    let d = setup.start();
    let keystore = setup.path("vector-keystore.json");
    std::fs::write(&keystore, vector_keystore()).unwrap();
    let out = std::process::Command::new("node")
        .arg(dir.join("keymanager.mjs"))
        .current_dir(dir)
        .env(
            "KM_URL",
            format!("https://localhost:{}", d.http_api.unwrap().port()),
        )
        .env("KM_CA", setup.path("tls/ca.pem"))
        .env("KM_CERT", setup.path("tls/vc.pem"))
        .env("KM_KEY", setup.path("tls/vc.key"))
        .env("KM_TOKEN", token(&setup, "vc"))
        .env("KM_KEYSTORE", &keystore)
        .env("KM_PASSWORD", VECTOR_PASSWORD)
        .env("KM_PUBKEY", format!("0x{VECTOR_PK}"))
        .env("KM_HISTORY", history(5, 10, 100))
        .output()
        .unwrap_or_else(|e| {
            panic!("node cannot run ({e}): install Debian's nodejs (scripts/test does)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps: std::collections::BTreeMap<String, Value> = stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["step"].as_str().unwrap().to_owned(), v["value"].clone())
        })
        .collect();
    let has =
        |step: &str, readonly: bool| {
            steps[step].as_array().unwrap().iter().any(|k| {
                k["validatingPubkey"] == format!("0x{VECTOR_PK}") && k["readonly"] == readonly
            })
        };
    assert!(!has("list", false) && !has("list", true), "{stdout}");
    assert_eq!(steps["import"], json!([{"status": "imported"}]), "{stdout}");
    assert!(has("list-after-import", false), "{stdout}");
    assert_eq!(
        steps["delete"]["statuses"],
        json!([{"status": "deleted"}]),
        "{stdout}"
    );
    let history: Value =
        serde_json::from_str(steps["delete"]["slashingProtection"].as_str().unwrap()).unwrap();
    assert_eq!(history["data"][0]["pubkey"], format!("0x{VECTOR_PK}"));
    assert_eq!(
        history["data"][0]["signed_attestations"][0]["target_epoch"],
        "10"
    );
    assert!(!has("list-after-delete", false), "{stdout}");
    assert_eq!(
        steps["wrong-token"],
        json!({"ok": false, "status": 401}),
        "{stdout}"
    );
    assert!(d.stop().success());
}
