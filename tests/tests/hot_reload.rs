//! Keys change while serving (issue 18, part 3): `signer reload`, SIGHUP
//! and `POST /reload` answer with what changed; removed keys refuse at once
//! while unchanged keys sign on; and memory stays flat over many reloads
//! that add and remove many keys (measured from /proc, not timed).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use proto::v1 as pb;
use tests::daemon::{Setup, attestation, proc_status_kib, refusal_of, signer_bin};

/// A BLS secret key (below the group order: the top byte is small) that is
/// the same for the same `(set, i)`.
fn secret(set: u8, i: u32) -> String {
    let mut b = [0u8; 32];
    b[0] = 0x10 + set;
    b[1..5].copy_from_slice(&i.to_be_bytes());
    b[31] = 1;
    format!("0x{}", hex::encode(b))
}

/// `n` Web3Signer `file-raw` key configurations of `set` in `dir`.
fn key_dir(dir: &Path, set: u8, n: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::write(
            dir.join(format!("k{i}.yaml")),
            format!(
                "type: \"file-raw\"\nkeyType: \"BLS\"\nprivateKey: \"{}\"\n",
                secret(set, i)
            ),
        )
        .unwrap();
    }
}

/// Points `link` at `target` atomically (a reload sees one set or the other).
fn point(link: &Path, target: &Path) {
    let tmp = link.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

fn bls_public(secret_hex: &str) -> Vec<u8> {
    signer::crypto::bls::BlsSecretKey::from_bytes(&hex::decode(&secret_hex[2..]).unwrap())
        .unwrap()
        .public_key()
        .to_bytes()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_say_what_changed_removed_keys_refuse_at_once_and_unchanged_keys_never_stop() {
    let setup = Setup::new();
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    setup.write(
        "signer.toml",
        &format!("{config}\n[[keys]]\ntype = \"web3signer_dir\"\npath = \"keydir\"\n"),
    );
    let (a, b) = (setup.path("set-a"), setup.path("set-b"));
    key_dir(&a, 0, 3);
    key_dir(&b, 1, 2);
    point(&setup.path("keydir"), &a);
    // vc may use the dir keys of both sets.
    let dir_keys: Vec<String> = (0..3)
        .map(|i| secret(0, i))
        .chain((0..2).map(|i| secret(1, i)))
        .map(|s| format!("\"0x{}\"", hex::encode(bls_public(&s))))
        .collect();
    setup.write_policy(&setup.policy_with(&format!(
        "\n[key_groups.dir]\nkeys = [{}]\n\n[[grant]]\nclients = [\"vc\"]\noperations = [\"eth2.duties\"]\nkey_groups = [\"dir\"]\nnetworks = [\"test-eth\"]\n",
        dir_keys.join(", ")
    )));
    let d = setup.start();
    let removed = bls_public(&secret(0, 0));

    // A signing load on a key that no reload touches.
    let stop = Arc::new(AtomicBool::new(false));
    let (signed, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, signed, failed) = (stop.clone(), signed.clone(), failed.clone());
        let mut vc = d.client(setup.client_tls("vc")).await;
        let key = setup.bls.clone();
        tokio::spawn(async move {
            let mut source = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = vc
                    .sign(attestation(&key, source, source + 1, 1))
                    .await
                    .unwrap()
                    .into_inner();
                source += 1;
                match refusal_of(r) {
                    None => signed.fetch_add(1, Ordering::Relaxed),
                    Some(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let mut vc = d.client(setup.client_tls("vc")).await;
    assert_eq!(
        refusal_of(
            vc.sign(attestation(&removed, 0, 1, 1))
                .await
                .unwrap()
                .into_inner()
        ),
        None
    );

    // `signer reload`: the diff, from the CLI.
    point(&setup.path("keydir"), &b);
    let reload_cli = |extra: &[String]| {
        Command::new(signer_bin())
            .args(["reload", "--config"])
            .arg(setup.path("signer.toml"))
            .args(extra)
            .output()
            .unwrap()
    };
    // The test's config leaves the port to the daemon: the CLI says what to do.
    let out = reload_cli(&[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("give --metrics HOST:PORT"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = reload_cli(&["--metrics".into(), d.metrics.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("keys: 6 loaded (2 added, 3 removed, 4 unchanged, 0 failed)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("  - 0x{}", hex::encode(&removed))),
        "{text}"
    );
    assert!(
        text.contains(&format!("  + 0x{}", hex::encode(bls_public(&secret(1, 0))))),
        "{text}"
    );
    // Removed: refused from the very next request.
    assert_eq!(
        refusal_of(
            vc.sign(attestation(&removed, 1, 2, 1))
                .await
                .unwrap()
                .into_inner()
        ),
        Some(pb::Reason::UnknownKey)
    );
    let added = bls_public(&secret(1, 1));
    assert_eq!(
        refusal_of(
            vc.sign(attestation(&added, 0, 1, 1))
                .await
                .unwrap()
                .into_inner()
        ),
        None
    );

    // A source that fails is named; what loads is in service.
    std::fs::write(
        b.join("broken.yaml"),
        "type: \"file-raw\"\nkeyType: \"BLS\"\nprivateKey: \"0x12\"\n",
    )
    .unwrap();
    let (status, body) = d.http("POST", "/reload");
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("keys: 6 loaded (0 added, 0 removed, 6 unchanged, 1 failed)"),
        "{body}"
    );
    assert!(
        body.contains("  failed: ") && body.contains("broken.yaml"),
        "{body}"
    );
    // The status can be read afterwards (and while one runs).
    let (status, json) = d.http("GET", "/reload");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["status"], "completed_with_errors", "{v}");
    assert_eq!(v["keys"]["unchanged"], 6, "{v}");
    assert!(
        v["lastError"].as_str().unwrap().contains("broken.yaml"),
        "{v}"
    );
    std::fs::remove_file(b.join("broken.yaml")).unwrap();

    // SIGHUP reloads too.
    point(&setup.path("keydir"), &a);
    d.signal("HUP");
    let mut seen = false;
    for _ in 0..300 {
        if d.log().contains("added=3 removed=2") {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(seen, "{}", d.log());

    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "a request for an unchanged key failed"
    );
    assert!(signed.load(Ordering::Relaxed) > 0);
    println!(
        "unchanged key signed {} times across the reloads",
        signed.load(Ordering::Relaxed)
    );
    assert!(d.stop().success());
}

/// 1,000 reloads that each remove 1,000 keys and add 1,000 others leave the
/// resident memory within a few MiB of where it was after the first ones.
#[test]
fn memory_stays_flat_over_a_thousand_reloads_of_a_thousand_keys() {
    const KEYS: u32 = 1_000;
    const RELOADS: usize = 1_000;
    let setup = Setup::new();
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    setup.write(
        "signer.toml",
        &format!("{config}\n[[keys]]\ntype = \"web3signer_dir\"\npath = \"keydir\"\n"),
    );
    let (a, b) = (setup.path("set-a"), setup.path("set-b"));
    key_dir(&a, 0, KEYS);
    key_dir(&b, 1, KEYS);
    point(&setup.path("keydir"), &a);
    let d = setup.start();
    let link = setup.path("keydir");
    let reload = |i: usize| {
        point(&link, if i.is_multiple_of(2) { &b } else { &a });
        let (status, body) = d.http("POST", "/reload");
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains(&format!(
                "({KEYS} added, {KEYS} removed, 4 unchanged, 0 failed)"
            )),
            "reload {i}: {body}"
        );
    };
    // Warm up: allocator arenas and caches reach their working size.
    for i in 0..50 {
        reload(i);
    }
    let before = proc_status_kib(d.pid(), "VmRSS:");
    for i in 50..RELOADS {
        reload(i);
    }
    let after = proc_status_kib(d.pid(), "VmRSS:");
    println!(
        "VmRSS after 50 reloads {before} KiB, after {RELOADS}: {after} KiB ({KEYS} keys out and {KEYS} in each)"
    );
    assert!(
        after <= before + 8 * 1024,
        "resident memory grew by {} KiB over {} reloads",
        after.saturating_sub(before),
        RELOADS - 50
    );
    assert!(d.stop().success());
}
