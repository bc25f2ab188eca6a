//! `signer status` (issue 19, part 6): what the running daemon sees, from
//! its metrics listener, human-readable or JSON; exit 0 ready, 1 not ready,
//! 2 unreachable.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

use tests::daemon::{Daemon, Setup, signer_bin};

fn status(setup: &Setup, d: Option<&Daemon>, extra: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(signer_bin());
    c.args(["status", "--config"])
        .arg(setup.path("signer.toml"));
    match d {
        Some(d) => c.args(["--metrics", &d.metrics.to_string()]),
        None => c.args(["--metrics", "127.0.0.1:1"]),
    };
    let out = c.args(extra).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn status_shows_what_the_daemon_sees() {
    let setup = Setup::new();
    let key = format!("0x{}", hex::encode(&setup.bls));
    let disable = Command::new(signer_bin())
        .args([
            "keys",
            "disable",
            &key,
            "--reason",
            "exiting, OPS-1 approved",
            "--config",
        ])
        .arg(setup.path("signer.toml"))
        .output()
        .unwrap();
    assert!(
        disable.status.success(),
        "{}",
        String::from_utf8_lossy(&disable.stderr)
    );
    let d = setup.start();

    let (code, out, err) = status(&setup, Some(&d), &[]);
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "signer ",
        ": READY\n",
        "  serving ",
        "keys: 4 loaded (",
        &format!("  out of service: {key} disabled "),
        "by ",
        ": exiting, OPS-1 approved\n",
        "slashing database: sqlite, durability file\n",
        "audit log: 0 records, ",
        "certificate server: expires ",
        "last reload: idle\n",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }

    let (code, out, _) = status(&setup, Some(&d), &["--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ready"], true);
    assert_eq!(v["keys"]["loaded"], 4);
    assert_eq!(v["keys"]["out_of_service"][0]["key"], key.as_str());
    assert_eq!(v["keys"]["out_of_service"][0]["state"], "disabled");
    assert_eq!(v["database"]["durability"], "file");
    assert!(v["certificates"][0]["days_left"].as_i64().unwrap() > 0);
    assert!(d.stop().success());

    // A chain no node serves: not ready, and why.
    setup.enable_cometbft(
        "status-chain",
        "v0.38",
        &[(
            "unix:///nonexistent/privval.sock".into(),
            "unix:///nonexistent/privval.sock".into(),
        )],
    );
    let d = setup.start();
    let (code, out, _) = status(&setup, Some(&d), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(": NOT READY\n"), "{out}");
    assert!(
        out.contains("NOT OK: a chain has no node connected"),
        "{out}"
    );
    assert!(
        out.contains("chain status-chain: 0/1 nodes connected\n"),
        "{out}"
    );
    assert!(
        out.contains("  unix:///nonexistent/privval.sock NOT connected\n"),
        "{out}"
    );
    assert!(d.stop().success());

    // Nobody there.
    let (code, _, err) = status(&setup, None, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("is the signer running?"), "{err}");
}
