//! EIP-3076 rules for the "complete" strategy: full history per validator,
//! with low watermarks at the bottom of that history.
//!
//! "Same data" means the stored root equals the requested one. The requested
//! root is what the signer computed and is about to sign, so equal roots mean
//! the identical signed bytes: a repeat, never a conflict. A stored record
//! without a root (imported without one, or with an all-zero root, which
//! interchange files use for "unknown") never matches. The interchange suite
//! agrees (`multiple_interchanges_multiple_validators_repeat_idem` re-signs a
//! block whose test root is all zeros and expects success).
//!
//! The lower bounds follow the interchange test suite's `should_succeed_complete`
//! (and Lighthouse): a block at or below the lowest recorded slot, an
//! attestation whose source is below the lowest recorded source, or whose target
//! is at or below the lowest recorded target, is refused unless it repeats a
//! recorded message exactly. Pruning raises explicit watermarks so that the
//! bound never falls when old records are deleted.

use crate::error::NotSafe;
use crate::record::{
    AttestationProposal, BlockProposal, MessageProposal, Safe, SignedAttestation, SignedBlock,
    SignedMessage,
};
use crate::types::{Epoch, Slot};

/// What the store knows that matters for a block at one slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockFacts {
    /// The recorded block at the same slot.
    pub same_slot: Option<SignedBlock>,
    /// Highest of the explicit watermark and the lowest recorded slot.
    pub low_watermark: Option<Slot>,
}

/// What the store knows that matters for one attestation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttestationFacts {
    /// The recorded attestation with the same target.
    pub same_target: Option<SignedAttestation>,
    /// A recorded attestation that the new one would surround.
    pub surrounded_by_new: Option<SignedAttestation>,
    /// A recorded attestation that would surround the new one.
    pub surrounding_new: Option<SignedAttestation>,
    /// Lower bound for the source epoch (refuse below).
    pub source_low_watermark: Option<Epoch>,
    /// Lower bound for the target epoch (refuse at or below).
    pub target_low_watermark: Option<Epoch>,
}

/// Decides a block proposal.
pub fn check_block(p: &BlockProposal, facts: &BlockFacts) -> Result<Safe, NotSafe> {
    if let Some(prev) = &facts.same_slot {
        return if prev.signing_root == Some(p.signing_root) {
            Ok(Safe::SameData)
        } else {
            Err(NotSafe::DoubleBlockProposal { prev: prev.clone() })
        };
    }
    match facts.low_watermark {
        Some(low) if p.slot <= low => Err(NotSafe::BlockBelowLowWatermark {
            slot: p.slot,
            low_watermark: low,
        }),
        _ => Ok(Safe::Valid),
    }
}

/// Decides an attestation proposal.
pub fn check_attestation(
    p: &AttestationProposal,
    facts: &AttestationFacts,
) -> Result<Safe, NotSafe> {
    if p.source > p.target {
        return Err(NotSafe::SourceExceedsTarget {
            source_epoch: p.source,
            target: p.target,
        });
    }
    if let Some(prev) = &facts.same_target {
        return if prev.signing_root == Some(p.signing_root) && prev.source == p.source {
            Ok(Safe::SameData)
        } else {
            Err(NotSafe::DoubleVote { prev: prev.clone() })
        };
    }
    if let Some(prev) = &facts.surrounding_new {
        return Err(NotSafe::SurroundedVote { prev: prev.clone() });
    }
    if let Some(prev) = &facts.surrounded_by_new {
        return Err(NotSafe::SurroundingVote { prev: prev.clone() });
    }
    if let Some(low) = facts.source_low_watermark
        && p.source < low
    {
        return Err(NotSafe::SourceBelowLowWatermark {
            source_epoch: p.source,
            low_watermark: low,
        });
    }
    if let Some(low) = facts.target_low_watermark
        && p.target <= low
    {
        return Err(NotSafe::TargetBelowLowWatermark {
            target: p.target,
            low_watermark: low,
        });
    }
    Ok(Safe::Valid)
}

/// Decides a Gloas message of a lane against the last one signed: a later
/// slot is new, the same message again is a repeat, anything else is refused
/// (a different message at the slot is an equivocation; an earlier slot
/// is stale, and could equivocate on a slot whose record was replaced).
pub fn check_message(p: &MessageProposal, last: Option<&SignedMessage>) -> Result<Safe, NotSafe> {
    match last {
        None => Ok(Safe::Valid),
        Some(prev) if p.slot > prev.slot => Ok(Safe::Valid),
        Some(prev) if p.slot == prev.slot && p.signing_root == prev.signing_root => {
            Ok(Safe::SameData)
        }
        Some(prev) if p.slot == prev.slot => Err(NotSafe::Equivocation {
            lane: p.lane,
            prev: prev.clone(),
        }),
        Some(prev) => Err(NotSafe::StaleMessage {
            lane: p.lane,
            slot: p.slot,
            prev: prev.clone(),
        }),
    }
}

/// True when `outer` surrounds `inner` (Casper FFG: `outer.source < inner.source`
/// and `inner.target < outer.target`). Engines use it to define their queries;
/// the in-memory engine and the tests use it directly.
pub fn surrounds(outer: (Epoch, Epoch), inner: (Epoch, Epoch)) -> bool {
    outer.0 < inner.0 && inner.1 < outer.1
}

/// The higher of two optional lower bounds.
pub fn max_bound<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}
