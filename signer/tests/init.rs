//! `signer init --dev DIR` writes a setup that every part of the signer
//! accepts: configuration, policy (without findings), TLS server setup, key
//! files, and a client certificate that verifies and names the dev client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::signer;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use signer::backend::soft::{self, Scheme, keystore};
use signer::config::{Config, KeySource};
use signer::policy::Policy;

#[test]
fn init_dev_writes_a_setup_everything_accepts() {
    signer::tls::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let (code, out, err) = signer(&["init", "--dev", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("wrote a throwaway development setup"), "{out}");

    let config = Config::load(&dir.join("signer.toml")).unwrap();
    let policy_text = std::fs::read_to_string(&config.policy.file).unwrap();
    let (policy, findings) = Policy::load(&policy_text).unwrap();
    assert!(
        findings.is_empty(),
        "the dev policy should lint clean: {findings:?}"
    );
    let (code, out, _) = signer(&["policy", "check", config.policy.file.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.ends_with("0 errors, 0 warnings\n"), "{out}");
    signer::tls::server_config(&config.tls.files()).unwrap();

    // Every configured key loads with its password; one of each scheme.
    let mut schemes = Vec::new();
    for k in &config.keys {
        let KeySource::File {
            path,
            password_file,
        } = k
        else {
            panic!("unexpected key source {k:?}")
        };
        let password = keystore::read_password_file(password_file).unwrap();
        let key = soft::load_key_file(&std::fs::read(path).unwrap(), &password).unwrap();
        schemes.push(key.scheme());
        assert_eq!(
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(password_file)
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    assert_eq!(schemes, [Scheme::Bls, Scheme::Ed25519, Scheme::Secp256k1]);

    // The client certificate verifies against the CA and names the dev client.
    let ca = CertificateDer::from_pem_file(dir.join("tls/ca.pem")).unwrap();
    let client = CertificateDer::from_pem_file(dir.join("tls/client.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .unwrap();
    verifier
        .verify_client_cert(&client, &[], UnixTime::now())
        .unwrap();
    let id = signer::tls::identity::peer_identity(&client).unwrap();
    assert_eq!(
        signer::tls::identity::resolve(&policy, &id).unwrap().name,
        "dev"
    );
    for private in ["tls/ca.key", "tls/server.key", "tls/client.key"] {
        assert_eq!(
            std::fs::metadata(dir.join(private))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600,
            "{private}"
        );
    }
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // Never overwrites.
    let (code, _, err) = signer(&["init", "--dev", dir.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("exists and is not empty; refusing to overwrite it"),
        "{err}"
    );
    let (code, _, err) = signer(&["init", tmp.path().join("other").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("signer init --dev DIR"), "{err}");
}

/// `signer dev` says it is serving only once it is (it used to announce the
/// client commands before binding, then fail).
#[test]
fn dev_does_not_announce_a_server_that_could_not_bind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let (code, _, err) = signer(&["init", "--dev", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // Its gRPC port is taken.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let config = std::fs::read_to_string(dir.join("signer.toml")).unwrap();
    assert!(config.contains("grpc_listen = \"127.0.0.1:9000\""));
    std::fs::write(
        dir.join("signer.toml"),
        config.replace(
            "grpc_listen = \"127.0.0.1:9000\"",
            &format!("grpc_listen = \"127.0.0.1:{port}\""),
        ),
    )
    .unwrap();
    let (code, _, err) = signer(&["dev", dir.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("signer dev: starting"), "{err}");
    assert!(
        !err.contains("serving"),
        "announced a server that never bound: {err}"
    );
    assert!(
        err.contains(&port.to_string()),
        "the error names the address: {err}"
    );
}
