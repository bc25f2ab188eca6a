//! The start cache (issue 18, part 6): a restart with unchanged keystores
//! runs no KDF; a changed keystore alone is decrypted again; a cache that
//! does not open (other password, altered bytes, a wrapping key the signer
//! cannot reach) is reported and ignored, never a reason not to start; and
//! the file holds no secret in the clear. Sealed three ways: a password
//! file, a SoftHSM AES key, a KMS key (moto).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use tests::daemon::{
    BLS_SECRET, BLS_SECRET_2, Daemon, ED25519_SECRET, SECP256K1_SECRET, Setup, attestation,
    core_attestation_signature, signature_of,
};
use tests::hsm::{SoftHsm, configure_pkcs11, softhsm_module};

fn add_cache(setup: &Setup, seal: &str) {
    let mut text = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    text.push_str(&format!(
        "\n[start_cache]\nfile = \"data/start-cache.json\"\n{seal}\n"
    ));
    setup.write("signer.toml", &text);
}

/// The "keys loaded" line's KDF runs and cache hits, checked.
fn assert_loaded(d: &Daemon, decrypted: usize, from_cache: usize) {
    let want = format!("keystores_decrypted={decrypted} keystores_from_cache={from_cache}");
    assert!(
        d.log().contains(&want),
        "expected {want:?} in:\n{}",
        d.log()
    );
}

/// Signs with the setup's first BLS key and checks the signature.
async fn signs(setup: &Setup, d: &Daemon, source: u64) {
    let mut vc = d.client(setup.client_tls("vc")).await;
    let got = signature_of(
        vc.sign(attestation(&setup.bls, source, source + 1, 7))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(
        got.signature,
        core_attestation_signature(BLS_SECRET, source, source + 1, 7)
    );
}

/// Starts the daemon with an empty log (the setup's log is appended to).
fn start(setup: &Setup) -> Daemon {
    let _ = std::fs::remove_file(setup.path("daemon.log"));
    setup.start()
}

fn cache_text(setup: &Setup) -> String {
    std::fs::read_to_string(setup.path("data/start-cache.json")).unwrap()
}

/// No secret of the setup's keys appears in the file, in hex either way round.
fn holds_no_secret(text: &str) {
    for secret in [BLS_SECRET, BLS_SECRET_2, ED25519_SECRET, SECP256K1_SECRET] {
        assert!(!text.contains(secret), "a secret in the clear");
        let bytes = hex::decode(secret).unwrap();
        let reversed: Vec<u8> = bytes.iter().rev().copied().collect();
        assert!(!text.contains(&hex::encode(reversed)));
    }
}

fn wait_for_log(d: &Daemon, needle: &str, after: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !d.log().get(after..).unwrap_or("").contains(needle) {
        assert!(Instant::now() < deadline, "no {needle:?} in:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_sealed_cache_skips_the_kdf_and_recovers_from_every_bad_cache() {
    let setup = Setup::new();
    setup.write("keys/cache.pass", "cache secret\n");
    add_cache(&setup, "password_file = \"keys/cache.pass\"");

    // First start: no cache yet; every keystore through the KDF; written.
    let d = start(&setup);
    assert!(d.log().contains("start cache: none yet"), "{}", d.log());
    assert_loaded(&d, 4, 0);
    assert!(d.log().contains("start cache written"), "{}", d.log());
    assert!(d.stop().success());
    let meta = std::fs::metadata(setup.path("data/start-cache.json")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let first = cache_text(&setup);
    holds_no_secret(&first);
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["kind"], "signer-start-cache");
    assert_eq!(v["sealing"]["kind"], "password");
    assert_eq!(v["sealing"]["log_n"], 18);

    // Unchanged keys: no KDF run, the same signatures, the file left alone.
    let d = start(&setup);
    assert!(d.log().contains("start cache: opened"), "{}", d.log());
    assert_loaded(&d, 0, 4);
    assert!(!d.log().contains("start cache written"), "{}", d.log());
    signs(&setup, &d, 1).await;
    assert!(d.stop().success());
    assert_eq!(cache_text(&setup), first);

    // One keystore re-encrypted (another password): that one alone decrypts.
    let secret = hex::decode(BLS_SECRET_2).unwrap();
    let key =
        signer::backend::soft::SecretKey::from_secret(signer::backend::soft::Scheme::Bls, &secret)
            .unwrap();
    let file = signer::backend::soft::write_key_file(
        &key,
        &secret,
        "pw2",
        signer::backend::soft::keystore::Kdf::Pbkdf2 { rounds: 2 },
        "bls2",
    )
    .unwrap();
    setup.write("keys/bls2.json", &file);
    setup.write("keys/bls2.pass", "pw2");
    let d = start(&setup);
    assert_loaded(&d, 1, 3);
    assert!(d.log().contains("start cache written"), "{}", d.log());
    assert!(d.stop().success());

    // The cache's password changed: reported, ignored, rewritten under it.
    setup.write("keys/cache.pass", "another secret");
    let d = start(&setup);
    assert!(
        d.log()
            .contains("start cache: not used; every keystore goes through the KDF"),
        "{}",
        d.log()
    );
    assert!(
        d.log()
            .contains("it does not open with this password_file (changed since it was written?)"),
        "{}",
        d.log()
    );
    assert_loaded(&d, 4, 0);
    signs(&setup, &d, 2).await;
    assert!(d.stop().success());
    let d = start(&setup);
    assert_loaded(&d, 0, 4);
    assert!(d.stop().success());

    // Altered bytes: the tag does not match; same recovery.
    let mut v: serde_json::Value = serde_json::from_str(&cache_text(&setup)).unwrap();
    let ct = v["ciphertext"].as_str().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        if ct.starts_with('0') { '1' } else { '0' },
        &ct[1..]
    );
    v["ciphertext"] = serde_json::Value::String(flipped);
    setup.write("data/start-cache.json", &v.to_string());
    let d = start(&setup);
    assert!(
        d.log().contains("or was altered"),
        "expected the altered cache to be reported:\n{}",
        d.log()
    );
    assert_loaded(&d, 4, 0);
    assert!(d.stop().success());

    // Not JSON at all: reported as damaged; the signer still starts.
    setup.write("data/start-cache.json", "{\"version\": 1, \"kind\"");
    let d = start(&setup);
    assert!(d.log().contains("damaged:"), "{}", d.log());
    assert_loaded(&d, 4, 0);

    // A key file gone while serving: the reload writes the cache without it.
    std::fs::remove_file(setup.path("keys/secp256k1.json")).unwrap();
    let mark = d.log().len();
    d.signal("HUP");
    wait_for_log(&d, "start cache written", mark);
    assert!(d.stop().success());
    setup.drop_file_key("secp256k1");
    let d = start(&setup);
    assert_loaded(&d, 0, 3);
    assert!(d.stop().success());
}

#[test]
fn a_cache_sealed_with_two_keys_or_an_unknown_token_is_a_configuration_error() {
    let setup = Setup::new();
    setup.write("keys/cache.pass", "x");
    add_cache(
        &setup,
        "password_file = \"keys/cache.pass\"\nkms = \"alias/cache\"",
    );
    let out = std::process::Command::new(tests::daemon::signer_bin())
        .args(["serve", "--config"])
        .arg(setup.path("signer.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "start_cache: give exactly one of password_file, pkcs11 (\"TOKEN:LABEL\"), kms"
        ),
        "{err}"
    );

    let setup = Setup::new();
    add_cache(&setup, "pkcs11 = \"nosuch:cache-key\"");
    let out = std::process::Command::new(tests::daemon::signer_bin())
        .args(["serve", "--config"])
        .arg(setup.path("signer.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("start_cache.pkcs11: no [[pkcs11.tokens]] named \"nosuch\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_sealed_cache_is_used_and_a_missing_wrapping_key_only_costs_the_kdf() {
    let mut setup = Setup::new();
    let hsm = SoftHsm::new(&["tok-a"]);
    hsm.keys(
        &softhsm_module(),
        "tok-a",
        &["generate", "--scheme", "aes256", "--label", "cache-key"],
    );
    configure_pkcs11(&setup, &hsm, 2000, &[("a", &softhsm_module(), "tok-a")]);
    setup.env = hsm.env();
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();

    // A wrapping key the token lacks: the signer serves, says why there is no cache.
    add_cache(&setup, "pkcs11 = \"a:no-such-key\"");
    let d = start(&setup);
    assert!(
        d.log()
            .contains("start cache: not written; the next start decrypts"),
        "{}",
        d.log()
    );
    assert!(d.log().contains("no-such-key"), "{}", d.log());
    signs(&setup, &d, 1).await;
    assert!(d.stop().success());
    assert!(!setup.path("data/start-cache.json").exists());

    setup.write("signer.toml", &config);
    add_cache(&setup, "pkcs11 = \"a:cache-key\"");
    let d = start(&setup);
    assert_loaded(&d, 4, 0);
    assert!(d.stop().success());
    let text = cache_text(&setup);
    holds_no_secret(&text);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["sealing"]["kind"], "pkcs11");
    assert_eq!(v["sealing"]["sealed"]["wrapping_key_label"], "cache-key");
    let d = start(&setup);
    assert_loaded(&d, 0, 4);
    signs(&setup, &d, 2).await;
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_sealed_cache_is_used() {
    use tests::kms::{aws_env, client, configure_kms, create_key, moto};
    let mut setup = Setup::new();
    let kms = moto();
    let c = client(&kms.url).await;
    let key = create_key(&c, aws_sdk_kms::types::KeySpec::SymmetricDefault, &[]).await;
    configure_kms(&setup, &kms.url, "");
    add_cache(&setup, &format!("kms = \"{key}\""));
    setup.env = aws_env();
    let d = start(&setup);
    assert_loaded(&d, 4, 0);
    assert!(d.log().contains("start cache written"), "{}", d.log());
    assert!(d.stop().success());
    let text = cache_text(&setup);
    holds_no_secret(&text);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["sealing"]["kind"], "kms");
    let d = start(&setup);
    assert_loaded(&d, 0, 4);
    signs(&setup, &d, 1).await;
    assert!(d.stop().success());
}
