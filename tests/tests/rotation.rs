//! `signer keys rotate` (issue 18, part 1) end to end: a CometBFT chain's
//! consensus key rotated at a height, with two test nodes of the chain
//! connected; the old key signs below the switch height and the new key
//! from it on, never both at one height; the new key's record starts above
//! the old key's last height; the old key refuses everything once retired.
//! With the new key in a key file and in SoftHSM. Plus the refusals.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use signer::api::privval::{self, PubKey, Request, Response, WireVote};
use signer::cometbft::{BlockId, ProtocolVersion, Timestamp, Vote, VoteType};
use tests::daemon::{Setup, signer_bin};
use tests::hsm::{SoftHsm, configure_pkcs11, softhsm_module};
use tests::privval_node::{NodeConn, TestNode};

const WAIT: Duration = Duration::from_secs(30);
const CHAIN: &str = "rot-chain";
const SWITCH: i64 = 5;

fn signer(setup: &Setup, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(signer_bin())
        .args(args)
        .current_dir(setup.path(""))
        .envs(setup.env.iter().cloned())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rotate(setup: &Setup, extra: &[&str]) -> (i32, String, String) {
    let config = setup.path("signer.toml");
    let mut args = vec![
        "keys",
        "rotate",
        "--config",
        config.to_str().unwrap(),
        "--chain-id",
        CHAIN,
    ];
    args.extend_from_slice(extra);
    signer(setup, &args)
}

fn vote(kind: VoteType, height: i64, block: u8) -> WireVote {
    WireVote {
        vote: Vote {
            kind,
            height,
            round: 0,
            block_id: BlockId {
                hash: vec![block; 32],
                part_set_total: 1,
                part_set_hash: vec![block; 32],
            },
            timestamp: Timestamp {
                seconds: 1_700_000_000 + height,
                nanos: 0,
            },
            extension: Vec::new(),
        },
        validator_address: vec![1; 20],
        validator_index: 0,
        signature: Vec::new(),
        extension_signature: Vec::new(),
    }
}

fn ask_vote(conn: &mut NodeConn, v: WireVote) -> Result<WireVote, privval::RemoteError> {
    match conn
        .ask(&Request::SignVote {
            chain_id: CHAIN.into(),
            vote: v,
            skip_extension_signing: false,
        })
        .unwrap()
    {
        Response::SignedVote(r) => r,
        other => panic!("{other:?}"),
    }
}

fn pub_key(conn: &mut NodeConn) -> Vec<u8> {
    match conn
        .ask(&Request::PubKey {
            chain_id: CHAIN.into(),
        })
        .unwrap()
    {
        Response::PubKey(Ok(PubKey::Ed25519(pk))) => pk.to_vec(),
        other => panic!("{other:?}"),
    }
}

/// Which of `keys` made `signed`'s signature (exactly one must).
fn signed_by(signed: &WireVote, keys: &[&[u8]]) -> usize {
    let msg = signer::cometbft::vote_sign_bytes(CHAIN, &signed.vote).unwrap();
    let by: Vec<usize> = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| signer::crypto::ed25519::verify(k, &msg, &signed.signature).is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(by.len(), 1, "signed by {by:?}");
    by[0]
}

/// The new key's hex from the command's output, with every other form of
/// it checked against that, computed here from the CometBFT and Cosmos
/// formats (not by the signer's code).
fn new_key_of(out: &str) -> Vec<u8> {
    let line = |prefix: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_owned))
            .unwrap_or_else(|| panic!("no {prefix:?} in:\n{out}"))
    };
    let hex_line = line("public key (hex, for signer.toml and policy.toml): 0x");
    let pk = hex::decode(hex_line).unwrap();
    assert_eq!(pk.len(), 32);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&pk);
    assert_eq!(line("public key (base64): "), b64);
    let address = hex::encode_upper(&Sha256::digest(&pk)[..20]);
    assert_eq!(line("validator address: "), address);
    assert!(out.contains(&format!(
        "{{\"@type\":\"/cosmos.crypto.ed25519.PubKey\",\"key\":\"{b64}\"}}"
    )));
    assert!(out.contains(&format!(
        "{{\"type\":\"tendermint/PubKeyEd25519\",\"value\":\"{b64}\"}}"
    )));
    pk
}

/// Puts the printed steps in force: the key entry, the policy, the switch.
fn apply(setup: &Setup, old: &[u8], new: &[u8], key_entry: &str) {
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    let entry = format!("chain_id = \"{CHAIN}\"\n");
    assert!(config.contains(&entry));
    let config = config.replacen(
        &entry,
        &format!(
            "{entry}next_key = \"0x{}\"\nswitch_height = {SWITCH}\n",
            hex::encode(new)
        ),
        1,
    );
    setup.write("signer.toml", &format!("{config}\n{key_entry}\n"));
    let policy = std::fs::read_to_string(setup.path("policy.toml")).unwrap();
    let group = format!("keys = [\"0x{}\"]", hex::encode(old));
    assert!(policy.contains(&group));
    setup.write_policy(&policy.replacen(
        &group,
        &format!(
            "keys = [\"0x{}\", \"0x{}\"]",
            hex::encode(old),
            hex::encode(new)
        ),
        1,
    ));
}

/// The last signed height per key for the chain, from the database.
fn last_heights(setup: &Setup, old: &[u8], new: &[u8]) -> (Option<u64>, Option<u64>) {
    let db = slashing_db::SlashingDb::open(
        &setup.path("data/slashing.sqlite"),
        slashing_db::Config::default(),
    )
    .unwrap();
    let states = db.cometbft_states().unwrap();
    let last = |k: &[u8]| {
        states
            .iter()
            .filter(|(key, chain, _)| key.as_bytes() == k && chain.as_str() == CHAIN)
            .map(|(_, _, r)| r.hrs.height.0)
            .max()
    };
    (last(old), last(new))
}

/// Rotates with `new_key` (`file:…` or `pkcs11:…`), serves the rotation to
/// two nodes, and checks every promise of the switch.
fn rotation_at_a_height(setup: &Setup, new_key: &[&str], key_entry: &dyn Fn(&[u8]) -> String) {
    let old = setup.ed25519.clone();
    let a = TestNode::tcp([1; 32], ProtocolVersion::V0_38).unwrap();
    let b = TestNode::tcp([2; 32], ProtocolVersion::V0_38).unwrap();
    setup.enable_cometbft(
        CHAIN,
        "v0.38",
        &[(a.address(), a.identity()), (b.address(), b.identity())],
    );

    // A dry run makes nothing.
    let mut args = new_key.to_vec();
    args.extend(["--at-height", "5", "--dry-run"]);
    let (code, out, err) = rotate(setup, &args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("would generate a new Ed25519 key in"), "{out}");
    assert!(
        out.contains("(dry run: no key made, nothing changed)"),
        "{out}"
    );
    assert!(!setup.path("keys/cons-2.json").exists());

    let mut args = new_key.to_vec();
    args.extend(["--at-height", "5"]);
    let (code, out, err) = rotate(setup, &args);
    assert_eq!(code, 0, "{out}{err}");
    let new = new_key_of(&out);
    assert_ne!(new, old);
    assert!(out.contains(&format!("switch_height = {SWITCH}")), "{out}");
    apply(setup, &old, &new, &key_entry(&new));

    let daemon = setup.start();
    let mut na = a
        .accept(WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()));
    let mut nb = b
        .accept(WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()));
    assert!(daemon.log().contains("consensus key rotation configured"));
    assert_eq!(pub_key(&mut na), old);

    let keys: [&[u8]; 2] = [&old, &new];
    for h in 1..SWITCH {
        for kind in [VoteType::Prevote, VoteType::Precommit] {
            let signed = ask_vote(&mut na, vote(kind, h, 7)).unwrap();
            assert_eq!(signed_by(&signed, &keys), 0, "height {h}");
            // The backup node gets the same signature.
            let again = ask_vote(&mut nb, vote(kind, h, 7)).unwrap();
            assert_eq!(again.signature, signed.signature);
        }
    }
    // CometBFT asks for the key again after each commit: now the new one.
    assert_eq!(pub_key(&mut na), new);
    assert_eq!(pub_key(&mut nb), new);
    for h in SWITCH..SWITCH + 3 {
        for kind in [VoteType::Prevote, VoteType::Precommit] {
            let signed = ask_vote(&mut nb, vote(kind, h, 7)).unwrap();
            assert_eq!(signed_by(&signed, &keys), 1, "height {h}");
            let again = ask_vote(&mut na, vote(kind, h, 7)).unwrap();
            assert_eq!(again.signature, signed.signature);
        }
    }
    // A conflicting vote below the switch is the old key's: refused as a
    // double sign, not signed by the new key.
    let e = ask_vote(&mut na, vote(VoteType::Precommit, SWITCH - 1, 9)).unwrap_err();
    assert_eq!(e.code, privval::connector::code::DOUBLE_SIGN, "{e:?}");

    // The old key retired: everything it would sign is refused.
    let old_hex = format!("0x{}", hex::encode(&old));
    let config = setup.path("signer.toml");
    let (code, out, err) = signer(
        setup,
        &[
            "keys",
            "retire",
            &old_hex,
            "--reason",
            "rotated to the new consensus key",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let e = ask_vote(&mut na, vote(VoteType::Prevote, SWITCH - 1, 7)).unwrap_err();
    assert_eq!(e.code, privval::connector::code::NOT_ALLOWED, "{e:?}");
    assert!(e.description.contains("retired"), "{e:?}");
    // The new key signs on.
    let signed = ask_vote(&mut na, vote(VoteType::Prevote, SWITCH + 3, 7)).unwrap();
    assert_eq!(signed_by(&signed, &keys), 1);
    drop((na, nb));
    assert!(daemon.stop().success());

    let (old_last, new_last) = last_heights(setup, &old, &new);
    assert_eq!(old_last, Some(SWITCH as u64 - 1));
    assert_eq!(new_last, Some(SWITCH as u64 + 3));

    // Rotating again while this rotation is configured is refused.
    let (code, _, err) = rotate(setup, new_key);
    assert_eq!(code, 1);
    assert!(err.contains("a rotation is already configured"), "{err}");
}

#[test]
fn rotation_to_a_key_file_at_a_height_switches_two_nodes_without_a_shared_height() {
    let setup = Setup::new();
    setup.write("keys/cons-2.pass", "a new consensus key password");
    rotation_at_a_height(
        &setup,
        &[
            "--new-key",
            "file:keys/cons-2.json",
            "--password-file",
            "keys/cons-2.pass",
        ],
        &|_| {
            "[[keys]]\ntype = \"file\"\npath = \"keys/cons-2.json\"\npassword_file = \"keys/cons-2.pass\"".into()
        },
    );
    let meta = std::fs::metadata(setup.path("keys/cons-2.json")).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[test]
fn rotation_to_a_softhsm_key_at_a_height() {
    let mut setup = Setup::new();
    let hsm = SoftHsm::new(&["tok-a"]);
    configure_pkcs11(&setup, &hsm, 2000, &[("a", &softhsm_module(), "tok-a")]);
    setup.env = hsm.env();
    rotation_at_a_height(&setup, &["--new-key", "pkcs11:a:cons-2"], &|_| {
        "[[keys]]\ntype = \"pkcs11\"\nlabel = \"cons-2\"\ntokens = [\"a\"]".into()
    });
    // A second rotation is refused until this one is finished.
    let (code, _, err) = rotate(&setup, &["--new-key", "pkcs11:a:cons-2"]);
    assert_eq!(code, 1);
    assert!(err.contains("a rotation is already configured"), "{err}");
}

#[test]
fn rotation_refuses_unsafe_and_mistaken_requests() {
    let setup = Setup::new();
    let node = TestNode::tcp([1; 32], ProtocolVersion::V0_38).unwrap();
    setup.enable_cometbft(CHAIN, "v0.38", &[(node.address(), node.identity())]);
    setup.write("keys/cons-2.pass", "a new consensus key password");
    let file = [
        "--new-key",
        "file:keys/cons-2.json",
        "--password-file",
        "keys/cons-2.pass",
    ];
    let config = setup.path("signer.toml");
    let config = config.to_str().unwrap();

    // Another chain.
    let (code, _, err) = signer(
        &setup,
        &[
            "keys",
            "rotate",
            "--config",
            config,
            "--chain-id",
            "nope",
            "--new-key",
            "file:x.json",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("no [[cometbft]] entry for chain \"nope\" (configured: rot-chain)"),
        "{err}"
    );
    // A file key without a password; a --new-key that is neither form.
    let (code, _, err) = rotate(&setup, &["--new-key", "file:keys/cons-2.json"]);
    assert_eq!(code, 1);
    assert!(err.contains("needs --password-file"), "{err}");
    let (code, _, err) = rotate(&setup, &["--new-key", "keys/cons-2.json"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("give file:PATH (a new key file) or pkcs11:TOKEN:LABEL"),
        "{err}"
    );
    // A token the configuration does not have.
    let (code, _, err) = rotate(&setup, &["--new-key", "pkcs11:a:cons-2"]);
    assert_eq!(code, 1);
    assert!(err.contains("no [pkcs11] section"), "{err}");
    // An existing file is never overwritten.
    setup.write("keys/cons-2.json", "{}");
    let (code, _, err) = rotate(&setup, &file);
    assert_eq!(code, 1);
    assert!(
        err.contains("keys/cons-2.json exists; name a new file"),
        "{err}"
    );
    std::fs::remove_file(setup.path("keys/cons-2.json")).unwrap();

    // A disabled key is not rotated from; nothing is made.
    let old_hex = format!("0x{}", hex::encode(&setup.ed25519));
    let (code, out, err) = signer(
        &setup,
        &[
            "keys",
            "disable",
            &old_hex,
            "--reason",
            "node host under investigation",
            "--config",
            config,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = rotate(&setup, &file);
    assert_eq!(code, 1);
    assert!(err.contains("is disabled ("), "{err}");
    assert!(err.contains("rotate from a key in service"), "{err}");
    assert!(!setup.path("keys/cons-2.json").exists());

    // Same answer through a serving signer (which holds the SQLite database).
    let daemon = setup.start();
    let (code, _, err) = rotate(&setup, &file);
    assert_eq!(code, 1);
    assert!(err.contains("is disabled ("), "{err}");
    assert!(daemon.stop().success());
}

#[test]
fn a_file_key_moves_into_a_token_with_its_history() {
    let mut setup = Setup::new();
    let hsm = SoftHsm::new(&["tok-a"]);
    configure_pkcs11(&setup, &hsm, 2000, &[("a", &softhsm_module(), "tok-a")]);
    setup.env = hsm.env();
    let node = TestNode::tcp([1; 32], ProtocolVersion::V0_38).unwrap();
    setup.enable_cometbft(CHAIN, "v0.38", &[(node.address(), node.identity())]);

    // Heights 1..3 signed from the key file.
    let daemon = setup.start();
    let mut conn = node.accept(WAIT).unwrap();
    for h in 1..4 {
        ask_vote(&mut conn, vote(VoteType::Prevote, h, 7)).unwrap();
    }
    drop(conn);
    assert!(daemon.stop().success());

    let (code, out, err) = rotate(&setup, &["--new-key", "pkcs11:a:cons-moved", "--move"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("imported into pkcs11 token a, label \"cons-moved\": same public key, same slashing history"), "{out}");
    setup.drop_file_key("ed25519");
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    setup.write(
        "signer.toml",
        &format!(
            "{config}\n[[keys]]\ntype = \"pkcs11\"\nlabel = \"cons-moved\"\ntokens = [\"a\"]\n"
        ),
    );
    let daemon = setup.start();
    assert!(daemon.log().contains("backend=pkcs11") || daemon.log().contains("keys loaded"));
    let mut conn = node.accept(WAIT).unwrap();
    assert_eq!(pub_key(&mut conn), setup.ed25519);
    // The history came along: height 3 again with another block is a double sign.
    let e = ask_vote(&mut conn, vote(VoteType::Prevote, 3, 9)).unwrap_err();
    assert_eq!(e.code, privval::connector::code::DOUBLE_SIGN, "{e:?}");
    let signed = ask_vote(&mut conn, vote(VoteType::Prevote, 4, 7)).unwrap();
    assert_eq!(signed_by(&signed, &[&setup.ed25519]), 0);
    drop(conn);
    assert!(daemon.stop().success());
}

#[test]
fn rotate_says_what_it_would_do_and_what_it_did() {
    let setup = Setup::new();
    let node = TestNode::tcp([1; 32], ProtocolVersion::V0_38).unwrap();
    setup.enable_cometbft(CHAIN, "v0.38", &[(node.address(), node.identity())]);
    setup.write("keys/cons-2.pass", "a new consensus key password");
    let steps: [&[&str]; 3] = [
        &["--at-height", "1200", "--dry-run"],
        &["--at-height", "1200"],
        &["--at-height", "1200"],
    ];
    let mut transcript = String::new();
    let mut new = Vec::new();
    for extra in steps {
        let mut args = vec![
            "--new-key",
            "file:keys/cons-2.json",
            "--password-file",
            "keys/cons-2.pass",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = rotate(&setup, &args);
        if code == 0 && !extra.contains(&"--dry-run") {
            new = new_key_of(&out);
        }
        transcript.push_str(&format!(
            "$ signer keys rotate --chain-id {CHAIN} {}\n{out}{err}exit {code}\n",
            args.join(" ")
        ));
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(&new);
    let dir = setup.path("tls");
    let dir = dir.parent().unwrap().display().to_string();
    let got = transcript
        .replace(&dir, "<dir>")
        .replace(&hex::encode(&setup.ed25519), "<old>")
        .replace(&hex::encode(&new), "<new>")
        .replace(&b64, "<new-base64>")
        .replace(
            &hex::encode_upper(&Sha256::digest(&new)[..20]),
            "<new-address>",
        );
    let want = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/golden/key-rotate.txt"
    ))
    .unwrap_or_default();
    assert_eq!(got, want, "\n{got}");
}
