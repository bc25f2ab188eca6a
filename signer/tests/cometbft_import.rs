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

const KEY: [u8; 32] = [0x42; 32];

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
    let file = dir.join("state.json");
    std::fs::write(&file, state).unwrap();
    let db = dir.join("db.sqlite");
    signer(&[
        "cometbft",
        "import-state",
        "--db",
        db.to_str().unwrap(),
        "--chain-id",
        "chain-a",
        "--key",
        &format!("0x{}", hex::encode(KEY)),
        file.to_str().unwrap(),
    ])
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
