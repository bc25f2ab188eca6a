//! `signer keys reseal` (issue 18, part 2): 2,000 sealed BLS key files
//! moved from one token AES key to another through hsm-sim, a device error
//! injected in the middle, and a second run that finishes the job; every
//! file whole under the old or the new key at every step, and the keys
//! usable by the daemon afterwards.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;

use hsm_sim::scenario::Fault;
use tests::daemon::{Setup, signer_bin};
use tests::hsm::{Sim, SoftHsm, add_key, configure_pkcs11, hsm_sim_module, softhsm_module};

const DISTINCT: usize = 20;
const COPIES: usize = 100;

fn reseal(setup: &Setup, env: &[(String, String)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(signer_bin())
        .args(["keys", "reseal", "--config"])
        .arg(setup.path("signer.toml"))
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How many files name each wrapping key label; fails on anything that is
/// not a whole sealed file (a torn write, a leftover temporary).
fn labels(dir: &Path) -> (usize, usize) {
    let (a, b, kms) = wrapping(dir, false);
    assert_eq!(kms, 0);
    (a, b)
}

/// Files under wrap-a, wrap-b and KMS (panics on anything else; while a
/// run is `in_flight`, its temporary file is not counted).
fn wrapping(dir: &Path, in_flight: bool) -> (usize, usize, usize) {
    let (mut a, mut b, mut kms) = (0, 0, 0);
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if in_flight && path.to_string_lossy().ends_with(".reseal-tmp") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not whole: {e}", path.display()));
        match (v["wrapping_key_label"].as_str(), v["kms_key"].as_str()) {
            (Some("wrap-a"), None) => a += 1,
            (Some("wrap-b"), None) => b += 1,
            (None, Some(arn)) if arn.starts_with("arn:aws:kms:") => kms += 1,
            other => panic!("{}: {other:?}", path.display()),
        }
    }
    (a, b, kms)
}

/// A SoftHSM token with AES keys wrap-a and wrap-b, and 20 fresh BLS keys
/// sealed under wrap-a in `setup`'s `sealed/`, each file copied 100 times.
fn sealed_under_wrap_a(setup: &Setup) -> SoftHsm {
    let hsm = SoftHsm::new(&["tok-a"]);
    for label in ["wrap-a", "wrap-b"] {
        hsm.keys(
            &softhsm_module(),
            "tok-a",
            &["generate", "--scheme", "aes256", "--label", label],
        );
    }
    let dir = setup.path("sealed");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..DISTINCT {
        let first = dir.join(format!("k{i:02}-000.json"));
        hsm.keys(
            &softhsm_module(),
            "tok-a",
            &[
                "seal",
                "--wrapping-key",
                "wrap-a",
                "--generate",
                "--out",
                first.to_str().unwrap(),
            ],
        );
        for j in 1..COPIES {
            std::fs::copy(&first, dir.join(format!("k{i:02}-{j:03}.json"))).unwrap();
        }
    }
    assert_eq!(labels(&dir), (DISTINCT * COPIES, 0));
    hsm
}

/// A daemon configured with the 20 distinct sealed files (`kind`: the key
/// type) starts — so each unseals — and holds them beside the setup's two
/// file BLS keys.
fn serves_the_distinct_keys(setup: &mut Setup, env: Vec<(String, String)>, kind: &str) {
    for i in 0..DISTINCT {
        add_key(
            setup,
            &format!("type = \"{kind}\"\npath = \"sealed/k{i:02}-000.json\""),
        );
    }
    setup.env = env;
    let daemon = setup.start();
    assert_eq!(
        daemon.metric("signer_keys_loaded{scheme=\"bls\"}"),
        (2 + DISTINCT) as f64
    );
    assert!(daemon.stop().success());
}

#[test]
fn two_thousand_sealed_keys_move_to_another_token_key_through_a_failure() {
    let mut setup = Setup::new();
    let hsm = sealed_under_wrap_a(&setup);
    let dir = setup.path("sealed");
    let total = DISTINCT * COPIES;

    // The tokens as the daemon reaches them, through hsm-sim.
    let sim = Sim::new(hsm.path());
    configure_pkcs11(&setup, &hsm, 2000, &[("a", &hsm_sim_module(), "tok-a")]);
    let mut env = hsm.env();
    env.push(sim.env());
    let d = dir.to_str().unwrap();

    // A wrapping key the signer cannot use: refused before any file changes.
    let (code, out, err) = reseal(&setup, &env, &["--to", "pkcs11:a:wrap-x", d]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("the new wrapping key (pkcs11 token a key wrap-x) cannot be used")
            && err.contains("no AES key labelled \"wrap-x\"")
            && err.contains("nothing was changed"),
        "{err}"
    );
    let (code, _, err) = reseal(&setup, &env, &["--to", "pkcs11:wrap-b", d]);
    assert_eq!(code, 1);
    assert!(err.contains("give pkcs11:TOKEN:LABEL"), "{err}");
    assert_eq!(labels(&dir), (total, 0));

    // Dry run: what would move; nothing does.
    let (code, out, _) = reseal(&setup, &env, &["--to", "pkcs11:a:wrap-b", "--dry-run", d]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("k00-000.json: would move pkcs11 key wrap-a -> pkcs11 token a key wrap-b\n"),
        "{out}"
    );
    assert!(
        out.ends_with(&format!("dry run: {total} to reseal to pkcs11 token a key wrap-b (checked: it seals and unseals), 0 already there, 0 unreadable; nothing was changed\n")),
        "{out}"
    );
    assert_eq!(labels(&dir), (total, 0));

    // The token fails every encryption after the 1,000th: the run stops
    // moving files there, says so, and leaves every file whole.
    sim.set(
        vec![Fault {
            function: "C_Encrypt".into(),
            after: 1000,
            rv: Some("CKR_DEVICE_ERROR".into()),
            ..Fault::default()
        }],
        Vec::new(),
    );
    let (code, out, err) = reseal(&setup, &env, &["--to", "pkcs11:a:wrap-b", d]);
    assert_eq!(code, 1, "{out}{err}");
    let (a, b) = labels(&dir);
    assert_eq!(a + b, total);
    assert!(a > 0 && b > 0, "the fault hit in the middle: {a} {b}");
    assert!(
        out.contains(&format!(
            "{total} files: {b} resealed to pkcs11 token a key wrap-b, 0 already there, {a} failed\n"
        )),
        "{out}"
    );
    assert!(out.contains("CKR_DEVICE_ERROR"), "{out}");
    assert!(
        out.contains("run the same command again to finish"),
        "{out}"
    );
    assert!(
        err.contains(&format!("reseal: {total} of {total} files (100%)")),
        "{err}"
    );

    // Fixed: the same command finishes the job.
    sim.clear();
    let (code, out, err) = reseal(&setup, &env, &["--to", "pkcs11:a:wrap-b", d]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.ends_with(&format!(
            "{total} files: {a} resealed to pkcs11 token a key wrap-b, {b} already there, 0 failed\n"
        )),
        "{out}"
    );
    assert_eq!(labels(&dir), (0, total));

    // The daemon serves the moved keys: each distinct one unseals under wrap-b.
    serves_the_distinct_keys(&mut setup, env, "pkcs11_sealed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_sealed_keys_move_from_a_token_to_kms_through_an_outage() {
    use tests::kms::{aws_env, client, configure_kms, create_key, fault_file, set_faults, sim};
    let mut setup = Setup::new();
    let hsm = sealed_under_wrap_a(&setup);
    let dir = setup.path("sealed");
    let total = DISTINCT * COPIES;
    let faults = fault_file(&setup.path("data"));
    let kms = sim(Some(&faults), false);
    let c = client(&kms.url).await;
    let seal_key = create_key(&c, aws_sdk_kms::types::KeySpec::SymmetricDefault, &[]).await;
    c.create_alias()
        .alias_name("alias/bls-seal")
        .target_key_id(&seal_key)
        .send()
        .await
        .unwrap();
    configure_pkcs11(&setup, &hsm, 2000, &[("a", &softhsm_module(), "tok-a")]);
    configure_kms(&setup, &kms.url, "");
    let mut env = hsm.env();
    env.extend(aws_env());
    let d = dir.to_str().unwrap().to_owned();

    // KMS starts refusing every Encrypt once a hundred files have moved.
    let run = {
        let (config, env) = (setup.path("signer.toml"), env.clone());
        let d = d.clone();
        std::thread::spawn(move || {
            Command::new(signer_bin())
                .args(["keys", "reseal", "--config"])
                .arg(config)
                .args(["--to", "kms:alias/bls-seal", &d])
                .envs(env)
                .output()
                .unwrap()
        })
    };
    loop {
        let (_, _, moved) = wrapping(&dir, true);
        if moved >= 100 || run.is_finished() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    set_faults(
        &faults,
        vec![hsm_sim::kms::KmsFault {
            op: "Encrypt".into(),
            error: Some("DisabledException".into()),
            ..Default::default()
        }],
    );
    let out = run.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let (a, b, moved) = wrapping(&dir, false);
    assert_eq!((a + moved, b), (total, 0));
    assert!(moved >= 100 && a > 0, "{a} {moved}");
    assert!(
        stdout.contains(&format!(
            "{total} files: {moved} resealed to kms key alias/bls-seal, 0 already there, {a} failed\n"
        )),
        "{stdout}"
    );

    // KMS back: the same command finishes.
    set_faults(&faults, Vec::new());
    let (code, out, err) = reseal(&setup, &env, &["--to", "kms:alias/bls-seal", &d]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.ends_with(&format!(
            "{total} files: {a} resealed to kms key alias/bls-seal, {moved} already there, 0 failed\n"
        )),
        "{out}"
    );
    assert_eq!(wrapping(&dir, false), (0, 0, total));

    // And the daemon serves them, unsealed by KMS now.
    serves_the_distinct_keys(&mut setup, env, "kms_sealed");
}
