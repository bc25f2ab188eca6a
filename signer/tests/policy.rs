//! The policy engine: decisions on the example policy, lint findings of a bad
//! one, and the CLI's operator-facing output pinned by golden files (written
//! by hand from the design, not captured from the program).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};

use signer::policy::{Miss, Network, Operation, Policy, Request, Verdict};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example() -> Policy {
    let text = std::fs::read_to_string(root().join("policy.example.toml")).unwrap();
    Policy::load(&text).unwrap().0
}

fn key(hex: &str) -> Vec<u8> {
    hex::decode(hex).unwrap()
}

#[test]
fn decisions_on_the_example_policy() {
    let p = example();
    let a = key(
        "a99a76ed7796f7be22d5b7e85deeb7c5677e88e511e0b337618f8c4eb61349b4bf2d153f649f7b53359fe8b94a38e44c",
    );
    let b = key(
        "a3a32b0f8b4ddb83f1a0a853d81dd725dfe577d4f4c3db8ece52ce2b026eca84815c1a7e8e92a4de3d755733bf7e4a9b",
    );
    let cosmos = key("556a436f1218d30942efe798420f51dc9b6a311b929c578257457d05c5fcf230");
    let mainnet = Network::Ethereum(
        hex::decode("4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95")
            .unwrap()
            .try_into()
            .unwrap(),
    );
    let other_eth = Network::Ethereum([7; 32]);
    let hub = Network::CometBft("cosmoshub-4".into());
    let osmo = Network::CometBft("osmosis-1".into());
    use Operation::*;
    type Row<'a> = (&'a str, Operation, &'a [u8], Option<&'a Network>, Verdict);
    let table: Vec<Row> = vec![
        (
            "lighthouse-a",
            Eth2Attestation,
            &a,
            Some(&mainnet),
            Verdict::Allowed { grant: 1 },
        ),
        (
            "lighthouse-a",
            Eth2Block,
            &a,
            Some(&mainnet),
            Verdict::Allowed { grant: 1 },
        ),
        (
            "lighthouse-a",
            Eth2Attestation,
            &b,
            Some(&mainnet),
            Verdict::NotGranted(Miss::Key(Eth2Attestation)),
        ),
        (
            "lighthouse-a",
            Eth2Attestation,
            &a,
            Some(&other_eth),
            Verdict::NotGranted(Miss::Network(Eth2Attestation)),
        ),
        (
            "lighthouse-a",
            Eth2Attestation,
            &a,
            None,
            Verdict::NotGranted(Miss::Network(Eth2Attestation)),
        ),
        (
            "lighthouse-a",
            Eth2ValidatorRegistration,
            &a,
            None,
            Verdict::Allowed { grant: 1 },
        ),
        (
            "lighthouse-a",
            Eth2VoluntaryExit,
            &a,
            Some(&mainnet),
            Verdict::Denied { deny: 1 },
        ),
        (
            "lighthouse-a",
            Eth2Deposit,
            &a,
            None,
            Verdict::NotGranted(Miss::Operation(Eth2Deposit)),
        ),
        (
            "lighthouse-a",
            RawEd25519,
            &a,
            None,
            Verdict::NotGranted(Miss::Operation(RawEd25519)),
        ),
        (
            "lighthouse-b",
            Eth2Attestation,
            &b,
            Some(&mainnet),
            Verdict::Allowed { grant: 2 },
        ),
        (
            "lighthouse-b",
            Eth2Attestation,
            &a,
            Some(&mainnet),
            Verdict::Allowed { grant: 1 },
        ),
        (
            "lighthouse-b",
            Eth2VoluntaryExit,
            &b,
            Some(&mainnet),
            Verdict::Denied { deny: 1 },
        ),
        (
            "ops-exit-tool",
            Eth2VoluntaryExit,
            &b,
            Some(&mainnet),
            Verdict::Allowed { grant: 3 },
        ),
        (
            "ops-exit-tool",
            Eth2Attestation,
            &b,
            Some(&mainnet),
            Verdict::NotGranted(Miss::Operation(Eth2Attestation)),
        ),
        (
            "cosmos-node",
            CometVote,
            &cosmos,
            Some(&hub),
            Verdict::Allowed { grant: 4 },
        ),
        (
            "cosmos-node",
            CometProposal,
            &cosmos,
            Some(&hub),
            Verdict::Allowed { grant: 4 },
        ),
        (
            "cosmos-node",
            CometVote,
            &cosmos,
            Some(&osmo),
            Verdict::NotGranted(Miss::Network(CometVote)),
        ),
        (
            "cosmos-node",
            CometRaw,
            &cosmos,
            None,
            Verdict::NotGranted(Miss::Operation(CometRaw)),
        ),
        (
            "cosmos-node",
            CometVote,
            &a,
            Some(&hub),
            Verdict::NotGranted(Miss::Key(CometVote)),
        ),
        (
            "stranger",
            Eth2Attestation,
            &a,
            Some(&mainnet),
            Verdict::NotGranted(Miss::Client),
        ),
    ];
    for (i, (client, operation, k, network, want)) in table.iter().enumerate() {
        let got = p.decide(&Request {
            client,
            operation: *operation,
            key: k,
            network: *network,
        });
        assert_eq!(got, *want, "row {i}: {client} {operation} on {network:?}");
    }
    assert_eq!(
        p.client_by_identity("cosmos-validator.staking.example")
            .unwrap()
            .name,
        "cosmos-node"
    );
    assert!(
        p.client_by_identity("spiffe://staking.example/validator/lighthouse-c")
            .is_none()
    );
    assert!(
        p.client_by_identity("spiffe://staking.example/validator/lighthouse-b")
            .unwrap()
            .fingerprint
            .is_some()
    );
}

fn signer(args: &[&str]) -> (i32, String, String) {
    common::signer_in(Some(&root()), args)
}

fn golden(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name),
    )
    .unwrap()
}

#[test]
fn policy_check_and_explain_golden_output() {
    let (code, out, err) = signer(&["policy", "check", "policy.example.toml"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, golden("policy-check-example.txt"));
    let (code, out, _) = signer(&["policy", "explain", "policy.example.toml"]);
    assert_eq!(code, 0);
    assert_eq!(out, golden("policy-explain-example.txt"));
    let (code, out, _) = signer(&[
        "policy",
        "explain",
        "policy.example.toml",
        "--client",
        "ops-exit-tool",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "client ops-exit-tool (spiffe://staking.example/ops/exit-tool), at most 1 requests/s\n  operation                            network       keys  rule\n  eth2.voluntary_exit                  mainnet          3  grant #3\n\n"
    );
    let (code, _, err) = signer(&[
        "policy",
        "explain",
        "policy.example.toml",
        "--client",
        "nobody",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no client named \"nobody\""), "{err}");
}

const BAD: &str = r#"
[clients.a]
identity = "spiffe://x/a"
[clients.b]
identity = "spiffe://x/a"
fingerprint = "sha1:00"
[networks.main]
genesis_validators_root = "0x1234"
[networks.hub]
chain_id = "cosmoshub-4"
[key_groups.g]
keys = ["0xabcd"]
[key_groups.unused]
keys = []
[[grant]]
clients = ["a", "ghost"]
operations = ["eth2.attestation", "eth2.everything", "raw.secp256k1"]
key_groups = ["g", "nope"]
networks = ["hub", "nowhere"]
[[grant]]
clients = ["a"]
operations = ["eth2.block"]
key_groups = []
"#;

#[test]
fn a_bad_policy_gets_every_finding_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, BAD).unwrap();
    let (code, out, _) = signer(&["policy", "check", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    for want in [
        "error: clients.b: identity \"spiffe://x/a\" is also client a's",
        "error: clients.b: fingerprint must be \"sha256:\" followed by 64 hex digits",
        "error: networks.main: genesis_validators_root must be 32 bytes of hex",
        "error: key_groups.g: \"0xabcd\" is not a public key (32, 33 or 48 bytes of hex)",
        "error: grant #1: unknown client \"ghost\"",
        "error: grant #1: unknown operation \"eth2.everything\"",
        "error: grant #1: unknown key group \"nope\"",
        "error: grant #1: eth2.attestation cannot apply on network \"hub\"",
        "error: grant #1: unknown network \"nowhere\"",
        "warning: key_groups.g: the group is empty: rules naming it grant nothing",
        "warning: key_groups.unused: the group is empty: rules naming it grant nothing",
        "warning: grant #1: networks do not restrict raw.secp256k1: its requests name no network",
        "warning: grant #1: grants raw.secp256k1: signs arbitrary bytes: no slashing protection, no structure check",
        "warning: grant #2: grants nothing: clients, operations and key_groups must all be non-empty",
        "warning: grant #2: grants nothing for eth2.block: no networks named",
        "warning: clients.b: is granted nothing",
        "warning: key_groups.unused: is not used by any rule",
    ] {
        assert!(
            lines.contains(&want),
            "missing finding: {want}\n--- output:\n{out}"
        );
    }
    assert_eq!(
        lines.last().unwrap(),
        &format!("{}: 9 errors, 8 warnings", file.display())
    );
    // Errors come first.
    let first_warning = lines.iter().position(|l| l.starts_with("warning")).unwrap();
    assert!(
        lines[..first_warning]
            .iter()
            .all(|l| l.starts_with("error"))
    );
    // A policy with errors does not load (the daemon keeps its old one).
    assert!(matches!(
        Policy::load(BAD),
        Err(signer::policy::PolicyError::Invalid(_))
    ));
    let (code, _, err) = signer(&["policy", "explain", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("run `signer policy check`"), "{err}");
}

#[test]
fn unknown_fields_and_bad_toml_are_refused() {
    for (text, want) in [
        (
            "[clients.a]\nidentity = \"x\"\nidentiy = \"typo\"\n",
            "unknown field",
        ),
        ("[[grant]]\nclient = [\"a\"]\n", "unknown field"),
        ("[clients.a\n", "does not parse"),
    ] {
        let err = Policy::load(text).unwrap_err().to_string();
        assert!(
            err.contains("does not parse") && err.contains(want),
            "{text:?}: {err}"
        );
    }
}

#[test]
fn rate_limits_are_per_client_optional_and_zero_is_an_error() {
    let p = example();
    assert_eq!(
        p.client("ops-exit-tool").unwrap().max_requests_per_second,
        Some(1)
    );
    assert_eq!(
        p.client("lighthouse-a").unwrap().max_requests_per_second,
        None
    );
    let zero = "[clients.a]\nidentity = \"spiffe://x/a\"\nmax_requests_per_second = 0\n";
    match Policy::load(zero) {
        Err(signer::policy::PolicyError::Invalid(findings)) => assert!(
            findings.iter().any(|f| f.to_string()
                == "error: clients.a: max_requests_per_second = 0 would refuse everything; remove the client's grants instead"),
            "{findings:?}"
        ),
        other => panic!("{other:?}"),
    }
    let negative = "[clients.a]\nidentity = \"spiffe://x/a\"\nmax_requests_per_second = -1\n";
    assert!(
        Policy::load(negative)
            .unwrap_err()
            .to_string()
            .contains("does not parse")
    );
}

/// `signer policy diff`: effective permissions gained and lost. The
/// expected outputs were written by hand from the fixture files.
#[test]
fn policy_diff_reports_effective_permissions_gained_and_lost() {
    let fixtures = "signer/tests/fixtures/policy-diff";
    let (old, new) = (
        format!("{fixtures}/old.toml"),
        format!("{fixtures}/new.toml"),
    );
    let (code, out, err) = signer(&["policy", "diff", &old, &new]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, golden("policy-diff.txt"));
    // A CI gate: gains fail it.
    let (code, _, _) = signer(&["policy", "diff", &old, &new, "--exit-code"]);
    assert_eq!(code, 1);

    // Backwards: what was gained is lost, and the reverse.
    let (code, out, _) = signer(&["policy", "diff", &new, &old, "--exit-code"]);
    assert_eq!(code, 1, "exit-tool gains its K2 exit back");
    assert_eq!(
        out,
        "client exit-tool (spiffe://x/exit)\n  + eth2.voluntary_exit on mainnet: 1 key (0xbbbbbbbb…bbbb)\n\n\
         client monitor (spiffe://x/monitor)\n  - client removed (identity spiffe://x/monitor)\n\n\
         client vc-a (spiffe://x/vc-a)\n  - eth2.block, eth2.attestation on mainnet: 1 key (0xcccccccc…cccc)\n\n\
         client vc-b (spiffe://x/vc-b)\n  - rate limit 20/s → 10/s\n\n\
         1 permission(s) gained, 4 lost (a permission: one operation on one network with one key, or a client, identity, pin or rate-limit change)\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join(&old)).unwrap();
    let variant = |name: &str, from: &str, to: &str| {
        assert!(text.contains(from), "{from}");
        let p = dir.path().join(name);
        std::fs::write(&p, text.replace(from, to)).unwrap();
        p.display().to_string()
    };
    // Renaming a network and moving lines changes nothing effective.
    let renamed = variant("renamed.toml", "mainnet", "eth-mainnet");
    let (code, out, _) = signer(&["policy", "diff", &old, &renamed, "--exit-code"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "no change in effective permissions\n")
    );
    // Only losses: the gate passes.
    let narrower = variant(
        "narrower.toml",
        "[[grant]]\nclients = [\"vc-b\"]\noperations = [\"eth2.attestation\"]\nkey_groups = [\"b\"]\nnetworks = [\"mainnet\"]\n",
        "",
    );
    let (code, out, _) = signer(&["policy", "diff", &old, &narrower, "--exit-code"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("client vc-b (spiffe://x/vc-b)\n  - eth2.attestation on mainnet: 1 key (0xcccccccc…cccc)\n"),
        "{out}"
    );
    // Another certificate identity gets vc-a's rights: a gain.
    let moved = variant("moved.toml", "spiffe://x/vc-a\"", "spiffe://x/vc-a2\"");
    let (code, out, _) = signer(&["policy", "diff", &old, &moved, "--exit-code"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("  + identity changed: spiffe://x/vc-a → spiffe://x/vc-a2 (that certificate gets these permissions)\n"),
        "{out}"
    );
}

#[test]
fn a_deny_that_guards_against_a_future_grant_says_so_and_is_not_flagged() {
    let base = "[clients.vc]\nidentity = \"spiffe://t/vc\"\n\
                [networks.main]\ngenesis_validators_root = \"0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95\"\n\
                [key_groups.g]\nkeys = [\"0x8e5e2a4f1a2b7e3a7c3fbd6d1c1f0a0b8f27d05fe25e4cc1c2f47e3e3d1ac2f0aa11223344556677889900aabbccddee\"]\n\
                [[grant]]\nclients = [\"vc\"]\noperations = [\"eth2.attestation\"]\nkey_groups = [\"g\"]\nnetworks = [\"main\"]\n";
    let deny = "[[deny]]\nclients = [\"vc\"]\noperations = [\"eth2.voluntary_exit\"]\nkey_groups = [\"g\"]\nnetworks = [\"main\"]\n";
    let messages = |text: &str| -> Vec<String> {
        let (_, findings) = signer::policy::check(text).unwrap();
        findings.iter().map(ToString::to_string).collect()
    };
    // Unmarked, it may be a typo: the linter asks.
    assert_eq!(
        messages(&format!("{base}{deny}")),
        [
            "warning: deny #1: denies nothing that is granted (a typo? if it is there to stop a future grant, say `guard = true`)"
        ]
    );
    // Marked, it is what the author meant.
    assert!(messages(&format!("{base}{deny}guard = true\n")).is_empty());
    // A grant cannot be a guard.
    let bad = base.replace(
        "networks = [\"main\"]\n",
        "networks = [\"main\"]\nguard = true\n",
    );
    assert_eq!(
        messages(&bad),
        [
            "error: grant #1: `guard` marks a [[deny]] that stops a future grant; a grant cannot have it"
        ]
    );
}

#[test]
fn block_content_constraints_are_linted_and_a_proposing_grant_without_them_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("content.toml");
    let key = "0x".to_owned() + &"ab".repeat(48);
    std::fs::write(
        &file,
        format!(
            r#"
[clients.a]
identity = "spiffe://x/a"
[networks.main]
genesis_validators_root = "0x{gvr}"
[key_groups.g]
keys = ["{key}"]
[[grant]]
clients = ["a"]
operations = ["eth2.block"]
key_groups = ["g"]
networks = ["main"]
fee_recipient = ["0x1234", "0x388c818ca8b9251b393131c08a736a67ccb19297"]
gas_limit = {{ min = 60000000, max = 30000000 }}
block_content = "unchecked"
[[grant]]
clients = ["a"]
operations = ["eth2.attestation"]
key_groups = ["g"]
networks = ["main"]
graffiti = "x"
fee_recipient = []
[[grant]]
clients = ["a"]
operations = ["eth2.validator_registration"]
key_groups = ["g"]
block_content = "sometimes"
[[grant]]
clients = ["a"]
operations = ["eth2.block"]
key_groups = ["g"]
networks = ["main"]
[[deny]]
clients = ["a"]
operations = ["eth2.block"]
key_groups = ["g"]
networks = ["main"]
graffiti = "x"
"#,
            gvr = "11".repeat(32)
        ),
    )
    .unwrap();
    let (code, out, _) = signer(&["policy", "check", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    for want in [
        "error: grant #1: block_content = \"unchecked\" beside block constraints: say one or the other",
        "error: grant #1: fee_recipient: \"0x1234\" is not an execution address (0x and 40 hex digits)",
        "error: grant #1: gas_limit: min 60000000 is above max 30000000",
        "error: grant #2: fee_recipient = []: an empty list allows no address; leave it out to allow any",
        "error: grant #3: block_content = \"sometimes\": the only value is \"unchecked\" (no block constraint, on purpose)",
        "error: deny #1: fee_recipient, gas_limit, graffiti, builder_registrations and block_content belong to grants: a deny refuses whole operations",
        "warning: grant #2: graffiti and block_content concern eth2.block, which this grant does not give",
        "warning: grant #3: graffiti and block_content concern eth2.block, which this grant does not give",
        "warning: grant #4: gives eth2.block with no block-content constraint: a block paying any fee recipient, with any gas limit and graffiti, is signed (set fee_recipient, gas_limit or graffiti; or block_content = \"unchecked\" to say it is on purpose)",
    ] {
        assert!(
            lines.contains(&want),
            "missing finding: {want}\n--- output:\n{out}"
        );
    }
}

#[test]
fn a_mistyped_constraint_says_what_shape_it_needs() {
    let example = std::fs::read_to_string(root().join("policy.example.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (line, says) in [
        (
            "gas_limit = 30000000",
            "expected a range with both ends, e.g. { min = 30000000, max = 60000000 }",
        ),
        (
            "fee_recipient = 123",
            "a string or a list of strings, e.g. \"0x…\" or [\"0x…\", \"0x…\"]",
        ),
        ("gas_limit = { min = 1 }", "missing field `max`"),
    ] {
        let file = dir.path().join("p.toml");
        std::fs::write(
            &file,
            example.replace("block_content = \"unchecked\"", line),
        )
        .unwrap();
        let (code, out, err) = signer(&["policy", "check", file.to_str().unwrap()]);
        assert_ne!(code, 0, "{line}: {out}");
        assert!(err.contains(says), "{line}: {err}");
        assert!(err.contains(line), "{line}: the line is shown: {err}");
    }
}
