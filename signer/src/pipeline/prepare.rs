//! Preparing an item: decode what is asked, authorize it under the policy,
//! find its key, and compute what will be signed and what the slashing
//! database must decide — everything before the database is asked.

use std::time::Instant;

use slashing_db::{
    AttestationProposal, BlockProposal, BlsPublicKey, ChainId, CometProposal, ConsensusKey, Epoch,
    GenesisRoot, Lane, MessageProposal, Proposal, SigningRoot, Slot,
};

use crate::backend::{Key, Scheme};
use crate::cometbft;
use crate::crypto::bls::BlsSecretKey;
use crate::eth2::{self, OnePerSlot, RequestKind, SlashingFacts};
use crate::policy::{self, Operation, Policy, Verdict};

use super::{Keyring, Message, OutOfScope, Pipeline, Refusal, Request};

/// The audit name of a message before it is decoded.
fn request_name(m: &Message) -> &'static str {
    match m {
        Message::Eth2(_) => "eth2.request",
        Message::CometVote { .. } => Operation::CometVote.name(),
        Message::CometProposal { .. } => Operation::CometProposal.name(),
        Message::CometRaw(_) => Operation::CometRaw.name(),
        Message::RawSecp256k1(_) => Operation::RawSecp256k1.name(),
        Message::RawEd25519(_) => Operation::RawEd25519.name(),
        Message::CommitBoost(a) => a.what.operation().name(),
        Message::Invalid { request, .. } => request,
    }
}

fn operation_of(kind: RequestKind) -> Operation {
    match kind {
        RequestKind::Block | RequestKind::BlockV2(_) => Operation::Eth2Block,
        RequestKind::Attestation => Operation::Eth2Attestation,
        RequestKind::AggregationSlot => Operation::Eth2AggregationSlot,
        RequestKind::AggregateAndProof | RequestKind::AggregateAndProofV2(_) => {
            Operation::Eth2AggregateAndProof
        }
        RequestKind::Deposit => Operation::Eth2Deposit,
        RequestKind::RandaoReveal => Operation::Eth2RandaoReveal,
        RequestKind::VoluntaryExit => Operation::Eth2VoluntaryExit,
        RequestKind::SyncCommitteeMessage => Operation::Eth2SyncCommitteeMessage,
        RequestKind::SyncCommitteeSelectionProof => Operation::Eth2SyncCommitteeSelectionProof,
        RequestKind::SyncCommitteeContributionAndProof => Operation::Eth2SyncCommitteeContribution,
        RequestKind::ValidatorRegistration => Operation::Eth2ValidatorRegistration,
        RequestKind::PayloadAttestationMessage => Operation::Eth2PayloadAttestation,
        RequestKind::ProposerPreferences => Operation::Eth2ProposerPreferences,
        RequestKind::BuilderRequestAuth => Operation::Eth2BuilderRequestAuth,
        RequestKind::ExecutionPayloadBid => Operation::Eth2ExecutionPayloadBid,
        RequestKind::ExecutionPayloadEnvelope => Operation::Eth2ExecutionPayloadEnvelope,
    }
}

/// How a prepared item is signed once the database has decided.
pub(super) enum Plan<'a> {
    Bls {
        key: &'a BlsSecretKey,
        root: [u8; 32],
        /// Index of its proposal in the batch's database call, if slashable.
        db: Option<usize>,
    },
    Comet {
        key: &'a Key,
        operation: Operation,
        asked: Vec<u8>,
        /// The timestamp inside `asked` (sent back unless a stored message
        /// is re-served).
        timestamp: cometbft::Timestamp,
        extension: Option<Vec<u8>>,
        db: usize,
    },
    Raw {
        key: &'a Key,
        payload: Raw,
    },
    CommitBoost(super::commit_boost::CbPlan<'a>),
}

pub(super) enum Raw {
    /// CometBFT `SignBytes`: signed like consensus messages.
    Comet(Vec<u8>),
    Digest([u8; 32]),
    Ed25519(Vec<u8>),
}

/// An item after decoding and authorization, before the database.
pub(super) struct Prepared<'a> {
    /// The audit record's request name.
    pub(super) request: &'static str,
    /// Slot, target epoch or height.
    pub(super) position: Option<u64>,
    pub(super) plan: Result<Plan<'a>, Refusal>,
}

/// A request from a connection bound to one chain ([`super::Scope`]) stays
/// on that chain and at or below its `max_height`. (`cometbft.raw` names no
/// chain: the connection's is implied.)
fn check_scope(r: &Request) -> Result<(), OutOfScope> {
    let Some(scope) = &r.scope else {
        return Ok(());
    };
    let (asked, height) = match &r.message {
        Message::CometVote { chain_id, vote, .. } => (chain_id, vote.height),
        Message::CometProposal { chain_id, proposal } => (chain_id, proposal.height),
        _ => return Ok(()),
    };
    if asked.as_str() != scope.chain_id {
        return Err(OutOfScope::OtherChain {
            served: scope.chain_id.clone(),
            asked: asked.to_string(),
        });
    }
    match scope.max_height {
        Some(max_height) if height > max_height => {
            Err(OutOfScope::AboveMaxHeight { height, max_height })
        }
        _ => Ok(()),
    }
}

/// The height a CometBFT vote or proposal is for.
fn comet_height(m: &Message) -> Option<i64> {
    match m {
        Message::CometVote { vote, .. } => Some(vote.height),
        Message::CometProposal { proposal, .. } => Some(proposal.height),
        _ => None,
    }
}

/// True when a key of `scheme` can perform `op`.
pub(super) fn applies_to(op: Operation, scheme: Scheme) -> bool {
    match op {
        Operation::CometVote | Operation::CometProposal | Operation::CometRaw => {
            matches!(scheme, Scheme::Ed25519 | Scheme::Secp256k1)
        }
        Operation::RawSecp256k1 => scheme == Scheme::Secp256k1,
        Operation::RawEd25519 => scheme == Scheme::Ed25519,
        Operation::Eth2Block
        | Operation::Eth2Attestation
        | Operation::Eth2AggregationSlot
        | Operation::Eth2AggregateAndProof
        | Operation::Eth2RandaoReveal
        | Operation::Eth2SyncCommitteeMessage
        | Operation::Eth2SyncCommitteeSelectionProof
        | Operation::Eth2SyncCommitteeContribution
        | Operation::Eth2ValidatorRegistration
        | Operation::Eth2PayloadAttestation
        | Operation::Eth2ProposerPreferences
        | Operation::Eth2BuilderRequestAuth
        | Operation::Eth2ExecutionPayloadBid
        | Operation::Eth2ExecutionPayloadEnvelope
        | Operation::Eth2VoluntaryExit
        | Operation::Eth2Deposit
        | Operation::CommitBoostSign
        | Operation::CommitBoostProxy
        | Operation::CommitBoostProxySign => scheme == Scheme::Bls,
    }
}

impl Pipeline {
    pub(super) fn authorize(
        &self,
        policy: &Policy,
        client: &str,
        operation: Operation,
        key: &[u8],
        network: Option<&policy::Network>,
    ) -> Result<(), Refusal> {
        let started = Instant::now();
        let verdict = policy.decide(&policy::Request {
            client,
            operation,
            key,
            network,
        });
        self.metrics.stage("policy", started.elapsed());
        match verdict {
            // Out of service is said only to a client allowed the key.
            Verdict::Allowed { .. } => self.in_service(key),
            other => {
                // In full for the operator; the client learns only `other`,
                // which speaks of its own grants.
                tracing::info!(
                    client,
                    operation = operation.name(),
                    key = %hex::encode(key),
                    network = network.map_or("-", |n| policy.network_name(n).unwrap_or("(none in the policy)")),
                    "request not allowed: {other}"
                );
                Err(Refusal::NotAllowed(other))
            }
        }
    }

    pub(super) fn prepare<'a>(
        &self,
        keys: &'a Keyring,
        policy: &Policy,
        r: &Request,
        proposals: &mut Vec<Proposal>,
    ) -> Prepared<'a> {
        if let Err(refusal) = check_scope(r) {
            return Prepared {
                request: request_name(&r.message),
                position: comet_height(&r.message).and_then(|h| u64::try_from(h).ok()),
                plan: Err(Refusal::OutOfScope(refusal)),
            };
        }
        if let Err(refusal) = self.rate.admit(policy, r.client.as_str()) {
            return Prepared {
                request: request_name(&r.message),
                position: None,
                plan: Err(refusal),
            };
        }
        let started = Instant::now();
        match &r.message {
            Message::Eth2(body) => {
                let decoded = eth2::decode_value(body, &self.network);
                self.metrics.stage("decode", started.elapsed());
                match decoded {
                    // No trustworthy operation can be read from it: audited as `eth2.request`.
                    Err(e) => Prepared {
                        request: "eth2.request",
                        position: None,
                        plan: Err(Refusal::InvalidRequest(e.to_string())),
                    },
                    Ok(s) => {
                        let operation = operation_of(s.kind);
                        let position = match s.slashing {
                            SlashingFacts::Block { slot }
                            | SlashingFacts::OnePerSlot { slot, .. } => Some(slot),
                            SlashingFacts::Attestation { target, .. } => Some(target),
                            SlashingFacts::None => None,
                        };
                        Prepared {
                            request: operation.name(),
                            position,
                            plan: self.prepare_eth2(keys, policy, r, &s, operation, proposals),
                        }
                    }
                }
            }
            Message::CometVote {
                version,
                chain_id,
                vote,
                sign_extension,
            } => {
                let sign_bytes = cometbft::vote_sign_bytes(chain_id.as_str(), vote).and_then(|b| {
                    cometbft::vote_extension_sign_bytes(*version, chain_id.as_str(), vote)
                        .map(|e| (b, e.filter(|_| *sign_extension)))
                });
                self.metrics.stage("decode", started.elapsed());
                Prepared {
                    request: Operation::CometVote.name(),
                    position: u64::try_from(vote.height).ok(),
                    plan: sign_bytes
                        .map_err(|e| Refusal::InvalidRequest(e.to_string()))
                        .and_then(|(bytes, ext)| {
                            self.prepare_comet(
                                keys,
                                policy,
                                r,
                                Operation::CometVote,
                                chain_id,
                                (bytes, vote.timestamp),
                                ext,
                                proposals,
                            )
                        }),
                }
            }
            Message::CometProposal { chain_id, proposal } => {
                let sign_bytes = cometbft::proposal_sign_bytes(chain_id.as_str(), proposal);
                self.metrics.stage("decode", started.elapsed());
                Prepared {
                    request: Operation::CometProposal.name(),
                    position: u64::try_from(proposal.height).ok(),
                    plan: sign_bytes
                        .map_err(|e| Refusal::InvalidRequest(e.to_string()))
                        .and_then(|bytes| {
                            self.prepare_comet(
                                keys,
                                policy,
                                r,
                                Operation::CometProposal,
                                chain_id,
                                (bytes, proposal.timestamp),
                                None,
                                proposals,
                            )
                        }),
                }
            }
            Message::CometRaw(value) => Prepared {
                request: Operation::CometRaw.name(),
                position: None,
                plan: self
                    .authorize(
                        policy,
                        r.client.as_str(),
                        Operation::CometRaw,
                        &r.public_key,
                        None,
                    )
                    .and_then(|()| keys.get(&r.public_key))
                    .and_then(|key| match key.scheme() {
                        Scheme::Bls => Err(Refusal::InvalidRequest(
                            "cometbft.raw needs an Ed25519 or secp256k1 key".into(),
                        )),
                        _ => Ok(Plan::Raw {
                            key,
                            payload: Raw::Comet(value.clone()),
                        }),
                    }),
            },
            Message::RawSecp256k1(digest) => Prepared {
                request: Operation::RawSecp256k1.name(),
                position: None,
                plan: <[u8; 32]>::try_from(digest.as_slice())
                    .map_err(|_| Refusal::InvalidRequest("a digest is 32 bytes".into()))
                    .and_then(|digest| {
                        self.authorize(
                            policy,
                            r.client.as_str(),
                            Operation::RawSecp256k1,
                            &r.public_key,
                            None,
                        )?;
                        match keys.get(&r.public_key)? {
                            key if key.scheme() == Scheme::Secp256k1 => Ok(Plan::Raw {
                                key,
                                payload: Raw::Digest(digest),
                            }),
                            _ => Err(Refusal::InvalidRequest("not a secp256k1 key".into())),
                        }
                    }),
            },
            Message::CommitBoost(ask) => Prepared {
                request: ask.what.operation().name(),
                position: None,
                plan: self
                    .plan_commit_boost(keys, policy, r, ask)
                    .map(Plan::CommitBoost),
            },
            Message::Invalid { request, reason } => Prepared {
                request,
                position: None,
                plan: Err(Refusal::InvalidRequest(reason.clone())),
            },
            Message::RawEd25519(message) => Prepared {
                request: Operation::RawEd25519.name(),
                position: None,
                plan: self
                    .authorize(
                        policy,
                        r.client.as_str(),
                        Operation::RawEd25519,
                        &r.public_key,
                        None,
                    )
                    .and_then(|()| match keys.get(&r.public_key)? {
                        key if key.scheme() == Scheme::Ed25519 => Ok(Plan::Raw {
                            key,
                            payload: Raw::Ed25519(message.clone()),
                        }),
                        _ => Err(Refusal::InvalidRequest("not an Ed25519 key".into())),
                    }),
            },
        }
    }

    fn prepare_eth2<'a>(
        &self,
        keys: &'a Keyring,
        policy: &Policy,
        r: &Request,
        s: &eth2::Signable,
        operation: Operation,
        proposals: &mut Vec<Proposal>,
    ) -> Result<Plan<'a>, Refusal> {
        let network = s
            .genesis_validators_root
            .map(|r| policy::Network::Ethereum(r.0));
        self.authorize(
            policy,
            r.client.as_str(),
            operation,
            &r.public_key,
            network.as_ref(),
        )?;
        // What the block or registration commits to, read from the message
        // whose root is signed.
        policy
            .check_content(
                &policy::Request {
                    client: r.client.as_str(),
                    operation,
                    key: &r.public_key,
                    network: network.as_ref(),
                },
                &s.content,
            )
            .map_err(|v| {
                tracing::info!(
                    client = r.client.as_str(),
                    operation = operation.name(),
                    key = %hex::encode(&r.public_key),
                    "request outside its grant's block-content constraints: {v}"
                );
                Refusal::PolicyViolation(v)
            })?;
        let Some(key) = keys.get(&r.public_key)?.bls() else {
            return Err(Refusal::InvalidRequest("the key is not a BLS key".into()));
        };
        let validator = BlsPublicKey::from_slice(&r.public_key).ok_or(Refusal::UnknownKey)?;
        // Slashing history stores slots and epochs as signed 64-bit numbers.
        // Beyond that a request is the client's error (400), refused here:
        // the database would fail the whole batch it shares with others.
        let storable = |what: &str, v: u64| {
            i64::try_from(v).map(|_| ()).map_err(|_| {
                Refusal::InvalidRequest(format!("{what} {v} is out of the storable range"))
            })
        };
        match s.slashing {
            SlashingFacts::Block { slot } | SlashingFacts::OnePerSlot { slot, .. } => {
                storable("slot", slot)?
            }
            SlashingFacts::Attestation { source, target } => {
                storable("source epoch", source)?;
                storable("target epoch", target)?;
            }
            SlashingFacts::None => {}
        }
        if let Some(clock) = self.network.clock {
            let now = unix_now();
            let per_epoch = self.network.preset.slots_per_epoch();
            let ahead = |what: &str, slot: u64| {
                clock
                    .check(what, slot, now)
                    .map_err(Refusal::InvalidRequest)
            };
            match s.slashing {
                SlashingFacts::Block { slot } => ahead("the block", slot)?,
                SlashingFacts::OnePerSlot { slot, .. } => ahead("the message", slot)?,
                SlashingFacts::Attestation { source, target } => {
                    ahead("the target epoch", target.saturating_mul(per_epoch))?;
                    ahead("the source epoch", source.saturating_mul(per_epoch))?;
                }
                SlashingFacts::None => {}
            }
        }
        let proposal = match (s.slashing, s.genesis_validators_root) {
            (SlashingFacts::Block { slot }, Some(gvr)) => Some(Proposal::Block(BlockProposal {
                pubkey: validator,
                genesis_root: GenesisRoot(gvr.0),
                slot: Slot(slot),
                signing_root: SigningRoot(s.signing_root.0),
            })),
            (SlashingFacts::Attestation { source, target }, Some(gvr)) => {
                Some(Proposal::Attestation(AttestationProposal {
                    pubkey: validator,
                    genesis_root: GenesisRoot(gvr.0),
                    source: Epoch(source),
                    target: Epoch(target),
                    signing_root: SigningRoot(s.signing_root.0),
                }))
            }
            (SlashingFacts::OnePerSlot { kind, slot }, Some(gvr)) => {
                Some(Proposal::Message(MessageProposal {
                    pubkey: validator,
                    genesis_root: GenesisRoot(gvr.0),
                    lane: match kind {
                        OnePerSlot::PayloadAttestation => Lane::PayloadAttestation,
                        OnePerSlot::PayloadEnvelope => Lane::PayloadEnvelope,
                    },
                    slot: Slot(slot),
                    signing_root: SigningRoot(s.signing_root.0),
                }))
            }
            (SlashingFacts::None, _) => None,
            (_, None) => {
                return Err(Refusal::InvalidRequest(
                    "slashable message without fork_info".into(),
                ));
            }
        };
        let db = proposal.map(|p| {
            proposals.push(p);
            proposals.len() - 1
        });
        Ok(Plan::Bls {
            key,
            root: s.signing_root.0,
            db,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn prepare_comet<'a>(
        &self,
        keys: &'a Keyring,
        policy: &Policy,
        r: &Request,
        operation: Operation,
        chain: &ChainId,
        (bytes, timestamp): (Vec<u8>, cometbft::Timestamp),
        extension: Option<Vec<u8>>,
        proposals: &mut Vec<Proposal>,
    ) -> Result<Plan<'a>, Refusal> {
        let network = policy::Network::CometBft(chain.to_string());
        self.authorize(
            policy,
            r.client.as_str(),
            operation,
            &r.public_key,
            Some(&network),
        )?;
        let key = keys.get(&r.public_key)?;
        if key.scheme() == Scheme::Bls {
            return Err(Refusal::InvalidRequest(
                "BLS keys do not sign CometBFT messages here".into(),
            ));
        }
        let consensus_key = ConsensusKey::new(r.public_key.to_vec()).ok_or(Refusal::UnknownKey)?;
        let proposal = CometProposal::from_sign_bytes(consensus_key, chain.clone(), bytes)
            .map_err(|e| Refusal::InvalidRequest(e.to_string()))?;
        let asked = proposal.sign_bytes().to_vec();
        proposals.push(Proposal::CometBft(proposal));
        Ok(Plan::Comet {
            key,
            operation,
            asked,
            timestamp,
            extension,
            db: proposals.len() - 1,
        })
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
