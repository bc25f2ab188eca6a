//! The daemon against hostile and broken peers on its listeners: floods of
//! idle connections at a low descriptor limit, slow headers, stalled bodies.
//! Each case failed on the daemon before connection bounds and timeouts
//! (issue 17): idle connections took every descriptor and locked validator
//! clients out; a request that never finished its headers or its body held
//! its connection for ever.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tests::daemon::{Daemon, GVR, Setup, attestation, https, signature_of};

/// Header and body timeouts short enough for a test to see them act.
fn setup_with_short_timeouts() -> Setup {
    let setup = Setup::new();
    setup.enable_http("");
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    setup.write(
        "signer.toml",
        &config.replacen(
            "[server]\n",
            "[server]\nheader_timeout_ms = 500\nbody_timeout_ms = 500\n",
            1,
        ),
    );
    setup
}

/// Reads until the peer closes; fails the test if it does not within a
/// minute (a generous bound for a failure, never the pass criterion).
fn read_until_closed(s: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!(
                    "the server kept the connection open: {:?}",
                    String::from_utf8_lossy(&out)
                )
            }
            // Reset or TLS close without notify: closed.
            Err(_) => return out,
        }
    }
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

fn tls(
    setup: &Setup,
    addr: SocketAddr,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let config = tests::daemon::client_config(
        &setup.path("tls/ca.pem"),
        Some((&setup.path("tls/vc.pem"), &setup.path("tls/vc.key"))),
        b"http/1.1",
    )
    .unwrap();
    let conn = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
    rustls::StreamOwned::new(conn, tcp(addr))
}

#[test]
fn slow_headers_stalled_bodies_and_idle_keep_alives_are_closed() {
    let setup = setup_with_short_timeouts();
    let d = setup.start();
    let api = d.http_api.unwrap();

    // Headers that never end: closed, on both HTTP listeners.
    let mut m = tcp(d.metrics);
    m.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    read_until_closed(&mut m);
    let mut h = tls(&setup, api);
    h.write_all(b"GET /upcheck HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    read_until_closed(&mut h);

    // A body that claims a gigabyte and sends 100 bytes: 408, closed.
    let mut b = tls(&setup, api);
    write!(
        b,
        "POST /api/v1/eth2/sign/0x{} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{}",
        hex::encode(&setup.bls),
        "x".repeat(100)
    )
    .unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut b)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.contains("request body not received within 500 ms ([server] body_timeout_ms)"),
        "{answer}"
    );

    // A kept-alive connection answered once, then idle: closed.
    let mut k = tcp(d.metrics);
    k.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut k)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");

    // Nothing of it disturbed service.
    let (status, body) = https(&setup, api, Some("vc"), "GET", "/upcheck", &[], "").unwrap();
    assert_eq!((status, body.as_str()), (200, "OK"));
}

/// 2,000 idle connections — raw TCP on every listener, and TLS sessions of a
/// certificate no policy client has — against a daemon whose descriptor
/// limit is 1,024 (soft and hard): a validator client that connects after
/// them still signs, over gRPC and HTTPS, and the daemon is still ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_floods_at_a_low_descriptor_limit_do_not_lock_clients_out() {
    // This process holds the flood: it needs more than 1,024 itself.
    let ours = signer::net::descriptor_budget();
    assert!(
        ours >= 2_500,
        "this test opens 2,000+ connections: raise the hard descriptor limit (ulimit -Hn) above 2,700"
    );
    let setup = setup_with_short_timeouts();
    let prlimit = std::process::Command::new("prlimit")
        .arg("--version")
        .output();
    assert!(
        prlimit.is_ok_and(|o| o.status.success()),
        "prlimit (util-linux) is needed to start the daemon with a 1,024 descriptor limit"
    );
    let d = Daemon::start_wrapped(
        &setup.path("signer.toml"),
        &setup.path("daemon.log"),
        &[],
        &["prlimit", "--nofile=1024:1024", "--"],
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    assert!(
        nofile.split_whitespace().filter(|w| *w == "1024").count() == 2,
        "{nofile}"
    );

    let mut flood = Vec::new();
    for (addr, n) in [(d.grpc, 900), (d.metrics, 400), (d.http_api.unwrap(), 600)] {
        for _ in 0..n {
            flood.push(tcp(addr));
        }
    }
    // TLS sessions of a certificate the CA issued to no policy client.
    let stranger = tests::daemon::client_config(
        &setup.path("tls/ca.pem"),
        Some((
            &setup.path("tls/stranger.pem"),
            &setup.path("tls/stranger.key"),
        )),
        b"h2",
    )
    .unwrap();
    let mut strangers = Vec::new();
    for _ in 0..100 {
        let conn = rustls::ClientConnection::new(stranger.clone(), "localhost".try_into().unwrap())
            .unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp(d.grpc));
        // Finish the handshake, then stay idle.
        let _ = s.flush();
        while s.conn.is_handshaking() {
            if s.conn.complete_io(&mut s.sock).is_err() {
                break;
            }
        }
        strangers.push(s);
    }
    assert_eq!(flood.len() + strangers.len(), 2_000);

    // A validator client arriving now signs, over gRPC…
    let mut vc = tokio::time::timeout(
        Duration::from_secs(60),
        signer::client::connect(d.grpc, "localhost", setup.client_tls("vc")),
    )
    .await
    .expect("the validator client's connection was not served: locked out")
    .unwrap();
    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        vc.sign(attestation(&setup.bls, 0, 1, 1)),
    )
    .await
    .expect("no answer")
    .unwrap()
    .into_inner();
    signature_of(answer);
    // …and over HTTPS, and the daemon says it is ready.
    let api = d.http_api.unwrap();
    let (status, body) = https(
        &setup,
        api,
        Some("vc"),
        "POST",
        &format!("/api/v1/eth2/sign/0x{}", hex::encode(&setup.bls)),
        &[("Content-Type", "application/json")],
        &serde_json::json!({
            "type": "RANDAO_REVEAL",
            "fork_info": {
                "fork": {"previous_version": "0x00000001", "current_version": "0x00000001", "epoch": "0"},
                "genesis_validators_root": GVR
            },
            "randao_reveal": {"epoch": "3"}
        })
        .to_string(),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = d.http("GET", "/readyz");
    assert_eq!(status, 200, "{body}");
    let log = d.log();
    assert!(
        !log.contains("Too many open files"),
        "the daemon ran out of descriptors"
    );
    assert!(
        log.contains("connection slots full: closing the oldest unauthenticated connections"),
        "the flood was noticed"
    );
    drop((flood, strangers));
}

/// The same attestation each time: signed again, never slashable.
fn same_attestation(key: &[u8]) -> proto::v1::SignRequest {
    attestation(key, 0, 1, 1)
}

/// One client floods the queue with `SignBatch` calls of 1,024 items while
/// another signs one request at a time. With one worker, a fair queue serves
/// the second client's request after at most the batch in progress, so the
/// flooder completes about one batch per request of the other — counted,
/// not timed. Before (one FIFO queue), each of the other client's requests
/// waited behind everything the flooder had queued (16 batches).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooding_client_does_not_starve_another() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let setup = Setup::new();
    setup.write_policy(&setup.policy_with(
        "[[grant]]\nclients = [\"node\"]\noperations = [\"eth2.duties\"]\nkey_groups = [\"validators\"]\nnetworks = [\"test-eth\"]\n",
    ));
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    setup.write(
        "signer.toml",
        &config.replacen("[server]\n", "[server]\nworkers = 1\n", 1),
    );
    let d = setup.start();

    let stop = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(AtomicUsize::new(0));
    let mut flooders = Vec::new();
    for _ in 0..8 {
        let mut vc = d.client(setup.client_tls("vc")).await;
        let (stop, batches, key) = (stop.clone(), batches.clone(), setup.bls.clone());
        flooders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let requests = (0..1024).map(|_| same_attestation(&key)).collect();
                let answer = vc
                    .sign_batch(proto::v1::SignBatchRequest { requests })
                    .await
                    .unwrap()
                    .into_inner();
                let signed = matches!(
                    answer.responses.first().and_then(|r| r.outcome.as_ref()),
                    Some(proto::v1::sign_response::Outcome::Signature(_))
                );
                if signed {
                    batches.fetch_add(1, Ordering::AcqRel);
                } else if let Some(proto::v1::sign_response::Outcome::Refusal(r)) =
                    answer.responses.first().and_then(|r| r.outcome.as_ref())
                {
                    assert_eq!(r.reason(), proto::v1::Reason::Overloaded, "{r:?}");
                    // Refused (queue full): wait for a batch to finish.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    // Once the flood is under way, the other client asks, one at a time.
    let started = std::time::Instant::now();
    while batches.load(Ordering::Acquire) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the flood never got going"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut node = d.client(setup.client_tls("node")).await;
    let before = batches.load(Ordering::Acquire);
    for _ in 0..10 {
        signature_of(
            node.sign(same_attestation(&setup.bls))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let during = batches.load(Ordering::Acquire) - before;
    stop.store(true, Ordering::Release);
    for f in flooders {
        f.await.unwrap();
    }
    println!(
        "the flooder completed {during} batches of 1,024 while the other client signed 10 requests"
    );
    assert!(
        during >= 5,
        "the flood did not run beside the requests ({during} batches)"
    );
    assert!(
        during <= 2 * 10 + 2,
        "each request waited for {during} flood batches in all (a fair share is about one per request)"
    );
}
