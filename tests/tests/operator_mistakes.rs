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

/// A free loopback port (bound and released).
fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// The last configured key's password file becomes a FIFO: loading blocks
/// there, deterministically, until the test writes the password.
fn block_on_last_key(setup: &Setup) -> std::path::PathBuf {
    let fifo = setup.path("keys/secp256k1.pass");
    std::fs::remove_file(&fifo).unwrap();
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo (coreutils) is needed");
    fifo
}

/// `signer serve` with its start held at the last key ([`block_on_last_key`])
/// and its metrics listener on a known port: (process, metrics address,
/// its log, the FIFO).
fn start_held(
    setup: &Setup,
) -> (
    std::process::Child,
    String,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let fifo = block_on_last_key(setup);
    let metrics = free_port();
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    setup.write(
        "signer.toml",
        &config.replace(
            "metrics_listen = \"127.0.0.1:0\"",
            &format!("metrics_listen = \"{metrics}\""),
        ),
    );
    let log = setup.path("serve.log");
    let child = Command::new(signer_bin())
        .args(["serve", "--config"])
        .arg(setup.path("signer.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (child, metrics, log, fifo)
}

#[test]
fn cheap_checks_come_before_any_key_is_loaded() {
    let setup = Setup::new();
    // Were the keys loaded first, the start would block on this FIFO for ever.
    let _fifo = block_on_last_key(&setup);
    // Each mistake: exit 1 at once, before any key is loaded; the message.
    let refused_start = || {
        let out = Command::new(signer_bin())
            .args(["serve", "--config"])
            .arg(setup.path("signer.toml"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(!err.contains("loading keys"), "{err}");
        err
    };
    std::fs::remove_file(setup.path("tls/server.pem")).unwrap();
    let err = refused_start();
    assert!(err.contains("tls/server.pem"), "{err}");

    // The same for a policy that does not parse: the file is named.
    setup.write("tls/server.pem", &setup.new_server_cert());
    setup.write("policy.toml", "[clients.vc\n");
    let err = refused_start();
    assert!(
        err.contains(&format!(
            "policy {}: policy file does not parse",
            setup.path("policy.toml").display()
        )),
        "{err}"
    );
    // And for a port another process holds.
    setup.write_policy(&setup.default_policy());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    setup.write(
        "signer.toml",
        &config.replace(
            "grpc_listen = \"127.0.0.1:0\"",
            &format!("grpc_listen = \"{addr}\""),
        ),
    );
    let err = refused_start();
    assert!(err.contains(&format!("grpc listener {addr}: ")), "{err}");
}

#[test]
fn key_loading_shows_its_progress_in_status_readyz_and_the_log() {
    use std::io::{BufRead, BufReader, Write};
    let setup = Setup::new();
    let (mut child, metrics, log, fifo) = start_held(&setup);
    let status = |json: bool| {
        let mut c = Command::new(signer_bin());
        c.args(["status", "--metrics", &metrics, "--config"])
            .arg(setup.path("signer.toml"));
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // Until the listener answers (it binds before any key loads).
    let mut answered = None;
    for _ in 0..600 {
        let (code, out) = status(false);
        if code != 2 {
            answered = Some((code, out));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (code, out) = answered.unwrap_or_else(|| {
        let _ = child.kill();
        panic!(
            "no status answer: {}",
            std::fs::read_to_string(&log).unwrap()
        )
    });
    // Three keys loaded, the fourth waits for its password.
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("signer "), "{out}");
    assert!(out.contains(": STARTING (not ready yet)\n"), "{out}");
    assert!(
        out.contains("  loading keys: 3 of 4 loaded, 0 failed, "),
        "{out}"
    );
    assert!(out.contains(" left\n"), "{out}");
    let (_, json) = status(true);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ready"], false);
    assert_eq!(v["starting"]["keys"]["loaded"], 3);
    assert_eq!(v["starting"]["keys"]["total"], 4);
    let addr = metrics.parse().unwrap();
    let (code, body) = tests::daemon::plain_http(addr, "GET", "/readyz");
    assert_eq!(code, 503);
    assert!(
        body.starts_with("starting: loading keys: 3 of 4 keys loaded (75%), 0 failed"),
        "{body}"
    );
    assert_eq!(tests::daemon::plain_http(addr, "GET", "/healthz").0, 200);

    // The password arrives: the last key loads and the daemon serves.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .unwrap()
        .write_all(b"pw\n")
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with("ready grpc="), "{ready}");
    assert_eq!(status(false).0, 0);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("loading keys (signer status shows the progress)"),
        "{text}"
    );
    assert!(text.contains("keys loaded keys=4"), "{text}");
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_stop_while_keys_load_is_honoured_at_once_and_cleanly() {
    let setup = Setup::new();
    let (mut child, metrics, log, _fifo) = start_held(&setup);
    let addr = metrics.parse().unwrap();
    // Loading (blocked on the FIFO) once /readyz says so.
    let mut loading = false;
    for _ in 0..600 {
        if std::net::TcpStream::connect(addr).is_ok()
            && tests::daemon::plain_http(addr, "GET", "/readyz")
                .1
                .starts_with("starting: loading keys")
        {
            loading = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(loading, "{}", std::fs::read_to_string(&log).unwrap());
    let control = setup.path("data/slashing.sqlite.control");
    assert!(control.exists());
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status:?}\n{text}");
    assert!(
        text.contains("SIGTERM while keys load: stopping before serving"),
        "{text}"
    );
    assert!(!control.exists(), "the control token is removed");
}
