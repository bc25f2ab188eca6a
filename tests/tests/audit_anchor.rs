//! The audit log is anchored in the slashing database (issue 17, decision
//! 0008). Before: deleting the log made the daemon write on into the
//! deleted file and start a new chain at the next start that verified as
//! intact; removing the last records verified as intact too. Now the daemon
//! notices a log deleted, truncated or replaced under it (refuses to sign,
//! readiness red, an ERROR line), `signer audit verify --config` finds it at
//! rest, and `signer serve` does not start on it until `signer audit
//! acknowledge` records the loss in the log.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use proto::v1 as pb;
use signer::audit::{AuditLog, Entry};
use tests::daemon::{Daemon, Setup, attestation, refusal_of, signer_bin};
use tests::ha::serve_refused;

fn audit_log(setup: &Setup) -> PathBuf {
    setup.path("data/audit.jsonl")
}

/// Runs `signer audit ARGS…`: (success, stdout + stderr).
fn audit(args: &[&str], config: &Path) -> (bool, String) {
    let out = Command::new(signer_bin())
        .arg("audit")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Signs attestations `from..to` (fresh targets), each must sign.
async fn sign(d: &Daemon, setup: &Setup, range: std::ops::Range<u64>) {
    let mut vc = d.client(setup.client_tls("vc")).await;
    for s in range {
        let r = vc
            .sign(attestation(&setup.bls, s, s + 1, 1))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(refusal_of(r), None, "attestation {s}");
    }
}

/// Waits until the daemon has anchored `n` records (the anchor moves about
/// once a second; the bound is generous and only stops a hang).
fn wait_anchored(d: &Daemon, n: f64) {
    for _ in 0..300 {
        if d.metric("signer_audit_anchored_records") >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the anchor never reached {n} records: {}",
        d.metric("signer_audit_anchored_records")
    );
}

/// Waits until readiness is red with `why` in its body, then checks the
/// refusal and the ERROR line.
async fn noticed(d: &Daemon, setup: &Setup, why: &str) {
    let mut body = String::new();
    for _ in 0..300 {
        let (status, b) = d.http("GET", "/readyz");
        body = b;
        if status == 503 && body.contains(why) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(body.contains(why), "readiness never said {why:?}: {body}");
    assert!(body.contains("audit log:"), "{body}");
    let mut vc = d.client(setup.client_tls("vc")).await;
    let r = vc
        .sign(attestation(&setup.bls, 900, 901, 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refusal_of(r), Some(pb::Reason::BackendUnavailable));
    let log = d.log();
    assert!(
        log.contains("ERROR") && log.contains(why) && log.contains("every request is refused"),
        "{log}"
    );
}

/// The last `n` lines of `path` removed.
fn cut_last_lines(path: &Path, n: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let keep: String = lines[..lines.len() - n]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path, keep).unwrap();
}

/// A valid chain of `n` records that is not the signer's.
fn forged_log(path: &Path, n: u64) {
    let mut log = AuditLog::open(path).unwrap();
    for i in 0..n {
        log.append(Entry {
            client: "vc".into(),
            frontend: Some("grpc".into()),
            key: "00".repeat(48),
            request: "eth2.attestation".into(),
            position: Some(i),
            outcome: "signed".into(),
            note: None,
        })
        .unwrap();
    }
    log.sync().unwrap();
}

/// `signer serve` refuses to start, saying why and what to run.
fn start_refused(setup: &Setup, why: &str) {
    let (_, stderr) = serve_refused(&setup.path("signer.toml"));
    assert!(stderr.contains(why), "{stderr}");
    assert!(
        stderr.contains("signer audit acknowledge --config"),
        "the refusal names the command: {stderr}"
    );
}

/// `signer audit acknowledge`, refused without a real reason, then done;
/// afterwards the log verifies against the anchor and starts with (or ends
/// with) the acknowledgement record.
fn acknowledge(setup: &Setup, found: &str) {
    let config = setup.path("signer.toml");
    let (ok, out) = audit(&["acknowledge", "--reason", "oops"], &config);
    assert!(!ok && out.contains("at least 10 characters"), "{out}");
    let (ok, out) = audit(
        &[
            "acknowledge",
            "--reason",
            "INC-42: log lost with the old disk; approved by J. Doe",
        ],
        &config,
    );
    assert!(ok, "{out}");
    assert!(out.contains("acknowledged") && out.contains(found), "{out}");
    let (ok, out) = audit(&["verify"], &config);
    assert!(ok, "{out}");
    assert!(
        out.contains("matches the slashing database's anchor"),
        "{out}"
    );
    let text = std::fs::read_to_string(audit_log(setup)).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["request"], "audit.acknowledge");
    assert_eq!(last["outcome"], "acknowledged");
    let note = last["note"].as_str().unwrap();
    assert!(note.contains("INC-42") && note.contains(found), "{note}");
    // Nothing left to acknowledge.
    let (ok, out) = audit(&["acknowledge", "--reason", "again, to be sure"], &config);
    assert!(ok && out.contains("nothing to acknowledge"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_deleted_under_the_daemon_stops_signing_and_blocks_the_next_start_until_acknowledged()
{
    let setup = Setup::new();
    let config = setup.path("signer.toml");
    let d = setup.start();
    sign(&d, &setup, 0..3).await;
    wait_anchored(&d, 3.0);
    std::fs::remove_file(audit_log(&setup)).unwrap();
    noticed(&d, &setup, "the file was deleted under the running signer").await;
    assert!(d.log().contains("/fd/"), "says where the records still are");
    assert!(d.stop().success());

    let (ok, out) = audit(&["verify"], &config);
    assert!(!ok, "{out}");
    assert!(
        out.contains("the log does not exist, but the slashing database anchors 3 records"),
        "{out}"
    );
    start_refused(&setup, "the log does not exist");
    acknowledge(&setup, "does not exist");
    let d = setup.start();
    sign(&d, &setup, 3..4).await;
    assert!(d.stop().success());
    let (ok, out) = audit(&["verify"], &config);
    assert!(ok && out.contains("2 records"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_removed_from_the_end_are_found_at_rest_and_under_the_daemon() {
    let setup = Setup::new();
    let config = setup.path("signer.toml");
    let log = audit_log(&setup);
    let d = setup.start();
    sign(&d, &setup, 0..4).await;
    // A clean stop anchors exactly: even the last record is pinned.
    assert!(d.stop().success());
    cut_last_lines(&log, 1);
    // The chain alone cannot tell…
    let out = Command::new(signer_bin())
        .args(["audit", "verify"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("not compared with the slashing database's anchor")
    );
    // …the anchor can.
    let (ok, out) = audit(&["verify"], &config);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "the log has 3 records but the slashing database anchors 4: 1 records were removed"
        ),
        "{out}"
    );
    start_refused(&setup, "the slashing database anchors 4");
    acknowledge(&setup, "anchors 4");

    // Under the running daemon: the file cut short.
    let d = setup.start();
    sign(&d, &setup, 4..6).await;
    let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(100).unwrap();
    noticed(
        &d,
        &setup,
        "the file was truncated under the running signer",
    )
    .await;
    assert!(d.stop().success());
    let (ok, out) = audit(&["verify"], &config);
    assert!(
        !ok && out.contains("records were removed from its end"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_log_is_found_at_rest_and_under_the_daemon() {
    let setup = Setup::new();
    let config = setup.path("signer.toml");
    let log = audit_log(&setup);
    let d = setup.start();
    sign(&d, &setup, 0..2).await;
    assert!(d.stop().success());
    // A forged chain, longer than the real one, verifies on its own.
    std::fs::remove_file(&log).unwrap();
    forged_log(&log, 5);
    let (ok, out) = audit(&["verify"], &config);
    assert!(!ok, "{out}");
    assert!(
        out.contains("record 1 is not the one the slashing database anchors: the log was replaced"),
        "{out}"
    );
    start_refused(&setup, "the log was replaced or rewritten");
    acknowledge(&setup, "replaced");

    // Under the running daemon: another file renamed into its place.
    let d = setup.start();
    sign(&d, &setup, 2..3).await;
    let other = setup.path("data/other.jsonl");
    forged_log(&other, 1);
    std::fs::rename(&other, &log).unwrap();
    noticed(&d, &setup, "another file was put in its place").await;
    assert!(d.stop().success());
}
