//! `signer slashing …` on real database files, through the real binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::signer;

use std::path::{Path, PathBuf};

fn vector(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors/eip3076")
        .join(name)
}

#[test]
fn import_inspect_export_prune_and_refuse_while_held() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("slashing.sqlite");
    let db_s = db.to_str().unwrap();
    // An interchange step from the EIP-3076 suite, written as a file.
    let t: serde_json::Value = serde_json::from_slice(
        &std::fs::read(vector(
            "multiple_validators_multiple_blocks_and_attestations.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let file = dir.path().join("in.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&t["steps"][0]["interchange"]).unwrap(),
    )
    .unwrap();

    let (code, out, err) = signer(&["slashing", "import", "--db", db_s, file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("imported 3 validator entries"), "{out}");

    let (code, out, _) = signer(&["slashing", "inspect", "--db", db_s]);
    assert_eq!(code, 0);
    assert!(out.contains("network:      genesis validators root 0x0000000000000000000000000000000000000000000000000000000000000000"), "{out}");
    // Counted from the file, not by the code under test.
    let count = |field: &str| -> u64 {
        t["steps"][0]["interchange"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v[field].as_array().unwrap().len() as u64)
            .sum()
    };
    let (blocks, atts) = (count("signed_blocks"), count("signed_attestations"));
    assert!(
        out.contains(&format!(
            "validators:   3 ({blocks} blocks, {atts} attestations recorded)\n"
        )),
        "{out}"
    );

    let exported = dir.path().join("out.json");
    let (code, _, err) = signer(&[
        "slashing",
        "export",
        "--db",
        db_s,
        "--output",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(err.contains("exported 3 validators"), "{err}");
    let back: slashing_db::Interchange =
        slashing_db::Interchange::from_reader(std::fs::File::open(&exported).unwrap()).unwrap();
    assert_eq!(back.data.len(), 3);
    // A second export to the same file is refused (it used to replace it
    // silently), unless --force.
    let before = std::fs::read(&exported).unwrap();
    let args = [
        "slashing",
        "export",
        "--db",
        db_s,
        "--output",
        exported.to_str().unwrap(),
    ];
    let (code, _, err) = signer(&args);
    assert_ne!(code, 0);
    assert!(
        err.contains("exists; an export does not replace a file") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&exported).unwrap(), before);
    let (code, _, err) = signer(&[&args[..], &["--force"]].concat());
    assert_eq!(code, 0, "{err}");

    let (code, out, _) = signer(&[
        "slashing",
        "prune",
        "--db",
        db_s,
        "--keep-epochs",
        "0",
        "--keep-slots",
        "0",
    ]);
    assert_eq!(code, 0);
    assert!(out.starts_with("pruned "), "{out}");
    // After pruning, inspect counts what is stored — not the watermark
    // entries an export adds (it used to count those as blocks).
    let words: Vec<&str> = out.split_whitespace().collect();
    let (gone_blocks, gone_atts): (u64, u64) =
        (words[1].parse().unwrap(), words[4].parse().unwrap());
    assert!(gone_blocks > 0 && gone_atts > 0, "{out}");
    let (code, out, _) = signer(&["slashing", "inspect", "--db", db_s]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!(
            "validators:   3 ({} blocks, {} attestations recorded; older history of 3 pruned into watermarks)\n",
            blocks - gone_blocks,
            atts - gone_atts
        )),
        "{out}"
    );

    // While another process (here: this test) holds the database, every command refuses.
    let held = slashing_db::SlashingDb::open(&db, slashing_db::Config::default()).unwrap();
    let (code, _, err) = signer(&["slashing", "inspect", "--db", db_s]);
    assert_eq!(code, 1);
    assert!(
        err.contains("in use by another process (is the signer running? stop it first)"),
        "{err}"
    );
    drop(held);

    let (code, _, err) = signer(&[
        "slashing",
        "inspect",
        "--db",
        dir.path().join("missing.sqlite").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no such database"), "{err}");
    let (code, _, err) = signer(&[
        "slashing",
        "import",
        "--db",
        db_s,
        vector("README.upstream.md").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("not valid EIP-3076 JSON"), "{err}");
}

#[test]
fn usage_errors_exit_2_with_a_hint() {
    let (code, _, err) = signer(&["slashing", "prune", "--db", "x.sqlite"]);
    assert_eq!(code, 2);
    assert!(err.contains("--keep-epochs"), "{err}");
    let (code, _, err) = signer(&["polcy"]);
    assert_eq!(code, 2);
    assert!(err.contains("policy"), "a suggestion: {err}");
}
