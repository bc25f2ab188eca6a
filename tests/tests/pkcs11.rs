//! The PKCS#11 backend against SoftHSM 2 (a real token, fresh per test):
//! keys generated and imported through `signer keys`, signing through the
//! daemon over real mTLS, and BLS keys sealed under a token AES key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::result_large_err
)]

use tests::daemon::{Setup, signature_of};
use tests::hsm::{
    Answer, SoftHsm, VoteLoad, add_key, check_recoverable, check_remote_ed25519, configure_pkcs11,
    softhsm_module,
};

fn hsm_policy(setup: &Setup, ed: &[u8], k1: &[u8]) -> String {
    setup.policy_with(&format!(
        r#"
[key_groups.hsm-consensus]
keys = ["0x{ed}"]

[key_groups.hsm-raw]
keys = ["0x{ed}", "0x{k1}"]

[[grant]]
clients = ["node"]
operations = ["cometbft.consensus"]
key_groups = ["hsm-consensus"]
networks = ["test-chain"]

[[grant]]
clients = ["vc"]
operations = ["raw.ed25519", "raw.secp256k1"]
key_groups = ["hsm-raw"]
"#,
        ed = hex::encode(ed),
        k1 = hex::encode(k1),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_generated_in_softhsm_sign_through_the_daemon_and_verify() {
    let mut setup = Setup::new();
    let hsm = SoftHsm::new(&["tok-a"]);
    let ed = hsm.generate("tok-a", "ed25519", "consensus-ed");
    let k1 = hsm.generate("tok-a", "secp256k1", "oracle-k1");
    assert_eq!((ed.len(), k1.len()), (32, 33));

    // The token lists them as protected (sensitive, never extractable).
    let list = hsm.keys(&softhsm_module(), "tok-a", &["list"]);
    for (label, pk) in [("consensus-ed", &ed), ("oracle-k1", &k1)] {
        let line = list
            .lines()
            .find(|l| l.contains(&format!("\"{label}\"")))
            .unwrap_or_else(|| panic!("{label} not listed:\n{list}"));
        assert!(line.contains("protected"), "{line}");
        assert!(line.contains(&hex::encode(pk)), "{line}");
    }
    // A second key with the same label is refused.
    let (ok, _, err) = hsm.try_keys(
        &softhsm_module(),
        "tok-a",
        &["generate", "--scheme", "ed25519", "--label", "consensus-ed"],
    );
    assert!(
        !ok && err.contains("already has an object labelled"),
        "{err}"
    );

    configure_pkcs11(&setup, &hsm, 2000, &[("a", &softhsm_module(), "tok-a")]);
    add_key(&setup, "type = \"pkcs11\"\nlabel = \"consensus-ed\"");
    add_key(&setup, "type = \"pkcs11\"\nlabel = \"oracle-k1\"");
    setup.write_policy(&hsm_policy(&setup, &ed, &k1));
    setup.env = hsm.env();
    let daemon = setup.start();
    let mut vc = daemon.client(setup.client_tls("vc")).await;
    let mut node = daemon.client(setup.client_tls("node")).await;

    // Ed25519: raw bytes verified by the signing core, CometBFT votes.
    check_remote_ed25519(&mut vc, &mut node, &ed, b"hsm raw message").await;

    // 200 secp256k1 signatures: every one low-S, verified by k256 directly,
    // and its recovery id recovers the token's key.
    for i in 0u32..200 {
        let digest: [u8; 32] =
            <sha2::Sha256 as sha2::Digest>::digest(format!("digest {i}").as_bytes()).into();
        let got = signature_of(
            vc.sign(signer::client::raw_secp256k1_request(&k1, digest.to_vec()))
                .await
                .unwrap()
                .into_inner(),
        );
        check_recoverable(&k1, &digest, &got);
    }
    assert_eq!(
        daemon.metric("signer_backend_up{backend=\"pkcs11\",name=\"a\"}"),
        1.0
    );
    assert_eq!(daemon.http("GET", "/readyz").0, 200);
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_key_signs_like_its_file_and_unknown_labels_stop_the_start() {
    let mut setup = Setup::new();
    let hsm = SoftHsm::new(&["tok-a"]);
    // The setup's Ed25519 file key, moved into the token.
    hsm.import_setup_ed25519(&setup, "tok-a", "moved-ed");
    // Serve it from the token only.
    setup.drop_file_key("ed25519");
    configure_pkcs11(&setup, &hsm, 2000, &[("a", &softhsm_module(), "tok-a")]);
    add_key(&setup, "type = \"pkcs11\"\nlabel = \"moved-ed\"");
    setup.env = hsm.env();
    let daemon = setup.start();
    let mut node = daemon.client(setup.client_tls("node")).await;
    let mut load = VoteLoad::new(setup.ed25519.clone());
    assert_eq!(load.step(&mut node).await, vec![Answer::Signed; 2]);
    drop(daemon);

    // A key the token does not have: the daemon refuses to start, naming it.
    add_key(&setup, "type = \"pkcs11\"\nlabel = \"no-such-key\"");
    let out = std::process::Command::new(tests::daemon::signer_bin())
        .args(["serve", "--config"])
        .arg(setup.path("signer.toml"))
        .envs(hsm.env())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-key") && err.contains("no public key object"),
        "{err}"
    );
}

fn start_fails(setup: &Setup, env: Vec<(String, String)>) -> String {
    let out = std::process::Command::new(tests::daemon::signer_bin())
        .args(["serve", "--config"])
        .arg(setup.path("signer.toml"))
        .envs(env)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the daemon started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_bls_key_signs_with_its_token_and_is_useless_without_it() {
    let mut setup = Setup::new();
    let hsm = SoftHsm::new(&["tok-a"]);
    hsm.keys(
        &softhsm_module(),
        "tok-a",
        &["generate", "--scheme", "aes256", "--label", "bls-wrap"],
    );
    // Seal the setup's second BLS key (its keystore), then serve only the sealed file.
    let sealed = setup.path("keys/bls2.sealed.json");
    let out = hsm.keys(
        &softhsm_module(),
        "tok-a",
        &[
            "seal",
            "--wrapping-key",
            "bls-wrap",
            "--keystore",
            setup.path("keys/bls2.json").to_str().unwrap(),
            "--password-file",
            setup.path("keys/bls2.pass").to_str().unwrap(),
            "--out",
            sealed.to_str().unwrap(),
        ],
    );
    assert!(out.contains(&hex::encode(&setup.bls2)), "{out}");
    let file = std::fs::read_to_string(&sealed).unwrap();
    assert!(
        !file.contains(tests::daemon::BLS_SECRET_2),
        "the secret is in the file"
    );

    setup.drop_file_key("bls2");
    let plain = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    configure_pkcs11(&setup, &hsm, 2000, &[("a", &softhsm_module(), "tok-a")]);
    add_key(
        &setup,
        "type = \"pkcs11_sealed\"\npath = \"keys/bls2.sealed.json\"",
    );
    setup.env = hsm.env();
    setup.check_bls2_signs().await;

    // The same file with another token of the same label holding an AES
    // key of the same label (an attacker's copy of the setup): no.
    let other = SoftHsm::new(&["tok-a"]);
    other.keys(
        &softhsm_module(),
        "tok-a",
        &["generate", "--scheme", "aes256", "--label", "bls-wrap"],
    );
    let err = start_fails(&setup, other.env());
    assert!(
        err.contains("bls2.sealed.json") && err.contains("cannot unseal") && err.contains("CKR_"),
        "{err}"
    );
    // A token without the wrapping key at all.
    let empty = SoftHsm::new(&["tok-a"]);
    let err = start_fails(&setup, empty.env());
    assert!(err.contains("no AES key labelled \"bls-wrap\""), "{err}");
    // The file without any token configured.
    setup.write("signer.toml", &plain);
    add_key(
        &setup,
        "type = \"pkcs11_sealed\"\npath = \"keys/bls2.sealed.json\"",
    );
    let err = start_fails(&setup, hsm.env());
    assert!(err.contains("need a [pkcs11] section"), "{err}");
    // A damaged file (one ciphertext byte flipped) does not unseal either.
    let mut tampered: serde_json::Value = serde_json::from_str(&file).unwrap();
    let ct = tampered["ciphertext"].as_str().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        if ct.starts_with('0') { "1" } else { "0" },
        &ct[1..]
    );
    tampered["ciphertext"] = flipped.into();
    std::fs::write(&sealed, tampered.to_string()).unwrap();
    setup.write("signer.toml", &plain);
    configure_pkcs11(&setup, &hsm, 2000, &[("a", &softhsm_module(), "tok-a")]);
    add_key(
        &setup,
        "type = \"pkcs11_sealed\"\npath = \"keys/bls2.sealed.json\"",
    );
    let err = start_fails(&setup, hsm.env());
    assert!(err.contains("cannot unseal"), "{err}");
}

#[test]
fn a_wrong_pin_or_a_missing_token_stops_the_start_with_the_reason() {
    let setup = Setup::new();
    let hsm = SoftHsm::new(&["tok-a"]);
    configure_pkcs11(&setup, &hsm, 2000, &[("a", &softhsm_module(), "tok-b")]);
    let err = start_fails(&setup, hsm.env());
    assert!(
        err.contains("pkcs11 token \"a\"") && err.contains("not present"),
        "{err}"
    );

    let setup = Setup::new();
    configure_pkcs11(&setup, &hsm, 2000, &[("a", &softhsm_module(), "tok-a")]);
    std::fs::write(&hsm.pin_file, "0000\n").unwrap();
    let err = start_fails(&setup, hsm.env());
    assert!(err.contains("CKR_PIN_INCORRECT"), "{err}");
}
