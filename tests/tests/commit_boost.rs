//! Commit-Boost proposer commitments: the signing roots and signatures this
//! signer makes for every kind the Commit-Boost signer API serves (consensus
//! BLS, proxy BLS, proxy ECDSA, and the delegations of both proxy kinds)
//! equal and verify under an implementation written in Python from the
//! specification text (`tests/commit_boost/reference.py`: py_ecc, eth-keys),
//! over random chains, nonces (with 0 and 2^64 − 1), signing ids and keys; a
//! tampered case is refused there, so the check can fail.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

use alloy_primitives::B256;
use serde_json::{Value, json};
use signer::crypto::bls::BlsSecretKey;
use signer::crypto::secp256k1::Secp256k1SecretKey;
use signer::eth2::commit_boost::{Commitment, Proxy, delegation_root};

/// xorshift64: deterministic, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.next() as u8)
    }
}

fn hex0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

/// Runs `tests/commit_boost/<script>` on `cases`, one JSON line each way.
fn python(script: &str, cases: &[&Value], needs: &str) -> Vec<Value> {
    let mut cmd = Command::new("python3");
    cmd.arg(format!(
        "{}/commit_boost/{script}",
        env!("CARGO_MANIFEST_DIR")
    ));
    tests::independent::json_lines(
        cmd,
        cases.iter().map(|c| format!("{c}\n")).collect(),
        &format!("python3 with the pip packages {needs} (scripts/test installs them)"),
    )
}

fn reference(cases: &[Value]) -> Vec<Value> {
    python(
        "reference.py",
        &cases.iter().collect::<Vec<_>>(),
        "py_ecc and eth-account",
    )
}

/// Whether the reference finds each case's signature valid.
fn valid(cases: &[Value]) -> Vec<bool> {
    reference(cases)
        .iter()
        .map(|v| v["valid"].as_bool().unwrap())
        .collect()
}

/// Module tokens made by PyJWT for these token requests.
fn tokens(requests: &[&Value]) -> Vec<Value> {
    python("tokens.py", requests, "pyjwt and eth-account")
}

#[test]
fn roots_and_signatures_equal_an_implementation_written_from_the_specification() {
    let mut rng = Rng(0x5eed_c0de_1234_5678);
    let mut cases = Vec::new();
    // Public networks' genesis fork versions and EVM chain ids, then random ones.
    let networks = [
        ([0u8, 0, 0, 0], 1u64),
        ([0x01, 0x01, 0x70, 0x00], 17_000),
        ([0x10, 0x00, 0x09, 0x10], 560_048),
    ];
    for i in 0..40usize {
        let (gfv, chain_id) = match networks.get((i / 4) % 4) {
            Some(n) => *n,
            None => (rng.bytes(), rng.next()),
        };
        let nonce = match i % 5 {
            0 => 0,
            1 => u64::MAX,
            _ => rng.next(),
        };
        let consensus = BlsSecretKey::from_bytes(&{
            let mut s: [u8; 32] = rng.bytes();
            s[0] &= 0x3f; // below the group order
            s
        })
        .unwrap();
        let delegator = consensus.public_key().to_bytes();
        let commitment = Commitment {
            object_root: B256::from(rng.bytes::<32>()),
            module_signing_id: B256::from(rng.bytes::<32>()),
            nonce,
            chain_id,
        };
        let root = commitment.signing_root(gfv);
        let base = json!({
            "genesis_fork_version": hex0x(&gfv),
            "chain_id": chain_id,
            "module_signing_id": hex0x(commitment.module_signing_id.as_slice()),
            "nonce": nonce,
            "object_root": hex0x(commitment.object_root.as_slice()),
        });
        let with = |kind: &str, extra: Value, root: B256| {
            let mut c = base.clone();
            c["kind"] = json!(kind);
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            (c, root)
        };
        match i % 4 {
            // Consensus BLS (every kind gets 10 cases; BLS verification in
            // pure Python takes most of a second each).
            0 => cases.push(with(
                "bls",
                json!({"key": hex0x(&delegator), "signature": hex0x(&consensus.sign(root.as_slice()).to_bytes())}),
                root,
            )),
            1 => {
                let proxy = BlsSecretKey::from_bytes(&{
                    let mut s: [u8; 32] = rng.bytes();
                    s[0] &= 0x3f;
                    s
                })
                .unwrap();
                let proxy_pk = proxy.public_key().to_bytes();
                cases.push(with(
                    "proxy_bls",
                    json!({"key": hex0x(&proxy_pk), "signature": hex0x(&proxy.sign(root.as_slice()).to_bytes())}),
                    root,
                ));
                let d = delegation_root(&delegator, Proxy::Bls(proxy_pk), gfv);
                cases.push(with(
                    "delegation_bls",
                    json!({"delegator": hex0x(&delegator), "proxy": hex0x(&proxy_pk), "signature": hex0x(&consensus.sign(d.as_slice()).to_bytes())}),
                    d,
                ));
            }
            _ => {
                let proxy = Secp256k1SecretKey::from_bytes(&rng.bytes::<32>()).unwrap();
                let addr = proxy.address();
                let sig = proxy.sign_prehash(&root.0).to_ethereum_bytes();
                cases.push(with(
                    "proxy_ecdsa",
                    json!({"key": hex0x(&addr), "signature": hex0x(&sig)}),
                    root,
                ));
                if i % 4 == 2 {
                    let d = delegation_root(&delegator, Proxy::Ecdsa(addr), gfv);
                    cases.push(with(
                        "delegation_ecdsa",
                        json!({"delegator": hex0x(&delegator), "proxy": hex0x(&addr), "signature": hex0x(&consensus.sign(d.as_slice()).to_bytes())}),
                        d,
                    ));
                }
            }
        }
    }
    // Tampered: the signature of one case checked against another nonce, and
    // an ECDSA signature with its v flipped. The reference must refuse both.
    let mut wrong_nonce = cases[0].0.clone();
    wrong_nonce["nonce"] = json!(wrong_nonce["nonce"].as_u64().unwrap() ^ 1);
    let mut wrong_v = cases
        .iter()
        .find(|(c, _)| c["kind"] == "proxy_ecdsa")
        .unwrap()
        .0
        .clone();
    let sig = wrong_v["signature"].as_str().unwrap().to_owned();
    let flipped = if sig.ends_with("1b") { "1c" } else { "1b" };
    wrong_v["signature"] = json!(format!("{}{flipped}", &sig[..sig.len() - 2]));

    let input: Vec<Value> = cases
        .iter()
        .map(|(c, _)| c.clone())
        .chain([wrong_nonce, wrong_v])
        .collect();
    let answers = reference(&input);
    assert_eq!(answers.len(), input.len());
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for ((case, root), answer) in cases.iter().zip(&answers) {
        assert_eq!(answer["signing_root"], format!("{root}"), "{case}");
        assert_eq!(answer["valid"], true, "{case}");
        *counts
            .entry(case["kind"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        answers[cases.len()]["valid"],
        false,
        "a signature for another nonce"
    );
    assert_eq!(
        answers[cases.len() + 1]["valid"],
        false,
        "an ECDSA signature with the wrong v"
    );
    for (kind, n) in &counts {
        println!("{kind}: {n} roots and signatures agree with the Python reference");
    }
    assert_eq!(counts.len(), 5);
}

/// Module tokens made by PyJWT, as Commit-Boost's documentation makes them:
/// the verifier accepts the right ones and refuses each wrong one with its
/// own reason (missing, malformed, another algorithm, unknown module,
/// another module's secret, expired, another route, no or another body
/// hash).
#[test]
fn module_tokens_made_by_pyjwt_are_accepted_or_refused_with_the_reason() {
    use signer::api::commit_boost::jwt::{JwtError, verify};
    let secrets = [
        ("preconf", b"preconf-secret".as_slice()),
        ("other", b"other-secret".as_slice()),
    ];
    let secret = |m: &str| secrets.iter().find(|(n, _)| *n == m).map(|(_, s)| *s);
    let now = 1_800_000_000u64;
    let get = "/signer/v1/get_pubkeys";
    let sign = "/signer/v1/request_signature/bls";
    let body = r#"{"pubkey":"0xaa","object_root":"0xbb","nonce":0}"#;
    let claims =
        |module: &str, route: &str, exp: u64| json!({"module": module, "route": route, "exp": exp});
    // (token request, route, body, expected)
    type Case<'a> = (Value, &'a str, Option<&'a str>, Result<&'a str, JwtError>);
    let cases: Vec<Case> = vec![
        (
            json!({"claims": claims("preconf", get, now + 60), "secret": "preconf-secret", "alg": "HS256"}),
            get,
            None,
            Ok("preconf"),
        ),
        (
            json!({"claims": claims("preconf", sign, now + 60), "secret": "preconf-secret", "alg": "HS256", "body": body}),
            sign,
            Some(body),
            Ok("preconf"),
        ),
        (
            json!({"claims": claims("preconf", get, now - 10), "secret": "preconf-secret", "alg": "HS256"}),
            get,
            None,
            Err(JwtError::Expired(10)),
        ),
        (
            json!({"claims": claims("preconf", get, now + 60), "secret": "other-secret", "alg": "HS256"}),
            get,
            None,
            Err(JwtError::BadSignature("preconf".into())),
        ),
        (
            json!({"claims": claims("stranger", get, now + 60), "secret": "preconf-secret", "alg": "HS256"}),
            get,
            None,
            Err(JwtError::UnknownModule("stranger".into())),
        ),
        (
            json!({"claims": claims("preconf", get, now + 60), "secret": "preconf-secret", "alg": "HS256"}),
            sign,
            None,
            Err(JwtError::WrongRoute {
                got: get.into(),
                expected: sign.into(),
            }),
        ),
        (
            json!({"claims": claims("preconf", sign, now + 60), "secret": "preconf-secret", "alg": "HS256", "body": body}),
            sign,
            Some(r#"{"pubkey":"0xaa","object_root":"0xcc","nonce":0}"#),
            Err(JwtError::PayloadMismatch),
        ),
        (
            json!({"claims": claims("preconf", sign, now + 60), "secret": "preconf-secret", "alg": "HS256"}),
            sign,
            Some(body),
            Err(JwtError::PayloadHashMissing),
        ),
        (
            json!({"claims": claims("preconf", get, now + 60), "secret": "", "alg": "none"}),
            get,
            None,
            Err(JwtError::Algorithm("none".into())),
        ),
        (
            json!({"claims": claims("preconf", get, now + 60), "secret": "preconf-secret", "alg": "HS512"}),
            get,
            None,
            Err(JwtError::Algorithm("HS512".into())),
        ),
    ];
    let made = tokens(&cases.iter().map(|(c, ..)| c).collect::<Vec<_>>());
    assert_eq!(made.len(), cases.len());
    for ((request, route, body, expected), token) in cases.iter().zip(&made) {
        let header = format!("Bearer {}", token["token"].as_str().unwrap());
        let got = verify(Some(&header), secret, route, body.map(str::as_bytes), now);
        assert_eq!(
            got.as_ref()
                .map(|c| c.module.as_str())
                .map_err(Clone::clone),
            expected.clone(),
            "{request}"
        );
        if let Err(e) = got {
            println!("refused: {e}");
        }
    }
    // No header, another scheme, and a token that is not one.
    assert_eq!(verify(None, secret, get, None, now), Err(JwtError::Missing));
    assert_eq!(
        verify(Some("Basic dXNlcjpwdw=="), secret, get, None, now),
        Err(JwtError::Missing)
    );
    assert_eq!(
        verify(Some("Bearer not.a.jwt"), secret, get, None, now),
        Err(JwtError::Malformed)
    );
}

/// What the daemon test asks: a route, a body, and the token to send.
struct Call {
    cert: &'static str,
    method: &'static str,
    route: &'static str,
    body: String,
    /// The token's request for tokens.py (`None`: no Authorization header).
    token: Option<Value>,
}

/// A token request for `module` signed with `secret`, valid for `route`
/// (and `body`, when not empty) for five minutes.
fn token_for(module: &str, secret: &str, route: &str, body: &str) -> Value {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let mut t = json!({"claims": {"module": module, "route": route, "exp": exp}, "secret": secret, "alg": "HS256"});
    if !body.is_empty() {
        t["body"] = json!(body);
    }
    t
}

/// Sends `calls` to the daemon's HTTPS listener, with tokens made by PyJWT
/// (one Python run for all of them): (status, JSON body) each.
fn send(
    setup: &tests::daemon::Setup,
    addr: std::net::SocketAddr,
    calls: &[Call],
) -> Vec<(u16, Value)> {
    let wanted: Vec<&Value> = calls.iter().filter_map(|c| c.token.as_ref()).collect();
    let mut tokens = if wanted.is_empty() {
        Vec::new()
    } else {
        tokens(&wanted)
    }
    .into_iter();
    calls
        .iter()
        .map(|c| {
            let auth = c.token.as_ref().map(|_| {
                format!(
                    "Bearer {}",
                    tokens.next().unwrap()["token"].as_str().unwrap()
                )
            });
            let mut headers = vec![("Content-Type", "application/json")];
            if let Some(a) = &auth {
                headers.push(("Authorization", a.as_str()));
            }
            let (status, body) = tests::daemon::https(
                setup,
                addr,
                Some(c.cert),
                c.method,
                c.route,
                &headers,
                &c.body,
            )
            .unwrap();
            let v = serde_json::from_str(&body).unwrap_or_else(|_| json!({"text": body}));
            println!("{} {} as {}: {status} {v}", c.method, c.route, c.cert);
            (status, v)
        })
        .collect()
}

const PRECONF_SECRET: &str = "preconf-module-secret-0123456789";
const OTHER_SECRET: &str = "other-module-secret-abcdefghijkl";
const SIGNING_ID: &str = "0x6a33a23ef26a4836979edff86c493a69b26ccf0b4a16491a815a13787657431b";
const GET: &str = "/signer/v1/get_pubkeys";
const GENERATE: &str = "/signer/v1/generate_proxy_key";
const SIGN_BLS: &str = "/signer/v1/request_signature/bls";
const SIGN_PROXY_BLS: &str = "/signer/v1/request_signature/proxy-bls";
const SIGN_PROXY_ECDSA: &str = "/signer/v1/request_signature/proxy-ecdsa";

fn preconf(method: &'static str, route: &'static str, body: String) -> Call {
    let token = Some(token_for("PRECONF", PRECONF_SECRET, route, &body));
    Call {
        cert: "vc",
        method,
        route,
        body,
        token,
    }
}

/// A daemon setup with the HTTPS listener and `[commit_boost]` (plus
/// `extra` lines in it): module PRECONF is client `vc`, granted everything
/// on the validator key; module OTHER is client `node`, granted only
/// `commit_boost.sign`.
fn commit_boost_setup(extra: &str) -> tests::daemon::Setup {
    let setup = tests::daemon::Setup::new();
    setup.enable_http("");
    setup.write("keys/proxy.pass", "proxy store password\n");
    setup.write("keys/preconf.jwt", PRECONF_SECRET);
    setup.write("keys/other.jwt", OTHER_SECRET);
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    let (head, keys) = config.split_once("\n[[keys]]").unwrap();
    setup.write(
        "signer.toml",
        &format!(
            "{head}\n[commit_boost]\nchain_id = 17000\n{extra}proxy_dir = \"data/proxies\"\nproxy_password_file = \"keys/proxy.pass\"\n\n\
             [[commit_boost.module]]\nid = \"PRECONF\"\nsigning_id = \"{SIGNING_ID}\"\njwt_secret_file = \"keys/preconf.jwt\"\nclient = \"vc\"\n\n\
             [[commit_boost.module]]\nid = \"OTHER\"\nsigning_id = \"0x{}\"\njwt_secret_file = \"keys/other.jwt\"\nclient = \"node\"\n\n[[keys]]{keys}",
            "11".repeat(32)
        ),
    );
    // PRECONF may do everything with the validator key; OTHER may only sign.
    setup.write_policy(&setup.policy_with(
        "\n[[grant]]\nclients = [\"vc\"]\noperations = [\"commit_boost\"]\nkey_groups = [\"validators\"]\n\n\
         [[grant]]\nclients = [\"node\"]\noperations = [\"commit_boost.sign\"]\nkey_groups = [\"validators\"]\n",
    ));
    setup
}

/// The Commit-Boost signer API end to end: a daemon with two modules (each
/// its own policy client and certificate), called with tokens made by
/// PyJWT. Every signature it answers — consensus, proxy BLS, proxy ECDSA —
/// and both delegations verify under the Python reference; each token
/// mistake is a 401 naming it; another module's token over this client's
/// certificate, a key the policy does not grant, another module's proxy,
/// and bad bodies are refused with their reasons; proxies are listed to
/// their module only, stored encrypted, survive a restart (same keys: the
/// same signatures) and are audited.
#[test]
fn the_commit_boost_api_signs_what_the_reference_verifies_and_refuses_the_rest() {
    let setup = commit_boost_setup("");
    let consensus = hex0x(&setup.bls);
    let daemon = setup.start();
    let addr = daemon.http_api.unwrap();

    // Phase 1: list, make one proxy of each kind, sign with the consensus key,
    // and every refusal that needs no proxy.
    let generate = |scheme: &str| json!({"pubkey": consensus, "scheme": scheme}).to_string();
    let object_root = hex0x(&[0x42; 32]);
    let sign_body = |key: &str, field: &str, nonce: u64| {
        json!({field: key, "object_root": object_root, "nonce": nonce}).to_string()
    };
    let bls_body = sign_body(&consensus, "pubkey", 7);
    let mut expired = token_for("PRECONF", PRECONF_SECRET, GET, "");
    expired["claims"]["exp"] = json!(1_700_000_000u64);
    let calls = vec![
        preconf("GET", GET, String::new()),
        preconf("POST", GENERATE, generate("bls")),
        preconf("POST", GENERATE, generate("ecdsa")),
        preconf("POST", SIGN_BLS, bls_body.clone()),
        // 401s, each with its reason.
        Call {
            cert: "vc",
            method: "GET",
            route: GET,
            body: String::new(),
            token: None,
        },
        Call {
            cert: "vc",
            method: "GET",
            route: GET,
            body: String::new(),
            token: Some(expired),
        },
        Call {
            cert: "vc",
            method: "GET",
            route: GET,
            body: String::new(),
            token: Some(token_for("PRECONF", OTHER_SECRET, GET, "")),
        },
        Call {
            cert: "vc",
            method: "POST",
            route: SIGN_BLS,
            body: bls_body.clone(),
            token: Some(token_for("PRECONF", PRECONF_SECRET, GET, &bls_body)),
        },
        Call {
            cert: "vc",
            method: "POST",
            route: SIGN_BLS,
            body: sign_body(&consensus, "pubkey", 8),
            token: Some(token_for("PRECONF", PRECONF_SECRET, SIGN_BLS, &bls_body)),
        },
        Call {
            cert: "vc",
            method: "GET",
            route: GET,
            body: String::new(),
            token: Some(token_for("NOBODY", PRECONF_SECRET, GET, "")),
        },
        // OTHER's own valid token over vc's certificate.
        Call {
            cert: "vc",
            method: "GET",
            route: GET,
            body: String::new(),
            token: Some(token_for("OTHER", OTHER_SECRET, GET, "")),
        },
        // A key that is not loaded; a loaded key the policy does not grant.
        preconf(
            "POST",
            SIGN_BLS,
            sign_body(&hex0x(&[0x8a; 48]), "pubkey", 1),
        ),
        preconf(
            "POST",
            SIGN_BLS,
            sign_body(&hex0x(&setup.bls2), "pubkey", 1),
        ),
        // Bad bodies.
        preconf(
            "POST",
            SIGN_BLS,
            json!({"pubkey": consensus, "object_root": "0x42", "nonce": 1}).to_string(),
        ),
        preconf(
            "POST",
            SIGN_BLS,
            json!({"pubkey": consensus, "object_root": object_root}).to_string(),
        ),
        preconf(
            "POST",
            GENERATE,
            json!({"pubkey": consensus, "scheme": "ed25519"}).to_string(),
        ),
        // OTHER may sign but not make proxies.
        Call {
            cert: "node",
            method: "POST",
            route: GENERATE,
            body: generate("bls"),
            token: Some(token_for("OTHER", OTHER_SECRET, GENERATE, &generate("bls"))),
        },
    ];
    let answers = send(&setup, addr, &calls);
    let (status, listed) = &answers[0];
    assert_eq!(*status, 200);
    assert_eq!(
        listed,
        &json!({"keys": [{"consensus": consensus, "proxy_bls": [], "proxy_ecdsa": []}]})
    );
    let (bls_delegation, ecdsa_delegation) = (&answers[1].1, &answers[2].1);
    assert_eq!((answers[1].0, answers[2].0), (200, 200));
    assert_eq!(bls_delegation["message"]["delegator"], json!(consensus));
    let proxy_bls = bls_delegation["message"]["proxy"]
        .as_str()
        .unwrap()
        .to_owned();
    let proxy_ecdsa = ecdsa_delegation["message"]["proxy"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!((proxy_bls.len(), proxy_ecdsa.len()), (98, 42));
    let signed = &answers[3].1;
    assert_eq!(answers[3].0, 200);
    assert_eq!(signed["pubkey"], json!(consensus));
    assert_eq!(signed["module_signing_id"], json!(SIGNING_ID));
    assert_eq!(
        (signed["nonce"].clone(), signed["chain_id"].clone()),
        (json!(7), json!("0x4268"))
    );
    let reason = |i: usize| {
        (
            answers[i].0,
            answers[i].1["message"].as_str().unwrap_or("").to_owned(),
        )
    };
    let expect = [
        (4, 401, "no module token"),
        (5, 401, "the module token expired"),
        (6, 401, "does not verify with module \"PRECONF\"'s secret"),
        (
            7,
            401,
            "is for route \"/signer/v1/get_pubkeys\", not \"/signer/v1/request_signature/bls\"",
        ),
        (8, 401, "payload_hash is not the keccak-256 of this body"),
        (9, 401, "names module \"NOBODY\", which is not configured"),
        (
            10,
            403,
            "module \"OTHER\" is policy client \"node\"; this connection's certificate is client \"vc\"",
        ),
        (11, 404, "unknown pubkey: this signer holds no key 0x8a8a"),
        (12, 403, "not allowed"),
        (13, 400, "object_root: expected 0x and 64 hex digits"),
        (14, 400, "missing field `nonce`"),
        (15, 400, "scheme: \"ed25519\"; use \"bls\" or \"ecdsa\""),
        (16, 403, "not allowed"),
    ];
    for (i, status, text) in expect {
        let (got, message) = reason(i);
        assert_eq!(got, status, "call {i}: {message}");
        assert!(
            message.contains(text),
            "call {i}: {message:?} does not say {text:?}"
        );
        assert_eq!(
            answers[i].1["code"],
            json!(status),
            "call {i}: errors are {{code, message}}"
        );
    }

    // Counted under their own frontend: 6 bad tokens, 2 proxies made, 1 commitment.
    for (series, n) in [
        (
            "operation=\"commit_boost.auth\",outcome=\"unauthorized\"",
            6.0,
        ),
        ("operation=\"commit_boost.proxy\",outcome=\"signed\"", 2.0),
        ("operation=\"commit_boost.sign\",outcome=\"signed\"", 1.0),
    ] {
        let series = format!("signer_requests_total{{frontend=\"commit_boost\",{series}}}");
        assert_eq!(daemon.metric(&series), n, "{series}");
    }

    // Phase 2: the proxies sign; PRECONF lists them, OTHER does not see them
    // and cannot use them.
    let calls = vec![
        preconf("GET", GET, String::new()),
        preconf(
            "POST",
            SIGN_PROXY_BLS,
            sign_body(&proxy_bls, "proxy", u64::MAX),
        ),
        preconf(
            "POST",
            SIGN_PROXY_ECDSA,
            sign_body(&proxy_ecdsa, "proxy", 0),
        ),
        Call {
            cert: "node",
            method: "GET",
            route: GET,
            body: String::new(),
            token: Some(token_for("OTHER", OTHER_SECRET, GET, "")),
        },
        {
            let body = sign_body(&proxy_bls, "proxy", 1);
            Call {
                cert: "node",
                method: "POST",
                route: SIGN_PROXY_BLS,
                token: Some(token_for("OTHER", OTHER_SECRET, SIGN_PROXY_BLS, &body)),
                body,
            }
        },
        // A consensus key sent to a proxy route.
        preconf("POST", SIGN_PROXY_BLS, sign_body(&consensus, "pubkey", 1)),
    ];
    let answers = send(&setup, addr, &calls);
    assert_eq!(
        answers[0],
        (
            200,
            json!({"keys": [{"consensus": consensus, "proxy_bls": [proxy_bls], "proxy_ecdsa": [proxy_ecdsa]}]})
        )
    );
    let (proxy_bls_signed, proxy_ecdsa_signed) = (answers[1].1.clone(), answers[2].1.clone());
    assert_eq!((answers[1].0, answers[2].0), (200, 200));
    assert_eq!(proxy_bls_signed["pubkey"], json!(proxy_bls));
    assert_eq!(proxy_ecdsa_signed["address"], json!(proxy_ecdsa));
    assert_eq!(
        proxy_ecdsa_signed["signature"].as_str().unwrap().len(),
        2 + 130
    );
    assert_eq!(
        answers[3],
        (
            200,
            json!({"keys": [{"consensus": consensus, "proxy_bls": [], "proxy_ecdsa": []}]})
        )
    );
    assert_eq!(
        answers[4].0, 404,
        "another module's proxy: {}",
        answers[4].1
    );
    assert!(
        answers[4].1["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown proxy: this module has no bls proxy")
    );
    assert_eq!(answers[5].0, 400);
    assert!(
        answers[5].1["message"]
            .as_str()
            .unwrap()
            .contains("name the proxy as \"proxy\"")
    );

    // The operator's view: `signer commit-boost proxies` lists both from
    // their files, without the password.
    let out = Command::new(tests::daemon::signer_bin())
        .args(["commit-boost", "proxies", "--module", "PRECONF", "--config"])
        .arg(setup.path("signer.toml"))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (scheme, proxy) in [("bls", &proxy_bls), ("ecdsa", &proxy_ecdsa)] {
        assert!(
            listed.contains(&format!("PRECONF\t{consensus}\t{scheme}\t{proxy}\tfile")),
            "{listed}"
        );
    }
    assert!(listed.contains("2 proxy key(s) in "), "{listed}");

    // Phase 3: every signature verifies under the Python reference, with the
    // roots it computes from the configuration (not from our answers).
    let gfv = "0x00000001";
    let commitment = |kind: &str, key: &str, nonce: u64, signature: &Value| {
        json!({"kind": kind, "genesis_fork_version": gfv, "chain_id": 17000, "module_signing_id": SIGNING_ID,
               "nonce": nonce, "object_root": object_root, "key": key, "signature": signature})
    };
    let delegation = |kind: &str, d: &Value| {
        json!({"kind": kind, "genesis_fork_version": gfv, "delegator": d["message"]["delegator"],
               "proxy": d["message"]["proxy"], "signature": d["signature"]})
    };
    let cases = vec![
        commitment("bls", &consensus, 7, &signed["signature"]),
        commitment(
            "proxy_bls",
            &proxy_bls,
            u64::MAX,
            &proxy_bls_signed["signature"],
        ),
        commitment(
            "proxy_ecdsa",
            &proxy_ecdsa,
            0,
            &proxy_ecdsa_signed["signature"],
        ),
        delegation("delegation_bls", bls_delegation),
        delegation("delegation_ecdsa", ecdsa_delegation),
        // Can fail: the consensus signature is not valid for another nonce.
        commitment("bls", &consensus, 8, &signed["signature"]),
    ];
    assert_eq!(valid(&cases), [true, true, true, true, true, false]);
    println!(
        "5 answers of the daemon verify under the Python reference; the tampered one does not"
    );

    // Phase 4: stored encrypted, audited, counted; after a restart the same
    // proxies are listed and sign with the same keys.
    let file = setup
        .path("data/proxies/PRECONF")
        .join(hex::encode(&setup.bls))
        .join("ecdsa")
        .join(format!("{}.json", &proxy_ecdsa[2..]));
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(stored["key_type"], json!("secp256k1"));
    assert_eq!(stored["crypto"]["cipher"]["function"], json!("aes-128-ctr"));
    assert_eq!(
        stored["commit_boost"]["delegation_signature"],
        ecdsa_delegation["signature"]
    );
    assert_eq!(daemon.metric("signer_commit_boost_proxies"), 2.0);
    drop(daemon);
    let audit = std::fs::read_to_string(setup.path("data/audit.jsonl")).unwrap();
    let proxies_made = audit
        .lines()
        .filter(|l| l.contains("\"commit_boost.proxy\"") && l.contains("\"signed\""))
        .count();
    assert_eq!(proxies_made, 2, "{audit}");
    assert!(
        audit.contains(&format!("module PRECONF: new ecdsa proxy {proxy_ecdsa}")),
        "{audit}"
    );
    assert!(
        audit.contains("module PRECONF: object_root 0x4242"),
        "{audit}"
    );

    let daemon = setup.start();
    let addr = daemon.http_api.unwrap();
    let answers = send(
        &setup,
        addr,
        &[
            preconf("GET", GET, String::new()),
            preconf(
                "POST",
                SIGN_PROXY_BLS,
                sign_body(&proxy_bls, "proxy", u64::MAX),
            ),
        ],
    );
    assert_eq!(
        answers[0],
        (
            200,
            json!({"keys": [{"consensus": consensus, "proxy_bls": [proxy_bls], "proxy_ecdsa": [proxy_ecdsa]}]})
        )
    );
    assert_eq!(
        answers[1],
        (200, proxy_bls_signed),
        "the same proxy key after a restart"
    );
    assert!(
        daemon
            .log()
            .contains("Commit-Boost signer API on the HTTPS listener")
    );

    // A consensus key taken out of service takes its proxies with it.
    let out = Command::new(tests::daemon::signer_bin())
        .args([
            "keys",
            "disable",
            &consensus,
            "--reason",
            "validator exiting (OPS-12)",
            "--config",
        ])
        .arg(setup.path("signer.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers = send(
        &setup,
        addr,
        &[
            preconf(
                "POST",
                SIGN_PROXY_ECDSA,
                sign_body(&proxy_ecdsa, "proxy", 3),
            ),
            preconf("POST", SIGN_BLS, sign_body(&consensus, "pubkey", 3)),
            preconf("POST", GENERATE, generate("bls")),
        ],
    );
    for (status, body) in &answers {
        assert_eq!(*status, 403, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("disabled"),
            "{body}"
        );
    }
    drop(daemon);

    // An operator's mistakes stop the start, each with what to fix.
    let good = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    setup.write("keys/short.jwt", "short");
    let mistakes = [
        (
            "client = \"node\"",
            "client = \"nod\"",
            "client \"nod\" is not a client of the policy",
        ),
        (
            SIGNING_ID,
            "0x1234",
            "is not 0x and 64 hex digits (the module's 32-byte signing id)",
        ),
        (
            "id = \"OTHER\"",
            "id = \"PRECONF\"",
            "\"PRECONF\" is listed twice",
        ),
        (
            "chain_id = 17000\n",
            "",
            "give the EVM chain id commitments are for",
        ),
        (
            "keys/other.jwt",
            "keys/missing.jwt",
            "commit_boost module \"OTHER\": jwt_secret_file",
        ),
        (
            "keys/other.jwt",
            "keys/short.jwt",
            "holds 5 bytes; use at least 16 random ones",
        ),
        (
            "keys/proxy.pass",
            "keys/preconf.jwt",
            "does not decrypt with the proxy password",
        ),
    ];
    for (from, to, says) in mistakes {
        assert!(good.contains(from), "{from}");
        setup.write("signer.toml", &good.replacen(from, to, 1));
        let (_, stderr) = tests::ha::serve_refused(&setup.path("signer.toml"));
        assert!(stderr.contains(says), "{from} → {to}: {stderr}");
        println!(
            "refused to start: {}",
            stderr.lines().last().unwrap_or_default()
        );
    }
    // A module the policy grants nothing starts, with a warning saying so.
    setup.write("signer.toml", &good);
    setup.write_policy(&setup.policy_with(
        "\n[[grant]]\nclients = [\"vc\"]\noperations = [\"commit_boost\"]\nkey_groups = [\"validators\"]\n",
    ));
    let daemon = setup.start();
    let log = daemon.log();
    assert!(
        log.contains("grants its client no commit_boost.* on any loaded key")
            && log.contains("module=\"OTHER\"")
            && !log.contains("module=\"PRECONF\""),
        "{log}"
    );
}

/// A daemon whose secp256k1 proxies are made in a vault
/// (`ecdsa_proxy_vault = vault`, in `setup` with `env`): the proxy file
/// holds no secret, only where the key is; the delegation and the proxy's
/// signatures verify under the Python reference, before and after a
/// restart; a configuration that forgets the vault stops the start, naming
/// the setting to restore. Returns the stored `vault` object.
fn vault_held_ecdsa_proxies(
    setup: &tests::daemon::Setup,
    vault: &str,
    env: &[(String, String)],
) -> Value {
    let consensus = hex0x(&setup.bls);
    let object_root = hex0x(&[0x17; 32]);
    let sign = |proxy: &str, nonce: u64| {
        preconf(
            "POST",
            SIGN_PROXY_ECDSA,
            json!({"proxy": proxy, "object_root": object_root, "nonce": nonce}).to_string(),
        )
    };
    let daemon = setup.start();
    let answers = send(
        setup,
        daemon.http_api.unwrap(),
        &[preconf(
            "POST",
            GENERATE,
            json!({"pubkey": consensus, "scheme": "ecdsa"}).to_string(),
        )],
    );
    assert_eq!(answers[0].0, 200, "{}", answers[0].1);
    let delegation = answers[0].1.clone();
    let proxy = delegation["message"]["proxy"].as_str().unwrap().to_owned();
    let first = send(setup, daemon.http_api.unwrap(), &[sign(&proxy, 5)]);
    assert_eq!(first[0].0, 200, "{}", first[0].1);
    drop(daemon);

    let file = setup
        .path("data/proxies/PRECONF")
        .join(hex::encode(&setup.bls))
        .join("ecdsa")
        .join(format!("{}.json", &proxy[2..]));
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(
        stored.get("crypto").is_none(),
        "no secret in the file: {stored}"
    );

    let daemon = setup.start();
    let again = send(setup, daemon.http_api.unwrap(), &[sign(&proxy, 6)]);
    assert_eq!(again[0].0, 200, "{}", again[0].1);
    drop(daemon);

    let commitment = |nonce: u64, signature: &Value| {
        json!({"kind": "proxy_ecdsa", "genesis_fork_version": "0x00000001", "chain_id": 17000,
               "module_signing_id": SIGNING_ID, "nonce": nonce, "object_root": object_root,
               "key": proxy, "signature": signature})
    };
    let cases = vec![
        json!({"kind": "delegation_ecdsa", "genesis_fork_version": "0x00000001",
               "delegator": consensus, "proxy": proxy, "signature": delegation["signature"]}),
        commitment(5, &first[0].1["signature"]),
        commitment(6, &again[0].1["signature"]),
        commitment(7, &again[0].1["signature"]),
    ];
    assert_eq!(valid(&cases), [true, true, true, false]);
    println!("a {vault} ECDSA proxy: delegation and 2 signatures verify, a tampered one does not");

    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    let setting = format!("ecdsa_proxy_vault = \"{vault}\"\n");
    assert!(config.contains(&setting));
    setup.write("signer.toml", &config.replace(&setting, ""));
    let (_, stderr) = tests::ha::serve_refused_with(&setup.path("signer.toml"), env);
    assert!(
        stderr.contains("its key is held by")
            && stderr.contains(&format!(
                "set [commit_boost] ecdsa_proxy_vault = \"{vault}\""
            )),
        "{stderr}"
    );
    setup.write("signer.toml", &config);
    stored["vault"].clone()
}

/// `ecdsa_proxy_vault = "pkcs11:hsm"` on SoftHSM: the token lists the key
/// under the label the file names.
#[test]
fn ecdsa_proxies_made_in_an_hsm_sign_and_survive_a_restart() {
    use tests::hsm::{SoftHsm, configure_pkcs11, softhsm_module};
    let hsm = SoftHsm::new(&["proxies"]);
    let mut setup = commit_boost_setup("ecdsa_proxy_vault = \"pkcs11:hsm\"\n");
    configure_pkcs11(&setup, &hsm, 5000, &[("hsm", &softhsm_module(), "proxies")]);
    setup.env = hsm.env();
    let vault = vault_held_ecdsa_proxies(&setup, "pkcs11:hsm", &hsm.env());
    assert_eq!(
        (vault["kind"].as_str(), vault["name"].as_str()),
        (Some("pkcs11"), Some("hsm"))
    );
    let label = vault["reference"].as_str().unwrap();
    assert!(label.starts_with("commit-boost-proxy-PRECONF-"), "{label}");
    let listed = hsm.keys(&softhsm_module(), "proxies", &["list"]);
    assert!(listed.contains(label), "the token holds the key: {listed}");
}

/// `ecdsa_proxy_vault = "kms"` on `hsm-sim kms` (moto signs a DIGEST as if
/// RAW: docs/kms.md): the file names a KMS key, which is an
/// `ECC_SECG_P256K1` signing key tagged with the proxy's label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecdsa_proxies_made_in_kms_sign_and_survive_a_restart() {
    use tests::kms::{aws_env, client, configure_kms, sim};
    let kms = sim(None, false);
    let mut setup = commit_boost_setup("ecdsa_proxy_vault = \"kms\"\n");
    configure_kms(&setup, &kms.url, "");
    setup.env = aws_env();
    let env = aws_env();
    let vault = {
        let setup = &setup;
        tokio::task::block_in_place(|| vault_held_ecdsa_proxies(setup, "kms", &env))
    };
    assert_eq!(vault["kind"], json!("kms"));
    let arn = vault["reference"].as_str().unwrap().to_owned();
    assert!(arn.starts_with("arn:aws:kms:"), "{arn}");
    let c = client(&kms.url).await;
    let described = c.describe_key().key_id(&arn).send().await.unwrap();
    let meta = described.key_metadata().unwrap();
    assert_eq!(meta.key_spec().map(|s| s.as_str()), Some("ECC_SECG_P256K1"));
    let tags = c.list_resource_tags().key_id(&arn).send().await.unwrap();
    assert!(
        tags.tags()
            .iter()
            .any(|t| t.tag_key() == "commit-boost-proxy"
                && t.tag_value().starts_with("commit-boost-proxy-PRECONF-")),
        "{tags:?}"
    );
}

/// Two instances (each its own SQLite database) sharing `proxy_dir`: a
/// proxy made through one is listed by and signs through the other without
/// a restart — the other looks in the directory again when asked for a
/// proxy it does not hold.
#[test]
fn instances_sharing_proxy_dir_serve_each_others_proxies() {
    let setup = commit_boost_setup("");
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    std::fs::create_dir_all(setup.path("data2")).unwrap();
    setup.write(
        "signer2.toml",
        &config.replace("data/slashing.sqlite", "data2/slashing.sqlite"),
    );
    let consensus = hex0x(&setup.bls);
    let a = setup.start();
    let b = tests::daemon::Daemon::start(&setup.path("signer2.toml"), &setup.path("daemon2.log"));
    let made = send(
        &setup,
        a.http_api.unwrap(),
        &[preconf(
            "POST",
            GENERATE,
            json!({"pubkey": consensus, "scheme": "bls"}).to_string(),
        )],
    );
    assert_eq!(made[0].0, 200, "{}", made[0].1);
    let proxy = made[0].1["message"]["proxy"].as_str().unwrap().to_owned();
    // B started more than a second ago (it waited for A's answer), so it looks.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let body = json!({"proxy": proxy, "object_root": hex0x(&[9; 32]), "nonce": 1}).to_string();
    let on_b = send(
        &setup,
        b.http_api.unwrap(),
        &[
            preconf("POST", SIGN_PROXY_BLS, body.clone()),
            preconf("GET", GET, String::new()),
        ],
    );
    assert_eq!(on_b[0].0, 200, "{}", on_b[0].1);
    assert_eq!(on_b[1].1["keys"][0]["proxy_bls"], json!([proxy]));
    // The same key: A's signature of the same commitment is identical.
    let on_a = send(
        &setup,
        a.http_api.unwrap(),
        &[preconf("POST", SIGN_PROXY_BLS, body)],
    );
    assert_eq!(on_a[0], on_b[0]);
    assert!(
        b.log()
            .contains("Commit-Boost proxy written by another instance loaded")
    );
}
