//! `signer cometbft import-state`: CometBFT's priv_validator_state.json and
//! tmkms's state file raise the database's height/round/step, never lower
//! it, and what the old signer signed stays protected (or re-served).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use base64::Engine as _;
use common::signer;
use signer::cometbft::{BlockId, Timestamp, Vote, VoteType, vote_sign_bytes};
use slashing_db::{ChainId, CometProposal, ConsensusKey, NotSafe, Proposal, Safe, SlashingDb};

/// RFC 8032's first test key: a real Ed25519 public key.
const KEY: [u8; 32] = [
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];
/// RFC 8032's second.
const OTHER: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

fn vote_bytes(height: i64, round: i32, kind: VoteType, block: u8) -> Vec<u8> {
    vote_sign_bytes(
        "chain-a",
        &Vote {
            kind,
            height,
            round,
            block_id: BlockId {
                hash: vec![block; 32],
                part_set_total: 1,
                part_set_hash: vec![block; 32],
            },
            timestamp: Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            },
            extension: Vec::new(),
        },
    )
    .unwrap()
}

fn ask(db: &SlashingDb, bytes: Vec<u8>) -> Result<Safe, NotSafe> {
    let p = CometProposal::from_sign_bytes(
        ConsensusKey::new(KEY.to_vec()).unwrap(),
        ChainId::new("chain-a").unwrap(),
        bytes,
    )
    .unwrap();
    db.check_and_record(Proposal::CometBft(p)).unwrap()
}

fn import(dir: &std::path::Path, state: &str) -> (i32, String, String) {
    import_with(
        dir,
        state,
        &[
            "--db",
            dir.join("db.sqlite").to_str().unwrap(),
            "--chain-id",
            "chain-a",
            "--key",
            &format!("0x{}", hex::encode(KEY)),
        ],
    )
}

fn import_with(dir: &std::path::Path, state: &str, args: &[&str]) -> (i32, String, String) {
    let file = dir.join("state.json");
    std::fs::write(&file, state).unwrap();
    let mut all = vec!["cometbft", "import-state"];
    all.extend_from_slice(args);
    all.push(file.to_str().unwrap());
    signer(&all)
}

/// The key as operators have it (hex, base64, `show-validator` JSON) is
/// accepted; anything that is not exactly a consensus public key is refused
/// with what it looks like instead; without a configuration to check
/// against, a warning says so.
#[test]
fn the_key_is_accepted_in_the_forms_operators_have_and_nothing_else() {
    let b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
    let state = r#"{"height":"10","round":0,"step":3}"#;
    let forms = [
        hex::encode(KEY),
        format!("0x{}", hex::encode_upper(KEY)),
        b64.clone(),
        format!(r#"{{"@type":"/cosmos.crypto.ed25519.PubKey","key":"{b64}"}}"#),
        format!(r#"{{"type":"tendermint/PubKeyEd25519","value":"{b64}"}}"#),
    ];
    for form in &forms {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        let (code, out, err) = import_with(
            dir.path(),
            state,
            &[
                "--db",
                db.to_str().unwrap(),
                "--chain-id",
                "chain-a",
                "--key",
                form,
            ],
        );
        assert_eq!(code, 0, "{form}: {err}");
        assert!(
            out.starts_with("imported chain-a: last signed 10/0/Precommit"),
            "{form}: {out}"
        );
        assert!(
            err.contains(&format!(
                "WARNING: not checked that the signer serves 0x{} for chain-a: pass --config",
                hex::encode(KEY)
            )),
            "{form}: {err}"
        );
        // It protects that key: the imported position is refused for it.
        let db = SlashingDb::open(&db, slashing_db::Config::default()).unwrap();
        assert!(matches!(
            ask(&db, vote_bytes(10, 0, VoteType::Precommit, 0xaa)),
            Err(NotSafe::ConflictingSignBytes { .. })
        ));
    }
    // A 32-byte string that is no Ed25519 point (about half of all are not).
    let not_a_point = (0u8..=255)
        .map(|i| [i; 32])
        .find(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_err())
        .unwrap();
    let refused = [
        (
            "0x1234".to_string(),
            "--key: 2 bytes of hex; expected a 32-byte Ed25519 or 33-byte compressed secp256k1 public key",
        ),
        (
            hex::encode([7u8; 20]),
            "--key: 20 bytes of hex: a validator address, not a public key",
        ),
        (
            base64::engine::general_purpose::STANDARD.encode([7u8; 64]),
            "--key: 64 bytes of base64: a private key (priv_key.value), not a public key",
        ),
        (
            hex::encode(not_a_point),
            "--key: 32 bytes of hex, but not an Ed25519 public key",
        ),
        (
            format!("02{}", "ff".repeat(32)),
            "--key: 33 bytes of hex, but not a compressed secp256k1 public key",
        ),
        ("0xzz".to_string(), "--key: 0x but not hex"),
        ("not a key!".to_string(), "--key: neither hex nor base64"),
        (
            r#"{"pub_key":1}"#.to_string(),
            "--key: JSON without a \"value\" or \"key\" string",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite");
    for (key, want) in refused {
        let (code, out, err) = import_with(
            dir.path(),
            state,
            &[
                "--db",
                db.to_str().unwrap(),
                "--chain-id",
                "chain-a",
                "--key",
                &key,
            ],
        );
        assert_eq!((code, out.as_str()), (1, ""), "{key}");
        assert!(err.contains(want), "{key}: {err}");
    }
    assert!(!db.exists(), "a refused import creates no database");
}

/// With `--config`, the key must be the one the configuration signs the
/// chain with; `--force` imports anyway, loudly.
#[test]
fn with_a_configuration_the_key_must_be_the_chains() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    let (code, _, err) = signer(&["init", "--dev", d.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let config = d.join("signer.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[cometbft]]\nchain_id = \"chain-a\"\nprotocol = \"v0.38\"\nkey = \"0x{OTHER}\"\nnodes = [\"unix:///nonexistent.sock\"]\n"
    ));
    std::fs::write(&config, text).unwrap();
    let state = r#"{"height":"10","round":0,"step":3}"#;
    let key = format!("0x{}", hex::encode(KEY));
    let run = |chain: &str, key: &str, force: bool| {
        let mut args = vec![
            "--config",
            config.to_str().unwrap(),
            "--chain-id",
            chain,
            "--key",
            key,
        ];
        if force {
            args.push("--force");
        }
        import_with(dir.path(), state, &args)
    };
    let (code, _, err) = run("chain-a", &key, false);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("the configuration signs chain-a with 0x{OTHER}, not {key}. Importing would protect a key the signer does not sign this chain with; check --key and --chain-id (or pass --force to import anyway)")),
        "{err}"
    );
    let (code, _, err) = run("chain-b", &format!("0x{OTHER}"), false);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "the configuration serves no chain \"chain-b\" (its [[cometbft]] chains: chain-a)"
        ),
        "{err}"
    );
    assert!(
        !d.join("data/slashing.sqlite").exists(),
        "refusals touch no database"
    );

    let (code, out, err) = run("chain-a", &key, true);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("WARNING: ") && err.contains("importing anyway (--force)"),
        "{err}"
    );
    assert!(out.starts_with("imported chain-a"), "{out}");
    // The configured key itself: no warning at all.
    let (code, out, err) = run("chain-a", &format!("0x{OTHER}"), false);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert!(out.starts_with("imported chain-a"), "{out}");
}

#[test]
fn cometbft_file_signer_state_is_imported_with_its_signature() {
    let dir = tempfile::tempdir().unwrap();
    let signed = vote_bytes(100, 0, VoteType::Prevote, 0xaa);
    let signature = [0x5a; 64];
    // As CometBFT writes it: height as a string, hex sign bytes, base64 signature.
    let state = format!(
        r#"{{"height": "100", "round": 0, "step": 2, "signature": "{}", "signbytes": "{}"}}"#,
        base64::engine::general_purpose::STANDARD.encode(signature),
        hex::encode_upper(&signed)
    );
    let (code, out, err) = import(dir.path(), &state);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "imported chain-a: last signed 100/0/Prevote (with its sign bytes: the same message is re-served)\n"
    );
    // A lower state later: kept.
    let lower = r#"{"height": "90", "round": 0, "step": 3}"#;
    let (code, out, _) = import(dir.path(), lower);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("kept: the database already protects chain-a"),
        "{out}"
    );

    let db = SlashingDb::open(
        &dir.path().join("db.sqlite"),
        slashing_db::Config::default(),
    )
    .unwrap();
    assert!(matches!(
        ask(&db, vote_bytes(99, 0, VoteType::Precommit, 0xaa)),
        Err(NotSafe::HeightRegression { .. })
    ));
    match ask(&db, signed.clone()).unwrap() {
        Safe::Reserve { stored, .. } => {
            assert_eq!(stored.signature.as_deref(), Some(&signature[..]))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ask(&db, vote_bytes(100, 0, VoteType::Prevote, 0xbb)),
        Err(NotSafe::ConflictingSignBytes { .. })
    ));
    assert_eq!(
        ask(&db, vote_bytes(100, 0, VoteType::Precommit, 0xaa)),
        Ok(Safe::Valid)
    );
}

#[test]
fn tmkms_state_protects_its_position_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tmkms = r#"{"height":"200","round":"1","step":3,"block_id":null}"#;
    let (code, out, err) = import(dir.path(), tmkms);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "imported chain-a: last signed 200/1/Precommit (position only: anything at exactly that position is refused)\n"
    );
    {
        let db = SlashingDb::open(
            &dir.path().join("db.sqlite"),
            slashing_db::Config::default(),
        )
        .unwrap();
        assert!(matches!(
            ask(&db, vote_bytes(200, 1, VoteType::Precommit, 0xaa)),
            Err(NotSafe::ConflictingSignBytes { .. })
        ));
        assert!(matches!(
            ask(&db, vote_bytes(200, 0, VoteType::Precommit, 0xaa)),
            Err(NotSafe::RoundRegression { .. })
        ));
        assert_eq!(
            ask(&db, vote_bytes(200, 2, VoteType::Prevote, 0xaa)),
            Ok(Safe::Valid)
        );
    }
    // Nothing signed yet: nothing imported.
    let (code, out, _) = import(dir.path(), r#"{"height":"0","round":0,"step":0}"#);
    assert_eq!((code, out.contains("nothing was signed yet")), (0, true));
    // Refused, each with the reason.
    for (state, want) in [
        (
            r#"{"height":"5","round":0,"step":7}"#,
            "step: expected 1 (propose), 2 (prevote) or 3 (precommit)",
        ),
        (r#"{"round":0,"step":2}"#, "height: missing"),
        ("not json", "expected ident"),
    ] {
        let (code, _, err) = import(dir.path(), state);
        assert_eq!(code, 1, "{state}");
        assert!(err.contains(want), "{state}: {err}");
    }
    // Sign bytes of another position than the state says.
    let bytes = vote_bytes(7, 0, VoteType::Prevote, 1);
    let lying = format!(
        r#"{{"height":"8","round":0,"step":2,"signbytes":"{}"}}"#,
        hex::encode(bytes)
    );
    let (code, _, err) = import(dir.path(), &lying);
    assert_eq!(code, 1);
    assert!(
        err.contains("signbytes are for 7/0/Prevote, the state says 8/0/Prevote"),
        "{err}"
    );
}
