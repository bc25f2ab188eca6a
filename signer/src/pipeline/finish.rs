//! Finishing an item once the database has decided: sign (remote
//! backends on several lanes at once), and for CometBFT note the signature
//! and the timestamp that was signed.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prost::Message as _;
use slashing_db::{DbError, Decision, Safe};

use crate::backend::Key;
use crate::cometbft::Timestamp;
use crate::policy::Operation;

use super::prepare::{Plan, Prepared, Raw};
use super::refusal::{Unavailable, backend_refusal};
use super::{Outcome, Pipeline, Refusal, Signature};

/// Most remote signatures of one batch waited for at once.
const REMOTE_LANES: usize = 16;

/// Signs with a consensus key as CometBFT verifies it.
fn comet_sign(key: &Key, msg: &[u8]) -> Result<Vec<u8>, Refusal> {
    key.sign_comet(msg).map_err(backend_refusal)
}

/// A signing thread panicked: nothing it signed is returned.
fn lane_failed() -> Refusal {
    Refusal::BackendUnavailable(Unavailable::Internal("signing lane failed"))
}

/// Signs a vote's sign bytes and, for a precommit that carries one, its
/// extension. A remote backend's two signatures are waited for at once, so
/// a precommit costs one HSM or KMS round trip, not two (a thread costs
/// tens of µs; a remote signature hundreds of µs to tens of ms). A key in
/// memory signs both here: an Ed25519 signature (~21 µs on this project's
/// 2-core VMs) is cheaper than waking another thread for it. Both happen
/// after the database's decision, as every signature does.
fn comet_sign_with_extension(
    key: &Key,
    msg: &[u8],
    extension: Option<&[u8]>,
) -> Result<(Vec<u8>, Option<Vec<u8>>), Refusal> {
    match extension {
        Some(ext) if key.remote().is_some() => std::thread::scope(|s| {
            let other = s.spawn(|| comet_sign(key, ext));
            let signature = comet_sign(key, msg);
            let extension = other.join().map_err(|_| lane_failed())?;
            Ok((signature?, Some(extension?)))
        }),
        _ => Ok((
            comet_sign(key, msg)?,
            extension.map(|e| comet_sign(key, e)).transpose()?,
        )),
    }
}

impl Prepared<'_> {
    /// True when signing waits on a remote backend.
    fn is_remote(&self) -> bool {
        matches!(&self.plan, Ok(Plan::Comet { key, .. } | Plan::Raw { key, .. }) if key.remote().is_some())
    }
}

impl Pipeline {
    /// Signs every prepared item. Items whose key is held by a remote
    /// backend (an HSM token, KMS) wait for it rather than compute: when a
    /// batch has several, they are signed on up to [`REMOTE_LANES`] threads
    /// at once, so one batch can keep every session of a token busy
    /// instead of queueing on one.
    pub(super) fn finish_all(
        &self,
        prepared: &[Prepared<'_>],
        decisions: Vec<Option<Decision>>,
        db_failure: Option<&Arc<DbError>>,
    ) -> Vec<Outcome> {
        let decisions = Mutex::new(decisions);
        let remote = prepared.iter().filter(|p| p.is_remote()).count();
        if remote < 2 {
            return prepared
                .iter()
                .map(|p| self.finish(p, &decisions, db_failure))
                .collect();
        }
        let lanes = remote.min(REMOTE_LANES);
        let mut outcomes: Vec<Option<Outcome>> = prepared.iter().map(|_| None).collect();
        std::thread::scope(|s| {
            let decisions = &decisions;
            let handles: Vec<_> = (1..lanes)
                .map(|lane| {
                    s.spawn(move || {
                        prepared
                            .iter()
                            .enumerate()
                            .skip(lane)
                            .step_by(lanes)
                            .map(|(i, p)| (i, self.finish(p, decisions, db_failure)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for (i, p) in prepared.iter().enumerate().step_by(lanes) {
                if let Some(o) = outcomes.get_mut(i) {
                    *o = Some(self.finish(p, decisions, db_failure));
                }
            }
            for h in handles {
                if let Ok(done) = h.join() {
                    for (i, o) in done {
                        if let Some(slot) = outcomes.get_mut(i) {
                            *slot = Some(o);
                        }
                    }
                }
            }
        });
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(lane_failed())))
            .collect()
    }

    /// Signs a prepared item after the database decided (or failed).
    fn finish(
        &self,
        p: &Prepared<'_>,
        decisions: &Mutex<Vec<Option<Decision>>>,
        db_failure: Option<&Arc<DbError>>,
    ) -> Outcome {
        let plan = match &p.plan {
            Ok(plan) => plan,
            Err(r) => return Err(r.clone()),
        };
        let decision = |i: usize| -> Result<Safe, Refusal> {
            if let Some(e) = db_failure {
                return Err(Refusal::BackendUnavailable(Unavailable::Database(
                    e.clone(),
                )));
            }
            decisions
                .lock()
                .map_err(|_| {
                    Refusal::BackendUnavailable(Unavailable::Internal("decision list poisoned"))
                })?
                .get_mut(i)
                .and_then(Option::take)
                .ok_or_else(|| {
                    Refusal::BackendUnavailable(Unavailable::Internal(
                        "the slashing database gave no decision",
                    ))
                })?
                .map_err(Refusal::Slashable)
        };
        match plan {
            Plan::Bls { key, root, db } => {
                if let Some(i) = db {
                    decision(*i)?;
                }
                let started = Instant::now();
                let signature = key.sign(root).to_bytes();
                self.metrics.stage("backend", started.elapsed());
                Ok(Signature::Bls(signature))
            }
            Plan::Comet {
                key,
                operation,
                asked,
                timestamp,
                extension,
                db,
            } => {
                let safe = decision(*db)?;
                let started = Instant::now();
                // Re-served: the recorded message, signed again (the same
                // message: not a double sign), with the timestamp inside it
                // (decoded only here). Otherwise the asked bytes, whose
                // timestamp is the request's. A signature is never stored
                // (decision 0012).
                let (message, timestamp) = match &safe {
                    Safe::Reserve { stored, .. } => (
                        stored.sign_bytes.as_slice(),
                        signed_timestamp(*operation, &stored.sign_bytes)?,
                    ),
                    _ => (asked.as_slice(), *timestamp),
                };
                let (signature, extension_signature) =
                    comet_sign_with_extension(key, message, extension.as_deref())?;
                self.metrics.stage("backend", started.elapsed());
                Ok(Signature::CometBft {
                    signature,
                    timestamp,
                    extension_signature,
                })
            }
            Plan::CommitBoost(plan) => self.finish_commit_boost(plan),
            Plan::Raw { key, payload } => {
                let started = Instant::now();
                let out = match (payload, key) {
                    (Raw::Comet(bytes), key) => Signature::Raw {
                        signature: comet_sign(key, bytes)?,
                        recovery_id: None,
                    },
                    (Raw::Digest(d), key) => {
                        let s = key.sign_secp256k1(d).map_err(backend_refusal)?;
                        Signature::Raw {
                            signature: s.rs.to_vec(),
                            recovery_id: Some(s.recovery_id),
                        }
                    }
                    (Raw::Ed25519(m), key) => Signature::Raw {
                        signature: key.sign_ed25519(m).map_err(backend_refusal)?.to_vec(),
                        recovery_id: None,
                    },
                };
                self.metrics.stage("backend", started.elapsed());
                Ok(out)
            }
        }
    }
}

/// The timestamp inside canonical vote or proposal sign bytes.
fn signed_timestamp(operation: Operation, bytes: &[u8]) -> Result<Timestamp, Refusal> {
    use tendermint_proto::v0_38::types::{CanonicalProposal, CanonicalVote};
    let bad = |e: prost::DecodeError| Refusal::InvalidRequest(e.to_string());
    let ts = if operation == Operation::CometProposal {
        CanonicalProposal::decode_length_delimited(bytes)
            .map_err(bad)?
            .timestamp
    } else {
        CanonicalVote::decode_length_delimited(bytes)
            .map_err(bad)?
            .timestamp
    };
    Ok(ts.map_or(Timestamp::GO_ZERO, |t| Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    }))
}
