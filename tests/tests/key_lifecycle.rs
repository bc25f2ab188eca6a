//! `signer keys disable|enable|retire` (issue 18): the state lives in the
//! slashing database, so the key refuses with KEY_DISABLED on every instance
//! sharing it; each change is an audit event; retirement is final and keeps
//! the key's history.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use proto::v1 as pb;
use tests::daemon::{Daemon, Setup, attestation, refusal_of, signer_bin};
use tests::ha::{Instances, local};
use tests::pg::PgCluster;

/// `signer keys VERB KEY --reason REASON --config CONFIG [extra]`:
/// (success, stdout + stderr).
fn keys(verb: &str, key: &str, reason: &str, config: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(signer_bin())
        .args(["keys", verb, key, "--reason", reason, "--config"])
        .arg(config)
        .args(extra)
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

async fn ask(d: &Daemon, setup: &Setup, source: u64) -> Option<pb::Reason> {
    let mut vc = d.client(setup.client_tls("vc")).await;
    refusal_of(
        vc.sign(attestation(&setup.bls, source, source + 1, 1))
            .await
            .unwrap()
            .into_inner(),
    )
}

/// The audit records of `path` for `request`.
fn audit_records(path: &Path, request: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["request"] == request)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_key_refuses_until_enabled_and_a_retired_one_for_good() {
    let setup = Setup::new();
    let config = setup.path("signer.toml");
    let log = setup.path("data/audit.jsonl");
    let key = format!("0x{}", hex::encode(&setup.bls));
    let d = setup.start();
    assert_eq!(ask(&d, &setup, 0).await, None);
    assert!(d.stop().success());

    // Tired-operator mistakes: each refused, saying what is wrong.
    let (ok, out) = keys("disable", "0x1234", "validator exiting", &config, &[]);
    assert!(
        !ok && out.contains("KEY:") && out.contains("BLS key is 48 bytes"),
        "{out}"
    );
    let (ok, out) = keys("disable", &key, "exit", &config, &[]);
    assert!(!ok && out.contains("at least 10 characters"), "{out}");
    let (ok, out) = keys("enable", &key, "nothing to enable here", &config, &[]);
    assert!(ok && out.contains("in service; nothing to change"), "{out}");
    // A dry run changes nothing.
    let (ok, out) = keys(
        "disable",
        &key,
        "validator 42 exiting (OPS-7)",
        &config,
        &["--dry-run"],
    );
    assert!(
        ok && out.contains("would disable it") && out.contains("dry run"),
        "{out}"
    );
    let d = setup.start();
    assert_eq!(
        ask(&d, &setup, 1).await,
        None,
        "the dry run disabled nothing"
    );
    assert!(d.stop().success());

    let (ok, out) = keys(
        "disable",
        &key,
        "validator 42 exiting (OPS-7)",
        &config,
        &[],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("was in service") && out.contains("now disabled ("),
        "{out}"
    );
    assert!(
        out.contains("audit record"),
        "no signer holds the log: recorded here: {out}"
    );
    let disabled = audit_records(&log, "key.disable");
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0]["key"], hex::encode(&setup.bls));
    assert_eq!(disabled[0]["outcome"], "disabled");
    assert!(disabled[0]["note"].as_str().unwrap().contains("OPS-7"));

    let d = setup.start();
    assert_eq!(ask(&d, &setup, 2).await, Some(pb::Reason::KeyDisabled));
    assert_eq!(
        d.metric("signer_requests_total{frontend=\"grpc\",operation=\"eth2.attestation\",outcome=\"key_disabled\"}"),
        1.0
    );
    assert!(d.stop().success());
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("\"outcome\":\"refused:key_disabled\""),
        "the refusal is audited"
    );

    let (ok, out) = keys("enable", &key, "exit cancelled by the team", &config, &[]);
    assert!(
        ok && out.contains("was disabled (") && out.contains("now in service (enabled "),
        "{out}"
    );
    let d = setup.start();
    assert_eq!(ask(&d, &setup, 3).await, None);
    assert!(d.stop().success());

    let (ok, out) = keys("retire", &key, "exited at epoch 300000", &config, &[]);
    assert!(ok && out.contains("now retired ("), "{out}");
    let (ok, out) = keys("enable", &key, "changed my mind again", &config, &[]);
    assert!(!ok && out.contains("retirement is final"), "{out}");
    let d = setup.start();
    assert_eq!(ask(&d, &setup, 4).await, Some(pb::Reason::KeyDisabled));
    assert!(d.stop().success());
    // The history is kept, for export.
    let out = Command::new(signer_bin())
        .args(["slashing", "export", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&hex::encode(&setup.bls)));
    let (ok, out) = {
        let o = Command::new(signer_bin())
            .args(["audit", "verify", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    assert!(
        ok && out.contains("matches the slashing database's anchor"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_on_a_shared_database_refuses_a_disabled_key_and_audits_it() {
    let pg = PgCluster::start("");
    let schema = pg.new_schema();
    let setup = Setup::new();
    let key = format!("0x{}", hex::encode(&setup.bls));
    let instances = Instances::start(setup, &local(pg.port), &schema, 2, 3000, "").await;
    let setup = &instances.setup;
    for i in 0..2 {
        assert_eq!(ask(instances.daemon(i), setup, i as u64 * 10).await, None);
    }
    // Disabled through the shared database while both serve.
    let (ok, out) = keys(
        "disable",
        &key,
        "suspected compromise, INC-9",
        &instances.configs[0],
        &[],
    );
    assert!(ok, "{out}");
    assert!(out.contains("refuses it within a second"), "{out}");
    for i in 0..2 {
        let d = instances.daemon(i);
        let mut refused = false;
        for attempt in 0..300u64 {
            if ask(d, setup, 100 + i as u64 * 1000 + attempt).await == Some(pb::Reason::KeyDisabled)
            {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(refused, "instance {i} never refused the disabled key");
    }
    let (ok, out) = keys(
        "enable",
        &key,
        "false alarm, INC-9 closed",
        &instances.configs[1],
        &[],
    );
    assert!(ok, "{out}");
    for i in 0..2 {
        let d = instances.daemon(i);
        let mut signed = false;
        for attempt in 0..300u64 {
            if ask(d, setup, 500 + i as u64 * 1000 + attempt)
                .await
                .is_none()
            {
                signed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            signed,
            "instance {i} never signed with the enabled key again"
        );
    }
    // Each instance recorded both changes in its own audit log, as seen in
    // the database (no CLI could write those logs: the instances hold them).
    for i in 0..2 {
        let log = setup.path(&format!("data/audit-i{i}.jsonl"));
        for (request, note) in [("key.disable", "INC-9"), ("key.enable", "false alarm")] {
            let r = audit_records(&log, request);
            assert_eq!(r.len(), 1, "{}: {request}", log.display());
            assert_eq!(
                r[0]["frontend"], "database",
                "seen in the database by the instance"
            );
            assert!(r[0]["note"].as_str().unwrap().contains(note));
        }
    }
    instances.stop();
}

/// `2026-12-06T04:01:02.123Z`-like times replaced by `<time>`.
fn without_times(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("20") {
        let candidate = &rest[i..];
        let b = candidate.as_bytes();
        let is_time = b.len() > 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[..4].iter().all(u8::is_ascii_digit);
        if is_time {
            let end = candidate.find('Z').map_or(candidate.len(), |z| z + 1);
            out.push_str(&rest[..i]);
            out.push_str("<time>");
            rest = &candidate[end..];
        } else {
            out.push_str(&rest[..i + 2]);
            rest = &rest[i + 2..];
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn lifecycle_commands_say_what_they_would_do_and_what_they_did() {
    let setup = Setup::new();
    let config = setup.path("signer.toml");
    // The database and the audit log exist, no signer holds them.
    assert!(setup.start().stop().success());
    let key = format!("0x{}", hex::encode(&setup.bls));
    let steps: [(&str, &str, bool); 7] = [
        ("disable", "validator 42 exiting (OPS-7)", true),
        ("disable", "validator 42 exiting (OPS-7)", false),
        ("disable", "validator 42 exiting (OPS-7)", false),
        ("enable", "exit cancelled (OPS-8)", false),
        ("retire", "moved to the new HSM (OPS-9)", true),
        ("retire", "moved to the new HSM (OPS-9)", false),
        ("enable", "undo the retirement please", false),
    ];
    let mut transcript = String::new();
    for (verb, reason, dry) in steps {
        let mut c = Command::new(signer_bin());
        c.args(["keys", verb, &key, "--reason", reason, "--config"])
            .arg(&config)
            .env("USER", "ops-alice")
            .env_remove("SUDO_USER");
        if dry {
            c.arg("--dry-run");
        }
        let out = c.output().unwrap();
        transcript.push_str(&format!(
            "$ signer keys {verb} KEY --reason \"{reason}\"{}\n{}{}exit {}\n",
            if dry { " --dry-run" } else { "" },
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            out.status.code().unwrap()
        ));
    }
    let dir = setup.path("tls");
    let dir = dir.parent().unwrap().display().to_string();
    let got = without_times(
        &transcript
            .replace(&dir, "<dir>")
            .replace(&hex::encode(&setup.bls), "<key>"),
    );
    let want = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/golden/key-lifecycle.txt"
    ))
    .unwrap();
    assert_eq!(got, want, "\n{transcript}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_signer_on_sqlite_disables_a_key_when_asked_and_audits_it() {
    let setup = Setup::new();
    let config = setup.path("signer.toml");
    let key = format!("0x{}", hex::encode(&setup.bls));
    let d = setup.start();
    let control = setup.path("data/slashing.sqlite.control");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&control).unwrap().permissions().mode() & 0o777,
        0o600,
        "only the signer's user may read the control token"
    );
    assert_eq!(ask(&d, &setup, 0).await, None);

    // The daemon holds the database: the command asks it instead.
    let (ok, out) = keys(
        "disable",
        &key,
        "suspected compromise (INC-9)",
        &config,
        &["--dry-run"],
    );
    assert!(
        ok && out.contains(
            "  would disable it: suspected compromise (INC-9)\n  (dry run: nothing changed)"
        ),
        "{out}"
    );
    assert_eq!(ask(&d, &setup, 1).await, None, "a dry run changes nothing");
    let (ok, out) = keys(
        "disable",
        &key,
        "suspected compromise (INC-9)",
        &config,
        &[],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("was in service\n  now disabled (")
            && out.contains("made by the running signer, which holds the SQLite database"),
        "{out}"
    );
    // In force at once: no restart.
    assert_eq!(ask(&d, &setup, 2).await, Some(pb::Reason::KeyDisabled));
    let (ok, out) = keys("enable", &key, "false alarm, key is fine", &config, &[]);
    assert!(ok && out.contains("now in service (enabled "), "{out}");
    assert_eq!(ask(&d, &setup, 3).await, None);

    // Without the token (or with a wrong one): refused, nothing changes.
    let (status, body) = tests::daemon::plain_http(d.metrics, "POST", "/keys/state");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("control token"), "{body}");
    let log = d.log();
    assert!(d.stop().success());
    assert!(!control.exists(), "a clean stop removes the token:\n{log}");

    // Both changes are in the daemon's audit log.
    let records = audit_records(&setup.path("data/audit.jsonl"), "key.disable");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["frontend"], "database");
    assert!(records[0]["note"].as_str().unwrap().contains("INC-9"));
    assert_eq!(
        audit_records(&setup.path("data/audit.jsonl"), "key.enable").len(),
        1
    );

    // No signer running and no token: the command opens the database itself.
    let (ok, out) = keys("disable", &key, "validator exiting (OPS-11)", &config, &[]);
    assert!(ok && out.contains("audit record "), "{out}");
}
