//! The Web3Signer-compatible HTTP API end to end: a real daemon, real HTTPS
//! with client certificates, requests as the API specification shapes them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{Value, json};
use tests::daemon::{
    BLS_SECRET, Daemon, GVR, Setup, core_attestation_signature, https, proc_status_kib,
};

const JSON: &[(&str, &str)] = &[("Content-Type", "application/json")];

fn examples() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/vectors/web3signer/sign_examples.json"
    ))
    .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["examples"].as_array().unwrap().clone()
}

fn sign_path(key: &[u8]) -> String {
    format!("/api/v1/eth2/sign/0x{}", hex::encode(key))
}

fn post(setup: &Setup, d: &Daemon, key: &[u8], body: &Value) -> (u16, String) {
    https(
        setup,
        d.http_api.unwrap(),
        Some("vc"),
        "POST",
        &sign_path(key),
        JSON,
        &body.to_string(),
    )
    .unwrap()
}

fn fork_info() -> Value {
    json!({
        "fork": {"previous_version": "0x00000001", "current_version": "0x00000001", "epoch": "0"},
        "genesis_validators_root": GVR,
    })
}

fn attestation(source: u64, target: u64, block: u8) -> Value {
    json!({
        "type": "ATTESTATION",
        "fork_info": fork_info(),
        "attestation": {
            "slot": (target * 8).to_string(), "index": "0",
            "beacon_block_root": format!("0x{}", hex::encode([block; 32])),
            "source": {"epoch": source.to_string(), "root": format!("0x{}", "00".repeat(32))},
            "target": {"epoch": target.to_string(), "root": format!("0x{}", "00".repeat(32))},
        },
    })
}

fn block(slot: u64, body_root: u8) -> Value {
    json!({
        "type": "BLOCK_V2",
        "fork_info": fork_info(),
        "beacon_block": {"version": "DENEB", "block_header": {
            "slot": slot.to_string(), "proposer_index": "3",
            "parent_root": format!("0x{}", "11".repeat(32)),
            "state_root": format!("0x{}", "22".repeat(32)),
            "body_root": format!("0x{}", hex::encode([body_root; 32])),
        }},
    })
}

/// Everything granted that the examples need (exits and deposits too).
fn grant_all(setup: &Setup) {
    setup.write_policy(&setup.policy_with(
        r#"
[[grant]]
clients = ["vc"]
operations = ["eth2.voluntary_exit", "eth2.deposit"]
key_groups = ["validators"]
networks = ["test-eth"]
"#,
    ));
}

#[test]
fn every_reproducible_specification_example_signs_as_expected_in_json_and_text() {
    let setup = Setup::new();
    setup.enable_http("");
    grant_all(&setup);
    let mut daemon: Option<Daemon> = None;
    let mut checked = 0;
    for e in examples().iter().filter(|e| e["reproducible"] == true) {
        let name = e["name"].as_str().unwrap();
        let request = &e["request"];
        // Every block example is at slot 0: a fresh database each.
        if request["type"].as_str().unwrap().starts_with("BLOCK") || daemon.is_none() {
            if let Some(d) = daemon.take() {
                assert!(d.stop().success());
            }
            let _ = std::fs::remove_dir_all(setup.path("data"));
            std::fs::create_dir_all(setup.path("data")).unwrap();
            daemon = Some(setup.start());
        }
        let d = daemon.as_ref().unwrap();
        let expected = e["expected_signature"].as_str().unwrap();
        let (status, body) = post(&setup, d, &setup.bls, request);
        assert_eq!(status, 200, "{name}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v, json!({ "signature": expected }), "{name}");
        // The same request asking for text: the same signature, as text.
        let (status, body) = https(
            &setup,
            d.http_api.unwrap(),
            Some("vc"),
            "POST",
            &sign_path(&setup.bls),
            &[
                ("Content-Type", "application/json"),
                ("Accept", "text/plain"),
            ],
            &request.to_string(),
        )
        .unwrap();
        assert_eq!((status, body.as_str()), (200, expected), "{name} (text)");
        checked += 1;
    }
    println!("{checked} specification examples signed as expected, in JSON and text");
    assert_eq!(checked, 23);
}

#[test]
fn slashing_policy_and_bad_requests_get_the_specified_status_codes() {
    let setup = Setup::new();
    setup.enable_http("");
    let d = setup.start();
    let pk = setup.bls.clone();

    let (status, first) = post(&setup, &d, &pk, &block(100, 1));
    assert_eq!(status, 200, "{first}");
    // The identical block again: 200, the same signature.
    assert_eq!(post(&setup, &d, &pk, &block(100, 1)), (200, first));
    // Another block at that slot: 412.
    let (status, body) = post(&setup, &d, &pk, &block(100, 2));
    assert_eq!(status, 412, "{body}");
    assert!(body.contains("double block proposal"), "{body}");

    assert_eq!(post(&setup, &d, &pk, &attestation(5, 6, 1)).0, 200);
    // Surrounding the signed 5→6: 412.
    let (status, body) = post(&setup, &d, &pk, &attestation(4, 7, 1));
    assert_eq!(status, 412, "{body}");
    assert!(body.contains("surround"), "{body}");

    // A signingRoot that is not the message's: 400.
    let mut lying = attestation(8, 9, 1);
    lying["signingRoot"] = json!(format!("0x{}", "ab".repeat(32)));
    let (status, body) = post(&setup, &d, &pk, &lying);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("signing root mismatch"), "{body}");
    // Malformed JSON, an unknown type: 400.
    assert_eq!(post(&setup, &d, &pk, &json!("not an object")).0, 400);
    assert_eq!(post(&setup, &d, &pk, &json!({"type": "NOPE"})).0, 400);
    // A repeated key: 400, whichever copy a proxy in front would have read.
    let twice =
        attestation(12, 13, 1)
            .to_string()
            .replacen('{', r#"{"type":"AGGREGATION_SLOT","#, 1);
    let (status, body) = https(
        &setup,
        d.http_api.unwrap(),
        Some("vc"),
        "POST",
        &sign_path(&pk),
        JSON,
        &twice,
    )
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains(r#"malformed request: duplicate key "type" at line 1"#),
        "{body}"
    );
    // A slot slashing history cannot store: 400 (was 503, an outage to clients).
    let (status, body) = post(&setup, &d, &pk, &block(1 << 63, 1));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("slot 9223372036854775808 is out of the storable range"),
        "{body}"
    );
    // A loaded key outside the caller's policy: 403. An unknown key: 404.
    assert_eq!(post(&setup, &d, &setup.bls2, &attestation(1, 2, 1)).0, 403);
    assert_eq!(post(&setup, &d, &[0xaa; 48], &attestation(1, 2, 1)).0, 404);
    // An identifier that is not a public key: 400.
    let (status, _) = https(
        &setup,
        d.http_api.unwrap(),
        Some("vc"),
        "POST",
        "/api/v1/eth2/sign/0x1234",
        JSON,
        "{}",
    )
    .unwrap();
    assert_eq!(status, 400);

    // What real clients send besides: snake_case signing_root, extra fields, upper-case hex.
    let mut real = attestation(10, 11, 3);
    real["unknown_extra"] = json!({"ignored": true});
    let upper = format!("/api/v1/eth2/sign/0x{}", hex::encode_upper(&pk));
    let (status, sig) = https(
        &setup,
        d.http_api.unwrap(),
        Some("vc"),
        "POST",
        &upper,
        &[],
        &real.to_string(),
    )
    .unwrap();
    assert_eq!(status, 200, "{sig}");

    // The other endpoints.
    let get = |path: &str| {
        https(
            &setup,
            d.http_api.unwrap(),
            Some("vc"),
            "GET",
            path,
            &[],
            "",
        )
        .unwrap()
    };
    assert_eq!(get("/upcheck"), (200, "OK".to_owned()));
    let (status, keys) = get("/api/v1/eth2/publicKeys");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&keys).unwrap(),
        json!([format!("0x{}", hex::encode(&pk))])
    );
    let (status, health) = get("/healthcheck");
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        (&health["status"], &health["outcome"]),
        (&json!("UP"), &json!("UP"))
    );
    assert_eq!(get("/api/v1/eth2/highWatermark"), (200, "{}".to_owned()));
    assert_eq!(
        serde_json::from_str::<Value>(&get("/reload").1).unwrap(),
        json!({"status": "idle"})
    );

    assert_eq!(
        d.metric(
            r#"signer_requests_total{frontend="http",operation="eth2.block",outcome="slashable"}"#
        ),
        1.0
    );
    assert!(d.stop().success());
}

#[test]
fn thirty_two_conflicting_requests_over_separate_https_connections_yield_one_200() {
    let setup = Setup::new();
    setup.enable_http("");
    let d = setup.start();
    let barrier = std::sync::Barrier::new(32);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32u8)
            .map(|i| {
                let (setup, d, barrier) = (&setup, &d, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    post(setup, d, &setup.bls, &attestation(0, 3, i)).0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 412).count(),
        31,
        "{statuses:?}"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn reload_and_wait(setup: &Setup, d: &Daemon) -> Value {
    let (status, body) = https(
        setup,
        d.http_api.unwrap(),
        Some("vc"),
        "POST",
        "/reload",
        &[],
        "",
    )
    .unwrap();
    assert_eq!(status, 202, "{body}");
    loop {
        let (_, body) = https(
            setup,
            d.http_api.unwrap(),
            Some("vc"),
            "GET",
            "/reload",
            &[],
            "",
        )
        .unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        if v["status"] != "running" {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

#[test]
fn keys_added_or_removed_on_disk_follow_a_reload_and_reloads_do_not_leak() {
    // A fixed, valid BLS secret for the key that comes and goes.
    let secret = "0x47b8192d77bf871b62e87859d653922725724a5c031afeabc60bcef5ff665138";
    let key =
        signer::crypto::bls::BlsSecretKey::from_bytes(&hex::decode(&secret[2..]).unwrap()).unwrap();
    let pk = key.public_key().to_bytes().to_vec();
    let setup = Setup::new();
    setup.enable_http("");
    std::fs::create_dir_all(setup.path("keys/w3s")).unwrap();
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    setup.write(
        "signer.toml",
        &format!("{config}\n[[keys]]\ntype = \"web3signer_dir\"\npath = \"keys/w3s\"\n"),
    );
    setup.write_policy(&setup.policy_with(&format!(
        "\n[key_groups.new]\nkeys = [\"0x{}\"]\n\n[[grant]]\nclients = [\"vc\"]\noperations = [\"eth2.duties\"]\nkey_groups = [\"new\"]\nnetworks = [\"test-eth\"]\n",
        hex::encode(&pk)
    )));
    let d = setup.start();
    assert_eq!(post(&setup, &d, &pk, &attestation(0, 1, 1)).0, 404);

    let yaml = format!("type: \"file-raw\"\nkeyType: \"BLS\"\nprivateKey: \"{secret}\"\n");
    setup.write("keys/w3s/new.yaml", &yaml);
    assert_eq!(reload_and_wait(&setup, &d)["status"], "completed");
    let (status, body) = post(&setup, &d, &pk, &attestation(0, 1, 1));
    assert_eq!(status, 200, "{body}");
    // The signature is the new key's: the signing core with that key agrees.
    let v: Value = serde_json::from_str(&body).unwrap();
    let network = signer::eth2::Network {
        preset: signer::eth2::PresetKind::Minimal,
        genesis_fork_version: [0, 0, 0, 1],
        gloas_fork_epoch: None,
        clock: None,
    };
    let root = signer::eth2::decode(attestation(0, 1, 1).to_string().as_bytes(), &network)
        .unwrap()
        .signing_root;
    let expected = format!("0x{}", hex::encode(key.sign(root.as_slice()).to_bytes()));
    assert_eq!(v["signature"].as_str().unwrap(), expected);

    std::fs::remove_file(setup.path("keys/w3s/new.yaml")).unwrap();
    assert_eq!(reload_and_wait(&setup, &d)["status"], "completed");
    assert_eq!(post(&setup, &d, &pk, &attestation(0, 2, 1)).0, 404);
    // The configured keys are still there.
    assert_eq!(post(&setup, &d, &setup.bls, &attestation(0, 1, 1)).0, 200);

    // A broken file: the others load, the status says so.
    setup.write(
        "keys/w3s/bad.yaml",
        "type: \"file-raw\"\nprivateKey: \"0x12\"\n",
    );
    let v = reload_and_wait(&setup, &d);
    assert_eq!(v["status"], "completed_with_errors", "{v}");
    assert!(
        v["lastError"]
            .as_str()
            .unwrap()
            .contains("1 key loading error"),
        "{v}"
    );
    assert_eq!(post(&setup, &d, &setup.bls, &attestation(1, 2, 1)).0, 200);
    std::fs::remove_file(setup.path("keys/w3s/bad.yaml")).unwrap();

    // 1,000 reload cycles (the key added and removed each time).
    let warm = 50;
    let mut before = 0;
    for i in 0..1000 {
        if i % 2 == 0 {
            setup.write("keys/w3s/new.yaml", &yaml);
        } else {
            let _ = std::fs::remove_file(setup.path("keys/w3s/new.yaml"));
        }
        reload_and_wait(&setup, &d);
        if i == warm {
            // Allocator arenas and caches settle during the first cycles.
            before = rss_kib(d.pid());
            println!("RSS after {warm} reloads: {before} KiB");
        }
    }
    let after = rss_kib(d.pid());
    println!(
        "RSS after 1000 reloads: {after} KiB (+{} KiB)",
        after.saturating_sub(before)
    );
    assert!(
        after < before + 4096,
        "RSS grew from {before} KiB to {after} KiB over 950 reloads"
    );
}

#[test]
fn known_clients_by_fingerprint_and_ca_verified_clients_both_work_and_others_are_refused() {
    use sha2::Digest;
    let setup = Setup::new();
    // A self-signed client certificate, as Web3Signer users make them.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["lighthouse".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    setup.write("tls/selfsigned.pem", &cert.pem());
    setup.write("tls/selfsigned.key", &key.serialize_pem());
    let fp: Vec<String> = sha2::Sha256::digest(cert.der())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    setup.write(
        "tls/known_clients.txt",
        &format!("# name fingerprint\nlighthouse-fp {}\n", fp.join(":")),
    );
    // An unlisted self-signed certificate.
    let key2 = rcgen::KeyPair::generate().unwrap();
    let cert2 = rcgen::CertificateParams::new(vec!["x".to_owned()])
        .unwrap()
        .self_signed(&key2)
        .unwrap();
    setup.write("tls/unlisted.pem", &cert2.pem());
    setup.write("tls/unlisted.key", &key2.serialize_pem());
    setup.enable_http("known_clients_file = \"tls/known_clients.txt\"");
    setup.write_policy(&setup.policy_with(
        "\n[clients.lighthouse]\nidentity = \"lighthouse-fp\"\n\n[[grant]]\nclients = [\"lighthouse\"]\noperations = [\"eth2.duties\"]\nkey_groups = [\"validators\"]\nnetworks = [\"test-eth\"]\n",
    ));
    let d = setup.start();
    let addr = d.http_api.unwrap();
    let path = sign_path(&setup.bls);
    let ask = |cert: Option<&str>, body: &Value| {
        https(&setup, addr, cert, "POST", &path, JSON, &body.to_string())
    };
    assert_eq!(
        ask(Some("selfsigned"), &attestation(0, 1, 1)).unwrap().0,
        200,
        "known client"
    );
    assert_eq!(
        ask(Some("vc"), &attestation(1, 2, 1)).unwrap().0,
        200,
        "CA-verified client"
    );
    assert_eq!(
        ask(Some("unlisted"), &attestation(2, 3, 1)),
        Err("AlertReceived(UnknownCA)".into())
    );
    assert_eq!(
        ask(None, &attestation(2, 3, 1)),
        Err("AlertReceived(CertificateRequired)".into())
    );
    // The audit log names the known client by its policy name.
    assert!(d.stop().success());
    let audit = std::fs::read_to_string(setup.path("data/audit.jsonl")).unwrap();
    let first: Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(
        (&first["client"], &first["frontend"]),
        (&json!("lighthouse"), &json!("http")),
        "{audit}"
    );
}

#[test]
fn plain_http_is_only_for_loopback_and_its_client_is_flagged_by_the_policy_lint() {
    let setup = Setup::new();
    setup.enable_http("insecure_plaintext = true");
    setup.write_policy(&setup.policy_with(
        "\n[clients.local]\nidentity = \"insecure:loopback-http\"\n\n[[grant]]\nclients = [\"local\"]\noperations = [\"eth2.attestation\"]\nkey_groups = [\"validators\"]\nnetworks = [\"test-eth\"]\n",
    ));
    let lint = std::process::Command::new(tests::daemon::signer_bin())
        .args(["policy", "check"])
        .arg(setup.path("policy.toml"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&lint.stdout).contains(
            "warning: clients.local: is whoever reaches the plain-HTTP listener: any process on this host can use its grants"
        ),
        "{lint:?}"
    );
    let d = setup.start();
    let mut s = std::net::TcpStream::connect(d.http_api.unwrap()).unwrap();
    let body = attestation(0, 1, 1).to_string();
    use std::io::{Read, Write};
    write!(
        s,
        "POST {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        sign_path(&setup.bls),
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");

    // On any other address the configuration is refused.
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    let path = setup.path("public.toml");
    std::fs::write(
        &path,
        config.replace(
            "listen = \"127.0.0.1:0\"\ninsecure",
            "listen = \"0.0.0.0:0\"\ninsecure",
        ),
    )
    .unwrap();
    let err = signer::config::Config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("plain HTTP only on a loopback address"),
        "{err}"
    );
}

/// Reloads are bounded: one runs at a time whoever asks (the metrics
/// listener and the HTTPS listener answer 409 while one runs), a reload
/// runs no KDF for an unchanged keystore, and many concurrent reload
/// requests leave the daemon's peak memory where it was. Before: every
/// `POST /reload` on the metrics listener ran scrypt again for every key
/// file, all at once — 32 of them took a daemon to 8 GiB.
#[test]
fn concurrent_reloads_run_one_at_a_time_and_decrypt_nothing_unchanged() {
    let setup = Setup::new();
    setup.enable_http("");
    // bls2 under scrypt with n = 2^16: 64 MiB of memory per decryption.
    let secret = hex::decode(tests::daemon::BLS_SECRET_2).unwrap();
    let key =
        signer::backend::soft::SecretKey::from_secret(signer::backend::soft::Scheme::Bls, &secret)
            .unwrap();
    let file = signer::backend::soft::write_key_file(
        &key,
        &secret,
        "pw",
        signer::backend::soft::keystore::Kdf::Scrypt { log_n: 16 },
        "bls2",
    )
    .unwrap();
    setup.write("keys/bls2.json", &file);
    let d = setup.start();
    let https_reload = |method: &str| {
        https(
            &setup,
            d.http_api.unwrap(),
            Some("vc"),
            method,
            "/reload",
            &[],
            "",
        )
        .unwrap()
    };

    // 1. The gate. A password file that is a FIFO holds a reload until this
    //    test writes the password: every reload asked meanwhile is refused.
    let pass = setup.path("keys/bls2.pass");
    std::fs::remove_file(&pass).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&pass)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo is needed (coreutils)");
    let held = std::thread::scope(|s| {
        let first = s.spawn(|| d.http("POST", "/reload"));
        // Until the first reload opens the FIFO, it has not taken the gate.
        let mut writer = std::fs::OpenOptions::new().write(true).open(&pass).unwrap();
        let mut refused = Vec::new();
        for _ in 0..8 {
            refused.push(d.http("POST", "/reload"));
            refused.push(https_reload("POST"));
        }
        assert_eq!(
            serde_json::from_str::<Value>(&https_reload("GET").1).unwrap()["status"],
            "running",
            "the status shows any running reload, whoever asked for it"
        );
        std::io::Write::write_all(&mut writer, b"pw").unwrap();
        drop(writer);
        (first.join().unwrap(), refused)
    });
    let (first, refused) = held;
    assert_eq!(first.0, 200, "{}", first.1);
    assert!(
        first
            .1
            .contains("keys: 4 loaded (0 added, 0 removed, 4 unchanged, 0 failed)"),
        "{}",
        first.1
    );
    for (status, body) in &refused {
        assert_eq!(*status, 409, "{body}");
        assert!(body.contains("reload is already running"), "{body}");
    }
    std::fs::remove_file(&pass).unwrap();
    setup.write("keys/bls2.pass", "pw");

    // 2. Unchanged keystores are not decrypted again…
    let (status, body) = d.http("POST", "/reload");
    assert_eq!(status, 200, "{body}");
    assert!(
        d.log()
            .contains("keystores_unchanged=4 keystores_decrypted=0"),
        "{}",
        d.log()
    );
    // …so 32 reloads asked at once leave the peak RSS where start-up (one
    // scrypt) put it. Before, each ran scrypt concurrently: +64 MiB each.
    let peak = proc_status_kib(d.pid(), "VmHWM:");
    let answers: Vec<u16> = std::thread::scope(|s| {
        let asks: Vec<_> = (0..32)
            .map(|i| {
                let (d, https_reload) = (&d, &https_reload);
                s.spawn(move || {
                    if i % 2 == 0 {
                        d.http("POST", "/reload").0
                    } else {
                        https_reload("POST").0
                    }
                })
            })
            .collect();
        asks.into_iter().map(|a| a.join().unwrap()).collect()
    });
    assert!(
        answers.iter().all(|s| [200, 202, 409].contains(s)),
        "{answers:?}"
    );
    // Let a key reload the HTTPS listener started finish.
    while serde_json::from_str::<Value>(&https_reload("GET").1).unwrap()["status"] == "running" {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let after = proc_status_kib(d.pid(), "VmHWM:");
    println!("peak RSS {peak} KiB before 32 concurrent reloads, {after} KiB after");
    assert!(after < peak + 32 * 1024, "{peak} KiB -> {after} KiB");
    // Signing went on.
    assert_eq!(post(&setup, &d, &setup.bls, &attestation(0, 1, 1)).0, 200);
}

/// An attestation as `core_attestation_signature` builds it (checkpoint roots 0xcc…).
fn attestation_cc(source: u64, target: u64, block: u8) -> Value {
    let mut a = attestation(source, target, block);
    let cc = format!("0x{}", "cc".repeat(32));
    a["attestation"]["source"]["root"] = json!(cc);
    a["attestation"]["target"]["root"] = json!(cc);
    a
}

fn post_batch(setup: &Setup, d: &Daemon, body: &str) -> (u16, String) {
    https(
        setup,
        d.http_api.unwrap(),
        Some("vc"),
        "POST",
        "/api/v1/eth2/sign_batch",
        JSON,
        body,
    )
    .unwrap()
}

#[test]
fn a_batch_of_a_thousand_attestations_is_one_commit_answered_per_item() {
    let setup = Setup::new();
    setup.enable_http("");
    let d = setup.start();
    let key = format!("0x{}", hex::encode(&setup.bls));
    let mut items: Vec<Value> = (1..=1000u64)
        .map(|t| json!({"identifier": key, "request": attestation_cc(t - 1, t, 1)}))
        .collect();
    // Inside the batch: a conflict with target 500 (a different block),
    // a key outside the policy, an unknown key, an identifier that is no
    // key, and a request that is not a request.
    items.push(json!({"identifier": key, "request": attestation_cc(0, 500, 9)}));
    items.push(json!({"identifier": format!("0x{}", hex::encode(&setup.bls2)), "request": attestation_cc(1, 2, 1)}));
    items.push(
        json!({"identifier": format!("0x{}", "ab".repeat(48)), "request": attestation_cc(1, 2, 1)}),
    );
    items.push(json!({"identifier": "0x1234", "request": attestation_cc(1, 2, 1)}));
    items.push(json!({"identifier": key, "request": "ATTESTATION"}));
    let commits_before = d.metric("signer_db_commits");
    let decided_before = d.metric("signer_db_batch_size_sum");
    let (status, body) = post_batch(&setup, &d, &json!({ "requests": items }).to_string());
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let responses = v["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 1005);
    for (i, r) in responses[..1000].iter().enumerate() {
        let t = i as u64 + 1;
        let expected = format!(
            "0x{}",
            hex::encode(core_attestation_signature(BLS_SECRET, t - 1, t, 1))
        );
        assert_eq!(
            r,
            &json!({"status": 200, "signature": expected}),
            "item {i}"
        );
    }
    let status_of = |i: usize| responses[i]["status"].as_u64().unwrap();
    let message_of = |i: usize| responses[i]["message"].as_str().unwrap().to_owned();
    assert_eq!(status_of(1000), 412, "{}", message_of(1000));
    assert!(
        message_of(1000).contains("slashable"),
        "{}",
        message_of(1000)
    );
    assert_eq!(status_of(1001), 403, "{}", message_of(1001));
    assert_eq!(status_of(1002), 404, "{}", message_of(1002));
    assert_eq!(
        (status_of(1003), message_of(1003).as_str()),
        (
            400,
            "requests[1003].identifier: expected a BLS public key (0x and 96 hex digits)"
        )
    );
    assert_eq!(status_of(1004), 400, "{}", message_of(1004));
    assert!(
        message_of(1004).contains("requests[1004].request: expected a JSON object"),
        "{}",
        message_of(1004)
    );
    // One transaction for the whole batch (a metrics scrape commits nothing).
    assert_eq!(d.metric("signer_db_commits") - commits_before, 1.0);
    assert_eq!(
        d.metric("signer_db_batch_size_sum") - decided_before,
        1001.0,
        "the 1,000 attestations and the conflicting one were decided together"
    );
    // What was signed is what is recorded, and the batch route's answers
    // equal the single route's: the same attestation again signs the same.
    let (status, again) = post(&setup, &d, &setup.bls, &attestation_cc(499, 500, 1));
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        serde_json::from_str::<Value>(&again).unwrap()["signature"],
        responses[499]["signature"]
    );
    assert!(d.stop().success());
}

#[test]
fn conflicting_items_inside_one_batch_sign_exactly_one_and_bad_batches_are_refused_whole() {
    let setup = Setup::new();
    setup.enable_http("");
    let d = setup.start();
    let key = format!("0x{}", hex::encode(&setup.bls));
    // Eight different attestations with one target: exactly the first is signed.
    let items: Vec<Value> = (0..8u8)
        .map(|b| json!({"identifier": key, "request": attestation_cc(0, 7, b)}))
        .collect();
    let (status, body) = post_batch(&setup, &d, &json!({ "requests": items }).to_string());
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let statuses: Vec<u64> = v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 412, 412, 412, 412, 412, 412, 412]);
    // Two blocks at one slot in one batch: one signed.
    let blocks = json!({"requests": [
        {"identifier": key, "request": block(40, 1)},
        {"identifier": key, "request": block(40, 2)},
    ]});
    let (status, body) = post_batch(&setup, &d, &blocks.to_string());
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["responses"][0]["status"], 200, "{body}");
    assert_eq!(v["responses"][1]["status"], 412, "{body}");

    // Whole-request refusals, each saying what is wrong.
    let commits = d.metric("signer_db_commits");
    for (body, expected) in [
        ("not json", "expected {\"requests\""),
        (
            "{\"requests\": []}",
            "requests: empty; send at least one item",
        ),
        ("{\"items\": []}", "unknown field `items`"),
        (
            "{\"requests\": [{\"identifier\": \"0x00\"}]}",
            "missing field `request`",
        ),
    ] {
        let (status, answer) = post_batch(&setup, &d, body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.contains(expected), "{body}: {answer}");
    }
    let too_many: Vec<Value> = (0..=signer::api::web3signer::MAX_BATCH_ITEMS)
        .map(|_| json!({"identifier": key, "request": {}}))
        .collect();
    let (status, answer) = post_batch(&setup, &d, &json!({ "requests": too_many }).to_string());
    assert_eq!(
        (status, answer.as_str()),
        (
            400,
            "requests: 4097 items; at most 4096 per batch — split it"
        )
    );
    // A certificate that is no policy client: 403 saying so, nothing decided.
    let stranger = https(
        &setup,
        d.http_api.unwrap(),
        Some("stranger"),
        "POST",
        "/api/v1/eth2/sign_batch",
        JSON,
        &blocks.to_string(),
    );
    assert_eq!(
        stranger,
        Ok((
            403,
            "no client in the policy has identity [\"spiffe://signer.test/stranger\"]".to_owned()
        ))
    );
    let (status, _) = https(
        &setup,
        d.http_api.unwrap(),
        Some("vc"),
        "GET",
        "/api/v1/eth2/sign_batch",
        &[],
        "",
    )
    .unwrap();
    assert_eq!(status, 405);
    assert_eq!(d.metric("signer_db_commits"), commits);
    assert!(d.stop().success());
}
