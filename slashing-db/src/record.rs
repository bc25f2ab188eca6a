//! What is asked ([`Proposal`]), what is stored (`Signed*`, [`CometRecord`]),
//! and what the database answers ([`Safe`], [`Decision`]).

use crate::error::NotSafe;
use crate::rules::sign_bytes::{self, SignBytesError};
use crate::types::{
    BlsPublicKey, ChainId, ConsensusKey, Epoch, GenesisRoot, Hrs, SigningRoot, Slot,
};

/// A stored Ethereum block signature: the slot and, when known, its signing root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBlock {
    /// Slot of the block.
    pub slot: Slot,
    /// Signing root; `None` when unknown (imported without one, or two
    /// conflicting roots were imported for the slot).
    pub signing_root: Option<SigningRoot>,
}

/// A stored Ethereum attestation signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAttestation {
    /// Source checkpoint epoch.
    pub source: Epoch,
    /// Target checkpoint epoch.
    pub target: Epoch,
    /// Signing root; `None` when unknown.
    pub signing_root: Option<SigningRoot>,
}

/// The last CometBFT message signed for a (key, chain): its position and the
/// exact bytes that were (or are about to be) signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CometRecord {
    /// Height, round, step.
    pub hrs: Hrs,
    /// The canonical sign bytes recorded before signing.
    pub sign_bytes: Vec<u8>,
    /// A signature stored by signers before decision 0012 (2026-12); no
    /// longer written, and never served: a re-serve signs `sign_bytes` again,
    /// which is the same message, not a double sign. Kept so older
    /// databases and interchange copies round-trip unchanged.
    pub signature: Option<Vec<u8>>,
}

/// An Ethereum block the caller wants to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockProposal {
    /// The validator.
    pub pubkey: BlsPublicKey,
    /// The network (from the request's `fork_info`).
    pub genesis_root: GenesisRoot,
    /// Block slot.
    pub slot: Slot,
    /// Signing root computed by the signer.
    pub signing_root: SigningRoot,
}

/// An Ethereum attestation the caller wants to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationProposal {
    /// The validator.
    pub pubkey: BlsPublicKey,
    /// The network (from the request's `fork_info`).
    pub genesis_root: GenesisRoot,
    /// Source checkpoint epoch.
    pub source: Epoch,
    /// Target checkpoint epoch.
    pub target: Epoch,
    /// Signing root computed by the signer.
    pub signing_root: SigningRoot,
}

/// A CometBFT vote or proposal the caller wants to sign. Height, round and
/// step are read from the sign bytes themselves, so they cannot disagree with
/// what is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CometProposal {
    key: ConsensusKey,
    chain_id: ChainId,
    hrs: Hrs,
    sign_bytes: Vec<u8>,
}

impl CometProposal {
    /// Parses canonical sign bytes (length-prefixed `CanonicalVote` or
    /// `CanonicalProposal`) and checks that they name `chain_id`.
    pub fn from_sign_bytes(
        key: ConsensusKey,
        chain_id: ChainId,
        sign_bytes: Vec<u8>,
    ) -> Result<Self, SignBytesError> {
        let parsed = sign_bytes::parse(&sign_bytes)?;
        if parsed.chain_id != chain_id.as_str().as_bytes() {
            return Err(SignBytesError::ChainIdMismatch);
        }
        Ok(Self {
            key,
            chain_id,
            hrs: parsed.hrs,
            sign_bytes,
        })
    }

    /// The consensus public key.
    pub fn key(&self) -> &ConsensusKey {
        &self.key
    }

    /// The chain.
    pub fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// Height, round and step, as read from the sign bytes.
    pub fn hrs(&self) -> Hrs {
        self.hrs
    }

    /// The canonical sign bytes.
    pub fn sign_bytes(&self) -> &[u8] {
        &self.sign_bytes
    }
}

/// A kind of Gloas message that no slashing condition covers but that a
/// validator or builder must not equivocate on: one message per key and
/// slot, slots only rising (`docs/eth2.md`, "Gloas messages").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// A payload-timeliness committee member's `PayloadAttestationData`.
    PayloadAttestation,
    /// A builder's `ExecutionPayloadEnvelope`.
    PayloadEnvelope,
}

impl Lane {
    /// The number stored in the database.
    pub fn code(self) -> i64 {
        match self {
            Self::PayloadAttestation => 1,
            Self::PayloadEnvelope => 2,
        }
    }

    /// The lane a stored number names.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::PayloadAttestation),
            2 => Some(Self::PayloadEnvelope),
            _ => None,
        }
    }

    /// What the messages of this lane are called in refusals.
    pub fn name(self) -> &'static str {
        match self {
            Self::PayloadAttestation => "payload attestation",
            Self::PayloadEnvelope => "payload envelope",
        }
    }
}

/// The last message of a lane signed with a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedMessage {
    /// Its slot.
    pub slot: Slot,
    /// Its signing root.
    pub signing_root: SigningRoot,
}

/// A Gloas message of a [`Lane`] the caller wants to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageProposal {
    /// The validator's (or builder's) key.
    pub pubkey: BlsPublicKey,
    /// The network (from the request's `fork_info`).
    pub genesis_root: GenesisRoot,
    /// Which kind of message.
    pub lane: Lane,
    /// Its slot.
    pub slot: Slot,
    /// Signing root computed by the signer.
    pub signing_root: SigningRoot,
}

/// One message to check and, if safe, record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proposal {
    /// Ethereum block.
    Block(BlockProposal),
    /// Ethereum attestation.
    Attestation(AttestationProposal),
    /// CometBFT vote or proposal.
    CometBft(CometProposal),
    /// Gloas message that must not be equivocated.
    Message(MessageProposal),
}

/// A message that may be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Safe {
    /// New: it is now recorded, sign it.
    Valid,
    /// Ethereum: exactly this message (same slot or target, same non-zero
    /// root) was already recorded. Signing it again is not slashable.
    SameData,
    /// CometBFT: this position was already recorded with the same message, or
    /// one that differs only in its timestamp (`timestamp_only`). Sign
    /// `stored.sign_bytes` again and send the stored timestamp back, never
    /// the new one.
    Reserve {
        /// What was recorded at this position.
        stored: CometRecord,
        /// True when only the timestamp differs from what was asked.
        timestamp_only: bool,
    },
}

/// The answer for one proposal: sign (and how), or the refusal with evidence.
pub type Decision = Result<Safe, NotSafe>;
