//! Encoders of canonical sign bytes (CometBFT's `VoteSignBytes`,
//! `ProposalSignBytes`, `VoteExtensionSignBytes`).

use prost::Message;
use tendermint_proto::google::protobuf::Timestamp as ProtoTimestamp;
use tendermint_proto::v0_38::types::{
    CanonicalBlockId, CanonicalPartSetHeader, CanonicalProposal, CanonicalVote,
    CanonicalVoteExtension,
};

use super::{BlockId, CometError, Proposal, ProtocolVersion, Timestamp, Vote, VoteType};

const PROPOSAL_TYPE: i32 = 32;

fn canonical_block_id(b: &BlockId) -> Option<CanonicalBlockId> {
    (!b.is_nil()).then(|| CanonicalBlockId {
        hash: b.hash.clone(),
        part_set_header: Some(CanonicalPartSetHeader {
            total: b.part_set_total,
            hash: b.part_set_hash.clone(),
        }),
    })
}

fn timestamp(t: Timestamp) -> Option<ProtoTimestamp> {
    Some(ProtoTimestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    })
}

fn check_chain(chain_id: &str) -> Result<(), CometError> {
    if chain_id.len() > slashing_db::ChainId::MAX_LEN {
        return Err(CometError::ChainId);
    }
    Ok(())
}

/// The bytes a validator signs for `vote` on `chain_id`.
pub fn vote_sign_bytes(chain_id: &str, vote: &Vote) -> Result<Vec<u8>, CometError> {
    check_chain(chain_id)?;
    if vote.height < 0 || vote.round < 0 {
        return Err(CometError::Negative);
    }
    let msg = CanonicalVote {
        r#type: vote.kind.as_i32(),
        height: vote.height,
        round: i64::from(vote.round),
        block_id: canonical_block_id(&vote.block_id),
        timestamp: timestamp(vote.timestamp),
        chain_id: chain_id.to_owned(),
    };
    Ok(msg.encode_length_delimited_to_vec())
}

/// The bytes a validator signs for `proposal` on `chain_id`.
pub fn proposal_sign_bytes(chain_id: &str, proposal: &Proposal) -> Result<Vec<u8>, CometError> {
    check_chain(chain_id)?;
    if proposal.height < 0 || proposal.round < 0 {
        return Err(CometError::Negative);
    }
    let msg = CanonicalProposal {
        r#type: PROPOSAL_TYPE,
        height: proposal.height,
        round: i64::from(proposal.round),
        pol_round: i64::from(proposal.pol_round),
        block_id: canonical_block_id(&proposal.block_id),
        timestamp: timestamp(proposal.timestamp),
        chain_id: chain_id.to_owned(),
    };
    Ok(msg.encode_length_delimited_to_vec())
}

/// The bytes signed for a vote's extension: `None` when the vote carries none
/// to sign. CometBFT signs extensions of non-nil precommits only, from v0.38.
pub fn vote_extension_sign_bytes(
    version: ProtocolVersion,
    chain_id: &str,
    vote: &Vote,
) -> Result<Option<Vec<u8>>, CometError> {
    check_chain(chain_id)?;
    let signs_extension = vote.kind == VoteType::Precommit && !vote.block_id.is_nil();
    if !version.has_vote_extensions() {
        return if vote.extension.is_empty() {
            Ok(None)
        } else {
            Err(CometError::ExtensionNotAllowed(
                "the chain's protocol has no vote extensions",
            ))
        };
    }
    if !signs_extension {
        return if vote.extension.is_empty() {
            Ok(None)
        } else {
            Err(CometError::ExtensionNotAllowed(
                "only non-nil precommits carry extensions",
            ))
        };
    }
    let msg = CanonicalVoteExtension {
        extension: vote.extension.clone(),
        height: vote.height,
        round: i64::from(vote.round),
        chain_id: chain_id.to_owned(),
    };
    Ok(Some(msg.encode_length_delimited_to_vec()))
}
