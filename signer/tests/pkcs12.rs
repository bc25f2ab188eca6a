//! PKCS#12 server identities: keystores written by OpenSSL 3 and Java's
//! keytool (fixtures made by those tools, see `fixtures/pkcs12/README.md`)
//! read to the same certificate and key as their PEM/DER forms; a wrong
//! password, a legacy keystore and damaged files are refused by name.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use rustls::pki_types::PrivateKeyDer;
use signer::tls::pkcs12::{Pkcs12Error, read};
use signer::tls::{TlsFiles, server_config};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pkcs12"
    ))
    .join(name)
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

#[test]
fn openssl_and_keytool_keystores_read_to_their_certificate_and_key() {
    signer::tls::install_crypto_provider();
    let password = std::fs::read_to_string(fixture("password.txt")).unwrap();
    let (chain, key) = read(&bytes("openssl3-default.p12"), &password).unwrap();
    assert_eq!(chain.len(), 1);
    assert_eq!(chain[0].as_ref(), bytes("server.der").as_slice());
    match key {
        PrivateKeyDer::Pkcs8(k) => {
            assert_eq!(k.secret_pkcs8_der(), bytes("server.key.der").as_slice())
        }
        other => panic!("{other:?}"),
    }

    let (chain, _key) = read(&bytes("keytool.p12"), "changeit").unwrap();
    assert_eq!(chain[0].as_ref(), bytes("keytool-cert.der").as_slice());

    // Both serve as the daemon's identity (rustls checks the key matches).
    for (p12, pw) in [
        ("openssl3-default.p12", "password.txt"),
        ("keytool.p12", "keytool-password.txt"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let pw_file = dir.path().join("pw");
        let text = if pw == "password.txt" {
            password.clone()
        } else {
            "changeit\n".into()
        };
        std::fs::write(&pw_file, text).unwrap();
        let files = TlsFiles {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            client_cas: vec![fixture("server.pem")],
            crls: vec![],
            pkcs12: Some((fixture(p12), pw_file)),
        };
        server_config(&files).unwrap_or_else(|e| panic!("{p12}: {e}"));
    }
}

#[test]
fn wrong_passwords_legacy_keystores_and_damage_are_refused_by_name() {
    let good = bytes("openssl3-default.p12");
    assert_eq!(read(&good, "wrong").unwrap_err(), Pkcs12Error::BadMac);
    let legacy = read(&bytes("openssl-legacy.p12"), "legacy").unwrap_err();
    assert!(matches!(legacy, Pkcs12Error::Unsupported(_)), "{legacy:?}");
    assert!(
        legacy
            .to_string()
            .contains("openssl pkcs12 -export -keypbe AES-256-CBC"),
        "{legacy}"
    );
    // Truncated anywhere: a typed refusal, never a panic.
    for cut in (0..good.len()).step_by(7) {
        let r = read(&good[..cut], "s3cret pässword");
        assert!(r.is_err(), "cut at {cut}");
    }
    // A flipped byte in the protected content: the MAC catches it.
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 1;
    assert!(read(&flipped, "s3cret pässword").is_err());
    assert!(matches!(
        read(b"not der", "x"),
        Err(Pkcs12Error::Malformed(_))
    ));
}
