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

/// The last CometBFT message signed for a (key, chain): its position, the exact
/// bytes that were (or are about to be) signed, and the signature once known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CometRecord {
    /// Height, round, step.
    pub hrs: Hrs,
    /// The canonical sign bytes recorded before signing.
    pub sign_bytes: Vec<u8>,
    /// The signature, stored after signing; `None` if the signer stopped in
    /// between (re-signing `sign_bytes` is then safe: it is the same message).
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

/// One message to check and, if safe, record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proposal {
    /// Ethereum block.
    Block(BlockProposal),
    /// Ethereum attestation.
    Attestation(AttestationProposal),
    /// CometBFT vote or proposal.
    CometBft(CometProposal),
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
    /// `stored.sign_bytes` (or return `stored.signature` if present) and send
    /// the stored timestamp back, never the new one.
    Reserve {
        /// What was recorded at this position.
        stored: CometRecord,
        /// True when only the timestamp differs from what was asked.
        timestamp_only: bool,
    },
}

/// The answer for one proposal: sign (and how), or the refusal with evidence.
pub type Decision = Result<Safe, NotSafe>;
