//! Mutual TLS with real handshakes on loopback: a valid client is identified;
//! no certificate, another CA's certificate, an expired one, a revoked one and
//! a TLS 1.2 client are each refused by the server with the exact reason;
//! reload swaps the server certificate and keeps the old setup when the new
//! files are broken.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber, date_time_ymd,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned,
};
use signer::policy::Policy;
use signer::tls::identity::{self, IdentityError};
use signer::tls::{self as tls, ReloadableConfig, TlsFiles};

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        der: cert.der().clone(),
        issuer: Issuer::new(params, key),
    }
}

struct Leaf {
    pem: String,
    der: CertificateDer<'static>,
    key_pem: String,
}

fn leaf(ca: &Ca, sans: Vec<SanType>, serial: u64, expired: bool) -> Leaf {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans;
    params.serial_number = Some(SerialNumber::from(serial));
    if expired {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    Leaf {
        pem: cert.pem(),
        der: cert.der().clone(),
        key_pem: key.serialize_pem(),
    }
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

struct Setup {
    dir: tempfile::TempDir,
    ca: Ca,
    other_ca: Ca,
}

impl Setup {
    fn new() -> Self {
        let s = Setup {
            dir: tempfile::tempdir().unwrap(),
            ca: ca("signer test CA"),
            other_ca: ca("someone else's CA"),
        };
        let server = leaf(
            &s.ca,
            vec![SanType::DnsName("localhost".try_into().unwrap())],
            1,
            false,
        );
        s.write("server.pem", &server.pem);
        s.write("server.key", &server.key_pem);
        s.write("ca.pem", &s.ca.pem);
        let crl = CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(666u64),
                revocation_time: date_time_ymd(2024, 6, 1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&s.ca.issuer)
        .unwrap();
        s.write("crl.pem", &crl.pem().unwrap());
        s
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn files(&self) -> TlsFiles {
        let p = |n: &str| self.dir.path().join(n);
        TlsFiles {
            cert: p("server.pem"),
            key: p("server.key"),
            client_cas: vec![p("ca.pem")],
            crls: vec![p("crl.pem")],
            pkcs12: None,
        }
    }
}

/// One connection: the server's outcome (peer certificate, or its rustls
/// error) and the server certificate the client saw.
fn connect(
    server: Arc<ServerConfig>,
    trust: &CertificateDer<'static>,
    client_cert: Option<&Leaf>,
    tls12: bool,
) -> (
    Result<CertificateDer<'static>, rustls::Error>,
    Option<CertificateDer<'static>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server_side = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let mut s = StreamOwned::new(ServerConnection::new(server).unwrap(), sock);
        let mut buf = [0u8; 2];
        match s.read_exact(&mut buf) {
            Ok(()) => {
                let peer = s.conn.peer_certificates().unwrap()[0].clone().into_owned();
                s.write_all(b"ok").unwrap();
                Ok(peer)
            }
            Err(e) => Err(e
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .cloned()
                .unwrap_or_else(|| panic!("{e}"))),
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match client_cert {
        Some(l) => builder
            .with_client_auth_cert(
                vec![l.der.clone()],
                PrivateKeyDer::from_pem_slice(l.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let conn = ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
        .unwrap();
    let mut c = StreamOwned::new(conn, std::net::TcpStream::connect(addr).unwrap());
    let _ = c
        .write_all(b"hi")
        .and_then(|()| c.read_exact(&mut [0u8; 2]));
    let seen = c
        .conn
        .peer_certificates()
        .map(|p| p[0].clone().into_owned());
    (server_side.join().unwrap(), seen)
}

const POLICY: &str = r#"
[clients.a]
identity = "spiffe://staking.example/validator/a"
[clients.pinned]
identity = "spiffe://staking.example/validator/pinned"
fingerprint = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
[clients.dns]
identity = "node.staking.example"
"#;

#[test]
fn valid_clients_are_identified_and_bad_ones_refused_with_the_reason() {
    tls::install_crypto_provider();
    let s = Setup::new();
    let config = tls::server_config(&s.files()).unwrap();
    let (policy, _) = Policy::load(POLICY).unwrap();

    let good = leaf(
        &s.ca,
        vec![uri("spiffe://staking.example/validator/a")],
        10,
        false,
    );
    let (peer, _) = connect(config.clone(), &s.ca.der, Some(&good), false);
    let id = identity::peer_identity(&peer.unwrap()).unwrap();
    assert_eq!(id.uris, ["spiffe://staking.example/validator/a"]);
    assert_eq!(identity::resolve(&policy, &id).unwrap().name, "a");

    let dns = leaf(
        &s.ca,
        vec![SanType::DnsName("node.staking.example".try_into().unwrap())],
        11,
        false,
    );
    let id = identity::peer_identity(
        &connect(config.clone(), &s.ca.der, Some(&dns), false)
            .0
            .unwrap(),
    )
    .unwrap();
    assert_eq!(identity::resolve(&policy, &id).unwrap().name, "dns");

    let pinned = leaf(
        &s.ca,
        vec![uri("spiffe://staking.example/validator/pinned")],
        12,
        false,
    );
    let id = identity::peer_identity(
        &connect(config.clone(), &s.ca.der, Some(&pinned), false)
            .0
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        identity::resolve(&policy, &id),
        Err(IdentityError::FingerprintMismatch {
            client: "pinned".into()
        })
    );

    let stranger = leaf(
        &s.ca,
        vec![uri("spiffe://staking.example/validator/z")],
        13,
        false,
    );
    let id = identity::peer_identity(
        &connect(config.clone(), &s.ca.der, Some(&stranger), false)
            .0
            .unwrap(),
    )
    .unwrap();
    assert!(matches!(
        identity::resolve(&policy, &id),
        Err(IdentityError::UnknownClient { .. })
    ));

    // Refused by the TLS layer, each for its own reason.
    let (r, _) = connect(config.clone(), &s.ca.der, None, false);
    assert_eq!(r.unwrap_err(), rustls::Error::NoCertificatesPresented);
    let foreign = leaf(
        &s.other_ca,
        vec![uri("spiffe://staking.example/validator/a")],
        20,
        false,
    );
    let (r, _) = connect(config.clone(), &s.ca.der, Some(&foreign), false);
    assert_eq!(
        r.unwrap_err(),
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
    let expired = leaf(
        &s.ca,
        vec![uri("spiffe://staking.example/validator/a")],
        21,
        true,
    );
    let (r, _) = connect(config.clone(), &s.ca.der, Some(&expired), false);
    assert!(matches!(
        r.unwrap_err(),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. }
        )
    ));
    let revoked = leaf(
        &s.ca,
        vec![uri("spiffe://staking.example/validator/a")],
        666,
        false,
    );
    let (r, _) = connect(config.clone(), &s.ca.der, Some(&revoked), false);
    assert_eq!(
        r.unwrap_err(),
        rustls::Error::InvalidCertificate(CertificateError::Revoked)
    );
    let (r, _) = connect(config, &s.ca.der, Some(&good), true);
    assert!(
        matches!(r.unwrap_err(), rustls::Error::PeerIncompatible(_)),
        "TLS 1.2 must be refused"
    );
}

#[test]
fn reload_swaps_the_certificate_and_keeps_the_old_setup_on_failure() {
    tls::install_crypto_provider();
    let s = Setup::new();
    let reloadable = ReloadableConfig::load(s.files()).unwrap();
    let client = leaf(
        &s.ca,
        vec![uri("spiffe://staking.example/validator/a")],
        30,
        false,
    );
    let (_, first) = connect(reloadable.current(), &s.ca.der, Some(&client), false);

    let renewed = leaf(
        &s.ca,
        vec![SanType::DnsName("localhost".try_into().unwrap())],
        2,
        false,
    );
    s.write("server.pem", &renewed.pem);
    s.write("server.key", &renewed.key_pem);
    reloadable.reload().unwrap();
    let (r, second) = connect(reloadable.current(), &s.ca.der, Some(&client), false);
    assert!(r.is_ok());
    assert_eq!(second.as_ref(), Some(&renewed.der));
    assert_ne!(first, second);

    // A broken key file: reload refuses, the renewed setup stays in force.
    let before = reloadable.current();
    s.write(
        "server.key",
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    );
    assert!(reloadable.reload().is_err());
    assert!(Arc::ptr_eq(&before, &reloadable.current()));
    let (r, still) = connect(reloadable.current(), &s.ca.der, Some(&client), false);
    assert!(r.is_ok());
    assert_eq!(still.as_ref(), Some(&renewed.der));
}

#[test]
fn a_setup_without_client_cas_or_with_missing_files_is_refused() {
    tls::install_crypto_provider();
    let s = Setup::new();
    let mut files = s.files();
    files.client_cas.clear();
    assert!(matches!(
        tls::server_config(&files),
        Err(tls::TlsError::Config(_))
    ));
    let mut files = s.files();
    files.cert = Path::new("/nonexistent/server.pem").to_owned();
    assert!(matches!(
        tls::server_config(&files),
        Err(tls::TlsError::File { .. })
    ));
}
