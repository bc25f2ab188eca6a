//! The signing pipeline every frontend calls: authorize → compute what is
//! signed → slashing check and durable record → sign → audit → answer.
//!
//! Record before sign: nothing reaches a key until the slashing database has
//! committed the decision. Every refusal is a [`Refusal`] variant, mapped to
//! the wire by each frontend in one place. Calls block (the database and the
//! crypto are synchronous): frontends run them on a worker pool, never on an
//! async runtime's threads.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use prost::Message as _;
use slashing_db::{
    AttestationProposal, BlockProposal, BlsPublicKey, ChainId, CometProposal, ConsensusKey,
    DbError, Epoch, GenesisRoot, NotSafe, Proposal, Safe, SigningRoot, SlashingDb, Slot,
};

use crate::api::privval::{WireProposal, WireVote};
use crate::audit::{AuditLog, Entry};
use crate::backend::soft::SecretKey;
use crate::cometbft::{self, ProtocolVersion, Timestamp};
use crate::eth2::{self, Network, RequestKind, SlashingFacts};
use crate::policy::{self, Operation, Policy, Verdict};

/// Why a request was not signed. Frontends map these to their wire codes.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Signing could be slashable; the stored record that conflicts is the evidence.
    #[error("slashable: {0}")]
    Slashable(NotSafe),
    /// The policy does not allow this client this operation on this key and network.
    #[error("not allowed by policy ({0:?})")]
    NotAllowed(Verdict),
    /// No key with this public key is loaded.
    #[error("unknown key")]
    UnknownKey,
    /// The request is malformed, or its signing root is not the message's.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The slashing database, a key backend or the audit log failed; nothing was signed.
    #[error("backend unavailable: {0}")]
    BackendUnavailable(String),
}

/// A signature, and for CometBFT the timestamp to send back (the stored
/// one when an earlier message at this position is re-served).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// A BLS signature (Ethereum).
    Bls([u8; 96]),
    /// A CometBFT vote or proposal signature.
    CometBft {
        /// Signature over the sign bytes.
        signature: Vec<u8>,
        /// The timestamp that was signed (send it back in the vote/proposal).
        timestamp: Timestamp,
        /// Signature over the vote extension, when one was signed.
        extension_signature: Option<Vec<u8>>,
    },
}

/// Public key bytes → key.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: HashMap<Vec<u8>, SecretKey>,
}

impl Keyring {
    /// Adds a key (a second copy of the same key replaces the first).
    pub fn insert(&mut self, key: SecretKey) {
        self.keys.insert(key.public_key(), key);
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn get(&self, public_key: &[u8]) -> Result<&SecretKey, Refusal> {
        self.keys.get(public_key).ok_or(Refusal::UnknownKey)
    }
}

/// The pipeline's state.
#[derive(Debug)]
pub struct Pipeline {
    policy: RwLock<Policy>,
    keys: Keyring,
    db: SlashingDb,
    audit: Mutex<AuditLog>,
    network: Network,
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
    }
}

fn db_unavailable(e: DbError) -> Refusal {
    Refusal::BackendUnavailable(format!("slashing database: {e}"))
}

impl Pipeline {
    /// Assembles a pipeline.
    pub fn new(
        policy: Policy,
        keys: Keyring,
        db: SlashingDb,
        audit: AuditLog,
        network: Network,
    ) -> Self {
        Self {
            policy: RwLock::new(policy),
            keys,
            db,
            audit: Mutex::new(audit),
            network,
        }
    }

    /// Replaces the policy (after it loaded and linted cleanly).
    pub fn set_policy(&self, policy: Policy) {
        match self.policy.write() {
            Ok(mut p) => *p = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
    }

    fn authorize(
        &self,
        client: &str,
        operation: Operation,
        key: &[u8],
        network: Option<&policy::Network>,
    ) -> Result<(), Refusal> {
        let verdict = match self.policy.read() {
            Ok(p) => p.decide(&policy::Request {
                client,
                operation,
                key,
                network,
            }),
            Err(_) => return Err(Refusal::BackendUnavailable("policy lock poisoned".into())),
        };
        match verdict {
            Verdict::Allowed { .. } => Ok(()),
            other => Err(Refusal::NotAllowed(other)),
        }
    }

    /// Writes the audit record; without it, nothing is answered.
    fn audit(
        &self,
        client: &str,
        key: &[u8],
        request: &str,
        position: Option<u64>,
        outcome: &Result<Signature, Refusal>,
    ) -> Result<(), Refusal> {
        let outcome = match outcome {
            Ok(_) => "signed".to_owned(),
            Err(Refusal::Slashable(n)) => format!("refused:{}", n.reason()),
            Err(Refusal::NotAllowed(_)) => "refused:not_allowed".into(),
            Err(Refusal::UnknownKey) => "refused:unknown_key".into(),
            Err(Refusal::InvalidRequest(_)) => "refused:invalid_request".into(),
            Err(Refusal::BackendUnavailable(_)) => "refused:backend_unavailable".into(),
        };
        let entry = Entry {
            client: client.to_owned(),
            key: hex::encode(key),
            request: request.to_owned(),
            position,
            outcome,
        };
        let mut log = self
            .audit
            .lock()
            .map_err(|_| Refusal::BackendUnavailable("audit log lock poisoned".into()))?;
        log.append(entry)
            .and_then(|_| log.sync())
            .map_err(|e| Refusal::BackendUnavailable(format!("audit log: {e}")))?;
        Ok(())
    }

    /// Signs a Web3Signer eth2 request body for `client` with the BLS key `public_key`.
    pub fn sign_eth2(
        &self,
        client: &str,
        public_key: &[u8],
        body: &[u8],
    ) -> Result<Signature, Refusal> {
        let signable = match eth2::decode(body, &self.network) {
            Ok(s) => s,
            Err(e) => {
                // No trustworthy operation can be read from it: audited as `eth2.request`.
                let refusal = Err(Refusal::InvalidRequest(e.to_string()));
                self.audit(client, public_key, "eth2.request", None, &refusal)?;
                return refusal;
            }
        };
        let operation = operation_of(signable.kind);
        let position = match signable.slashing {
            SlashingFacts::Block { slot } => Some(slot),
            SlashingFacts::Attestation { target, .. } => Some(target),
            SlashingFacts::None => None,
        };
        let outcome = self.sign_eth2_decoded(client, public_key, &signable, operation);
        self.audit(client, public_key, operation.name(), position, &outcome)?;
        outcome
    }

    fn sign_eth2_decoded(
        &self,
        client: &str,
        public_key: &[u8],
        s: &eth2::Signable,
        operation: Operation,
    ) -> Result<Signature, Refusal> {
        let network = s
            .genesis_validators_root
            .map(|r| policy::Network::Ethereum(r.0));
        self.authorize(client, operation, public_key, network.as_ref())?;
        let SecretKey::Bls(key) = self.keys.get(public_key)? else {
            return Err(Refusal::InvalidRequest("the key is not a BLS key".into()));
        };
        let validator = BlsPublicKey::from_slice(public_key).ok_or(Refusal::UnknownKey)?;
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
            (SlashingFacts::None, _) => None,
            (_, None) => {
                return Err(Refusal::InvalidRequest(
                    "slashable message without fork_info".into(),
                ));
            }
        };
        if let Some(p) = proposal {
            // Record before sign.
            self.db
                .check_and_record(p)
                .map_err(db_unavailable)?
                .map_err(Refusal::Slashable)?;
        }
        Ok(Signature::Bls(
            key.sign(s.signing_root.as_slice()).to_bytes(),
        ))
    }

    /// Signs a CometBFT vote (and its extension where the protocol has them).
    pub fn sign_vote(
        &self,
        client: &str,
        version: ProtocolVersion,
        chain_id: &str,
        public_key: &[u8],
        vote: &WireVote,
    ) -> Result<Signature, Refusal> {
        let outcome = (|| {
            let bytes = cometbft::vote_sign_bytes(chain_id, &vote.vote)
                .map_err(|e| Refusal::InvalidRequest(e.to_string()))?;
            let ext = cometbft::vote_extension_sign_bytes(version, chain_id, &vote.vote)
                .map_err(|e| Refusal::InvalidRequest(e.to_string()))?;
            self.sign_comet(
                client,
                Operation::CometVote,
                chain_id,
                public_key,
                bytes,
                ext,
            )
        })();
        self.audit(
            client,
            public_key,
            Operation::CometVote.name(),
            u64::try_from(vote.vote.height).ok(),
            &outcome,
        )?;
        outcome
    }

    /// Signs a CometBFT proposal.
    pub fn sign_proposal(
        &self,
        client: &str,
        chain_id: &str,
        public_key: &[u8],
        proposal: &WireProposal,
    ) -> Result<Signature, Refusal> {
        let outcome = (|| {
            let bytes = cometbft::proposal_sign_bytes(chain_id, &proposal.proposal)
                .map_err(|e| Refusal::InvalidRequest(e.to_string()))?;
            self.sign_comet(
                client,
                Operation::CometProposal,
                chain_id,
                public_key,
                bytes,
                None,
            )
        })();
        self.audit(
            client,
            public_key,
            Operation::CometProposal.name(),
            u64::try_from(proposal.proposal.height).ok(),
            &outcome,
        )?;
        outcome
    }

    fn sign_comet(
        &self,
        client: &str,
        operation: Operation,
        chain_id: &str,
        public_key: &[u8],
        bytes: Vec<u8>,
        ext: Option<Vec<u8>>,
    ) -> Result<Signature, Refusal> {
        let network = policy::Network::CometBft(chain_id.to_owned());
        self.authorize(client, operation, public_key, Some(&network))?;
        let key = self.keys.get(public_key)?;
        let consensus_key = ConsensusKey::new(public_key.to_vec()).ok_or(Refusal::UnknownKey)?;
        let chain = ChainId::new(chain_id)
            .ok_or_else(|| Refusal::InvalidRequest("chain id too long".into()))?;
        let proposal = CometProposal::from_sign_bytes(consensus_key.clone(), chain.clone(), bytes)
            .map_err(|e| Refusal::InvalidRequest(e.to_string()))?;
        let asked = proposal.sign_bytes().to_vec();
        // Record before sign.
        let safe = self
            .db
            .check_and_record(Proposal::CometBft(proposal))
            .map_err(db_unavailable)?
            .map_err(Refusal::Slashable)?;
        let sign = |msg: &[u8]| -> Result<Vec<u8>, Refusal> {
            match key {
                SecretKey::Ed25519(k) => Ok(k.sign(msg).to_vec()),
                SecretKey::Secp256k1(k) => Ok(k.sign_sha256(msg).to_vec()),
                SecretKey::Bls(_) => Err(Refusal::InvalidRequest(
                    "BLS keys do not sign CometBFT messages here".into(),
                )),
            }
        };
        let (signed_bytes, signature) = match safe {
            Safe::Reserve { stored, .. } => {
                let sig = match stored.signature {
                    Some(s) => s,
                    None => sign(&stored.sign_bytes)?,
                };
                (stored.sign_bytes, sig)
            }
            _ => {
                let sig = sign(&asked)?;
                (asked, sig)
            }
        };
        // Not needed for safety (re-signing the recorded bytes is the same message).
        let _ = self.db.record_cometbft_signature(
            consensus_key,
            chain,
            signed_bytes.clone(),
            signature.clone(),
        );
        let timestamp = signed_timestamp(operation, &signed_bytes)?;
        let extension_signature = ext.map(|e| sign(&e)).transpose()?;
        Ok(Signature::CometBft {
            signature,
            timestamp,
            extension_signature,
        })
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
