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

/// The page with what changes from run to run replaced by placeholders.
fn normalise(out: &str, setup: &Setup) -> String {
    let dir = setup.path("tls");
    let dir = dir.parent().unwrap().display().to_string();
    let bls = format!("0x{}", hex::encode(&setup.bls));
    let text = out.replace(&dir, "<dir>").replace(&bls, "<bls>");
    let mut o = String::new();
    for line in text.lines() {
        let line = if let Some(rest) = line.strip_prefix("signer ") {
            format!("signer <version>: {}", rest.split_once(": ").unwrap().1)
        } else if let Some(rest) = line.strip_prefix("  out of service: <bls> disabled ") {
            let (_, after_time) = rest.split_once(" by ").unwrap();
            let (_, reason) = after_time.split_once(": ").unwrap();
            format!("  out of service: <bls> disabled <time> by <who>: {reason}")
        } else if let Some(rest) = line.strip_prefix("audit log: ") {
            let (records, _) = rest.split_once(", ").unwrap();
            format!("audit log: {records}, <anchored>")
        } else if line.starts_with("certificate ") {
            let (name, rest) = line.split_once(": expires ").unwrap();
            let soon = if rest.ends_with("  RENEW SOON") {
                "  RENEW SOON"
            } else {
                ""
            };
            format!("{name}: expires <date> (<n> days){soon}")
        } else if let Some((head, _)) = line.split_once(" down: ") {
            format!("{head} down: <why>)")
        } else if let Some((head, _)) = line.split_once(": DOWN (") {
            format!("{head}: DOWN (<why>)")
        } else {
            line.to_owned()
        };
        o.push_str(&line);
        o.push('\n');
    }
    o
}

fn golden(name: &str) -> String {
    std::fs::read_to_string(format!("{}/golden/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
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
    assert_eq!(
        normalise(&out, &setup),
        golden("status-healthy.txt"),
        "{out}"
    );
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

#[test]
fn status_with_a_backend_down_says_which_and_why() {
    use tests::hsm::{Sim, SoftHsm, add_key, configure_pkcs11, hsm_sim_module};
    let mut setup = Setup::new();
    // The Ed25519 key moves into a SoftHSM token reached through hsm-sim.
    let hsm = SoftHsm::new(&["tok-a"]);
    hsm.import_setup_ed25519(&setup, "tok-a", "consensus");
    setup.drop_file_key("ed25519");
    let sim = Sim::new(hsm.path());
    let module = hsm_sim_module();
    configure_pkcs11(&setup, &hsm, 2000, &[("a", module.as_path(), "tok-a")]);
    add_key(&setup, "type = \"pkcs11\"\nlabel = \"consensus\"");
    setup.env = hsm.env();
    setup.env.push(sim.env());
    let d = setup.start();
    let (code, out, _) = status(&setup, Some(&d), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("backend pkcs11 a: up\n"), "{out}");

    // The token is pulled: the session keepalive (every second) notices.
    sim.set(Vec::new(), vec!["tok-a".into()]);
    let mut seen = None;
    for _ in 0..200 {
        let (code, out, _) = status(&setup, Some(&d), &[]);
        if code == 1 {
            seen = Some(out);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = seen.unwrap_or_else(|| panic!("the token's removal never showed:\n{}", d.log()));
    assert_eq!(
        normalise(&out, &setup),
        golden("status-backend-down.txt"),
        "{out}"
    );
    // The reason names the token's state, not nothing.
    let why = out.split(": DOWN (").nth(1).unwrap();
    assert!(why.len() > 3, "{out}");
    let (code, json, _) = status(&setup, Some(&d), &["--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["backends"][0]["backend"], "pkcs11");
    assert_eq!(v["backends"][0]["target"], "a");
    assert_eq!(v["backends"][0]["up"], false);

    // Back: ready again, the backend up.
    sim.clear();
    let mut back = false;
    for _ in 0..200 {
        if status(&setup, Some(&d), &[]).0 == 0 {
            back = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(back, "{}", d.log());
    assert!(d.stop().success());
}
