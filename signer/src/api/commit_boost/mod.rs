//! The Commit-Boost signer API (`/signer/v1/…`), for proposer-commitment
//! modules, on the HTTPS listener (commit-boost-client, `signer-api.md`):
//!
//! - `GET /signer/v1/get_pubkeys`: the consensus keys the module may use,
//!   each with the module's own proxies;
//! - `POST /signer/v1/request_signature/{bls,proxy-bls,proxy-ecdsa}`: a
//!   commitment (`object_root`, `nonce`) signed by a consensus key or a
//!   proxy, bound to the module's signing id and the chain;
//! - `POST /signer/v1/generate_proxy_key`: a new BLS or ECDSA proxy for a
//!   consensus key, and its delegation signed by that key.
//!
//! A caller passes two checks before anything is decided: its TLS
//! certificate names a policy client, and its module token ([`jwt`]) is
//! signed with the secret of a configured module that *is* that client.
//! Everything else — the policy's `commit_boost.*` grants, key states,
//! signing, the proxy store, audit — is the pipeline's, on the worker
//! pool. Errors are `{"code": status, "message": why}`.

pub mod jwt;

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use super::https::{Host, Reply, identify, json_reply, read_body, run_job};
use crate::backend::proxies::ProxyScheme;
use crate::crypto::secp256k1::RecoverableSignature;
use crate::pipeline::{self, CommitBoostAsk, CommitBoostWhat, Message, Refusal, Signature};
use crate::policy::Operation;
use crate::pool::Answer;
use crate::tls::listener::PeerInfo;

/// Largest body accepted (every request is a few hundred bytes).
const MAX_BODY: usize = 16 << 10;

/// The routes.
const GET_PUBKEYS: &str = "/signer/v1/get_pubkeys";
const GENERATE_PROXY_KEY: &str = "/signer/v1/generate_proxy_key";
const SIGN_BLS: &str = "/signer/v1/request_signature/bls";
const SIGN_PROXY_BLS: &str = "/signer/v1/request_signature/proxy-bls";
const SIGN_PROXY_ECDSA: &str = "/signer/v1/request_signature/proxy-ecdsa";

fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    json_reply(
        status,
        &json!({"code": status.as_u16(), "message": message.into()}),
    )
}

/// What a route asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Pubkeys,
    Generate,
    Sign(Option<ProxyScheme>),
}

fn route_of(path: &str) -> Option<(Route, Method)> {
    Some(match path {
        GET_PUBKEYS => (Route::Pubkeys, Method::GET),
        GENERATE_PROXY_KEY => (Route::Generate, Method::POST),
        SIGN_BLS => (Route::Sign(None), Method::POST),
        SIGN_PROXY_BLS => (Route::Sign(Some(ProxyScheme::Bls)), Method::POST),
        SIGN_PROXY_ECDSA => (Route::Sign(Some(ProxyScheme::Ecdsa)), Method::POST),
        _ => return None,
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `0x`-prefixed (or bare) hex of exactly `N` bytes.
fn hex_n<const N: usize>(field: &str, s: &str) -> Result<[u8; N], String> {
    let h = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    hex::decode(h)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{field}: expected 0x and {} hex digits, got {s:?}", 2 * N))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignBody {
    #[serde(default)]
    pubkey: Option<String>,
    #[serde(default)]
    proxy: Option<String>,
    object_root: String,
    nonce: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateBody {
    pubkey: String,
    scheme: String,
}

/// What a body asks: the key it names, and what of it.
fn read_ask(route: Route, body: &[u8]) -> Result<(Vec<u8>, CommitBoostWhat), String> {
    let shape = |e: serde_json::Error| match route {
        Route::Generate => {
            format!("expected {{\"pubkey\": \"0x…\", \"scheme\": \"bls\"|\"ecdsa\"}}: {e}")
        }
        Route::Sign(None) => format!(
            "expected {{\"pubkey\": \"0x…\", \"object_root\": \"0x…\", \"nonce\": integer}}: {e}"
        ),
        _ => format!(
            "expected {{\"proxy\": \"0x…\", \"object_root\": \"0x…\", \"nonce\": integer}}: {e}"
        ),
    };
    match route {
        Route::Generate => {
            let b: GenerateBody = serde_json::from_slice(body).map_err(shape)?;
            let scheme = match b.scheme.as_str() {
                "bls" => ProxyScheme::Bls,
                "ecdsa" => ProxyScheme::Ecdsa,
                other => return Err(format!("scheme: {other:?}; use \"bls\" or \"ecdsa\"")),
            };
            Ok((
                hex_n::<48>("pubkey", &b.pubkey)?.to_vec(),
                CommitBoostWhat::Delegate(scheme),
            ))
        }
        Route::Sign(by) => {
            let b: SignBody = serde_json::from_slice(body).map_err(shape)?;
            let key = match (by, b.pubkey, b.proxy) {
                (None, Some(pk), None) => hex_n::<48>("pubkey", &pk)?.to_vec(),
                (Some(ProxyScheme::Bls), None, Some(p)) => hex_n::<48>("proxy", &p)?.to_vec(),
                (Some(ProxyScheme::Ecdsa), None, Some(p)) => hex_n::<20>("proxy", &p)?.to_vec(),
                (None, _, _) => {
                    return Err(
                        "name the consensus key as \"pubkey\" (for a proxy, use request_signature/proxy-bls or proxy-ecdsa)".into(),
                    );
                }
                (Some(_), _, _) => {
                    return Err(
                        "name the proxy as \"proxy\" (for the consensus key, use request_signature/bls)".into(),
                    );
                }
            };
            Ok((
                key,
                CommitBoostWhat::Sign {
                    by,
                    object_root: hex_n::<32>("object_root", &b.object_root)?,
                    nonce: b.nonce,
                },
            ))
        }
        Route::Pubkeys => Err("no body expected".into()),
    }
}

/// Serves one request under `/signer/v1/`.
pub(crate) async fn handle(
    req: Request<Incoming>,
    shared: Arc<dyn Host>,
    peer: Option<PeerInfo>,
) -> Reply {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    let Some(settings) = shared.pipeline().commit_boost() else {
        return error(
            StatusCode::NOT_FOUND,
            "the Commit-Boost signer API is not configured on this signer ([commit_boost])",
        );
    };
    let Some((route, method)) = route_of(&path) else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no route {path}; this signer serves {GET_PUBKEYS}, {GENERATE_PROXY_KEY} and {SIGN_BLS}, {SIGN_PROXY_BLS}, {SIGN_PROXY_ECDSA}"
            ),
        );
    };
    if req.method() != method {
        return error(StatusCode::METHOD_NOT_ALLOWED, format!("use {method}"));
    }
    let client = match identify(shared.as_ref(), peer.as_ref()) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::FORBIDDEN, e),
    };
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = if method == Method::POST {
        match read_body(req, shared.as_ref(), MAX_BODY).await {
            Ok(b) => b,
            Err((status, why)) => return error(status, why),
        }
    } else {
        Default::default()
    };
    let modules = settings.modules();
    let claims = match jwt::verify(
        authorization.as_deref(),
        |id| modules.iter().find(|m| m.id == id).map(|m| m.secret()),
        &path,
        Some(&body),
        unix_now(),
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(peer = ?peer.as_ref().map(|p| p.addr), client = client.as_str(), route = path, "Commit-Boost request refused: {e}");
            shared.pipeline().metrics().request(
                "commit_boost",
                "commit_boost.auth",
                "unauthorized",
            );
            return error(StatusCode::UNAUTHORIZED, e.to_string());
        }
    };
    let Some(module) = modules.iter().find(|m| m.id == claims.module) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "the module is no longer configured",
        );
    };
    // Both factors must name the same principal.
    if module.client != client.as_str() {
        tracing::warn!(
            module = module.id,
            client = client.as_str(),
            "Commit-Boost token of another client's module"
        );
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "module {:?} is policy client {:?}; this connection's certificate is client {:?}",
                module.id,
                module.client,
                client.as_str()
            ),
        );
    }
    let reply = match route {
        // Off the async threads: listing reads every key's grants, and may
        // load (decrypt) proxies another instance wrote.
        Route::Pubkeys => {
            let (host, module_id) = (shared.clone(), module.id.clone());
            tokio::task::spawn_blocking(move || pubkeys(host.as_ref(), &client, &module_id))
                .await
                .unwrap_or_else(|_| {
                    error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "listing the keys failed inside the signer",
                    )
                })
        }
        _ => {
            let (key, what) = match read_ask(route, &body) {
                Ok(a) => a,
                Err(why) => return error(StatusCode::BAD_REQUEST, why),
            };
            // As the API says (and Web3Signer does): 404 for a consensus key
            // this signer does not hold, whoever asks. (A proxy is looked up
            // among the module's own, in the pipeline.)
            let names_consensus_key = !matches!(what, CommitBoostWhat::Sign { by: Some(_), .. });
            if names_consensus_key && !shared.pipeline().keys().contains(&key) {
                shared.pipeline().metrics().request(
                    "commit_boost",
                    what.operation().name(),
                    "unknown_key",
                );
                return error(
                    StatusCode::NOT_FOUND,
                    format!(
                        "unknown pubkey: this signer holds no key 0x{}",
                        hex::encode(&key)
                    ),
                );
            }
            let ask = CommitBoostAsk {
                module: module.id.clone(),
                signing_id: module.signing_id,
                what: what.clone(),
            };
            let item = pipeline::Request {
                client,
                public_key: pipeline::KeyId::new(key.clone()),
                message: Message::CommitBoost(ask),
                scope: None,
            };
            let answered = if matches!(what, CommitBoostWhat::Delegate(_)) {
                // Making a proxy runs a KDF (or an HSM or KMS key generation)
                // and several fsyncs: on a thread of its own, not on the
                // signing workers, so the duties batched there do not wait
                // for it. It is rare, and still decided and audited by the
                // pipeline.
                let host = shared.clone();
                tokio::task::spawn_blocking(move || {
                    vec![Answer::Done(host.pipeline().sign("commit_boost", item))]
                })
                .await
                .map_err(|_| {
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the signer lost the answer; nothing is known to be made — retry",
                    )
                })
            } else {
                run_job(shared.as_ref(), "commit_boost", vec![item]).await
            };
            match answered {
                Ok(mut answers) => answer(
                    answers.pop(),
                    &key,
                    &what,
                    module.signing_id,
                    settings.chain_id,
                ),
                Err(reply) => reply,
            }
        }
    };
    shared
        .pipeline()
        .metrics()
        .stage("total", started.elapsed());
    reply
}

/// `get_pubkeys`: the consensus keys `client` may use for Commit-Boost,
/// each with `module`'s proxies of it (another module's are not shown).
fn pubkeys(shared: &dyn Host, client: &crate::policy::ClientId, module: &str) -> Reply {
    let pipeline = shared.pipeline();
    let proxies = pipeline
        .commit_boost()
        .map(|c| c.proxies.of_module(module))
        .unwrap_or_default();
    let keys: Vec<serde_json::Value> = pipeline
        .list_keys(client)
        .into_iter()
        .filter(|k| {
            k.scheme == "bls"
                && k.operations.iter().any(|o| {
                    matches!(
                        o,
                        Operation::CommitBoostSign
                            | Operation::CommitBoostProxy
                            | Operation::CommitBoostProxySign
                    )
                })
        })
        .map(|k| {
            let of = |scheme: ProxyScheme| -> Vec<String> {
                proxies
                    .iter()
                    .filter(|p| p.scheme == scheme && p.delegator[..] == k.public_key[..])
                    .map(|p| format!("0x{}", hex::encode(&p.id)))
                    .collect()
            };
            json!({
                "consensus": format!("0x{}", hex::encode(&k.public_key)),
                "proxy_bls": of(ProxyScheme::Bls),
                "proxy_ecdsa": of(ProxyScheme::Ecdsa),
            })
        })
        .collect();
    json_reply(StatusCode::OK, &json!({ "keys": keys }))
}

/// A refusal as this API answers it.
fn refusal(r: &Refusal) -> Reply {
    let (status, message) = super::https::refusal_reply(r);
    error(status, message)
}

/// The pipeline's answer as the API's response.
fn answer(
    answer: Option<Answer>,
    key: &[u8],
    what: &CommitBoostWhat,
    signing_id: [u8; 32],
    chain_id: u64,
) -> Reply {
    let signed = match answer {
        Some(Answer::Done(Ok(s))) => s,
        Some(Answer::Done(Err(Refusal::UnknownKey))) => {
            if let CommitBoostWhat::Sign { by: Some(s), .. } = what {
                return error(
                    StatusCode::NOT_FOUND,
                    format!(
                        "unknown proxy: this module has no {} proxy 0x{} (get_pubkeys lists its proxies; generate_proxy_key makes one)",
                        s.name(),
                        hex::encode(key)
                    ),
                );
            }
            return refusal(&Refusal::UnknownKey);
        }
        Some(Answer::Done(Err(r))) => return refusal(&r),
        Some(Answer::Overloaded) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "waited past its deadline in the signing queue; nothing was signed — retry",
            );
        }
        None => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no answer; nothing is known to be signed — retry",
            );
        }
    };
    let hex0x = |b: &[u8]| format!("0x{}", hex::encode(b));
    match (what, signed) {
        (CommitBoostWhat::Delegate(_), Signature::Delegation { proxy, signature }) => json_reply(
            StatusCode::OK,
            &json!({
                "message": {"delegator": hex0x(key), "proxy": hex0x(&proxy)},
                "signature": hex0x(&signature),
            }),
        ),
        (
            CommitBoostWhat::Sign {
                object_root, nonce, ..
            },
            signed,
        ) => {
            let (name, signature) = match signed {
                Signature::Bls(s) => ("pubkey", s.to_vec()),
                Signature::Raw {
                    signature,
                    recovery_id: Some(recovery_id),
                } => {
                    let Ok(rs) = <[u8; 64]>::try_from(signature.as_slice()) else {
                        return error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "the signer produced an unexpected signature",
                        );
                    };
                    // r ‖ s ‖ v, v = 27 or 28.
                    let rsv = RecoverableSignature { rs, recovery_id }.to_ethereum_bytes();
                    ("address", rsv.to_vec())
                }
                _ => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the signer produced an unexpected signature",
                    );
                }
            };
            json_reply(
                StatusCode::OK,
                &json!({
                    name: hex0x(key),
                    "object_root": hex0x(object_root),
                    "module_signing_id": hex0x(&signing_id),
                    "nonce": nonce,
                    // As Commit-Boost's own signer writes its uint256: 0x-hex.
                    "chain_id": format!("{chain_id:#x}"),
                    "signature": hex0x(&signature),
                }),
            )
        }
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the signer produced an unexpected answer",
        ),
    }
}
