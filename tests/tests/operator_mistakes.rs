//! What a new operator trips over (issue 19, part 7), each made on purpose
//! and the message read: it must say what is wrong and what to do next.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

use tests::daemon::{Setup, signer_bin};

/// `signer client … keys` with these TLS files (relative to the setup).
fn client(setup: &Setup, addr: &str, ca: &str, cert: &str, server_name: &str) -> (i32, String) {
    let out = Command::new(signer_bin())
        .args(["client", "--addr", addr, "--server-name", server_name])
        .arg("--ca")
        .arg(setup.path(ca))
        .arg("--cert")
        .arg(setup.path(&format!("{cert}.pem")))
        .arg("--key")
        .arg(setup.path(&format!("{cert}.key")))
        .arg("keys")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn signer_client_says_which_of_no_server_untrusted_server_or_refused_client_it_is() {
    let setup = Setup::new();
    // Nobody listening (a port nothing binds).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = free.local_addr().unwrap().to_string();
    drop(free);
    let (code, err) = client(&setup, &nobody, "tls/ca.pem", "tls/vc", "localhost");
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "no signer is listening on {nobody} (connection refused)"
        )) && err.contains("is `signer serve` running"),
        "{err}"
    );

    let d = setup.start();
    let addr = d.grpc.to_string();
    // The right files: it works.
    let (code, err) = client(&setup, &addr, "tls/ca.pem", "tls/vc", "localhost");
    assert_eq!(code, 0, "{err}");
    // A CA that did not issue the server's certificate.
    let (code, err) = client(&setup, &addr, "tls/foreign.pem", "tls/vc", "localhost");
    assert_eq!(code, 1);
    assert!(
        err.contains("presented a certificate that the --ca file does not trust"),
        "{err}"
    );
    // The server's certificate is for localhost, not this name.
    let (code, err) = client(&setup, &addr, "tls/ca.pem", "tls/vc", "signer.example");
    assert_eq!(code, 1);
    assert!(
        err.contains("not issued for the --server-name given"),
        "{err}"
    );
    // Our certificate comes from a CA the signer does not trust.
    let (code, err) = client(&setup, &addr, "tls/ca.pem", "tls/foreign", "localhost");
    assert_eq!(code, 1);
    assert!(
        err.contains("refused our client certificate")
            && err.contains("issued by a CA in the signer's [tls] client_cas"),
        "{err}"
    );
    assert!(!err.contains("transport error:"), "{err}");
    assert!(d.stop().success());
}
