//! The operations a policy grants, by name.

use std::fmt;

/// One kind of signing request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// `eth2.block` (BLOCK, BLOCK_V2).
    Eth2Block,
    /// `eth2.attestation`.
    Eth2Attestation,
    /// `eth2.aggregation_slot`.
    Eth2AggregationSlot,
    /// `eth2.aggregate_and_proof`.
    Eth2AggregateAndProof,
    /// `eth2.randao_reveal`.
    Eth2RandaoReveal,
    /// `eth2.sync_committee_message`.
    Eth2SyncCommitteeMessage,
    /// `eth2.sync_committee_selection_proof`.
    Eth2SyncCommitteeSelectionProof,
    /// `eth2.sync_committee_contribution`.
    Eth2SyncCommitteeContribution,
    /// `eth2.validator_registration` (builder API).
    Eth2ValidatorRegistration,
    /// `eth2.payload_attestation` (Gloas PAYLOAD_ATTESTATION_MESSAGE).
    Eth2PayloadAttestation,
    /// `eth2.proposer_preferences` (Gloas).
    Eth2ProposerPreferences,
    /// `eth2.builder_request_auth` (Gloas builder API).
    Eth2BuilderRequestAuth,
    /// `eth2.execution_payload_bid` (Gloas, builder keys).
    Eth2ExecutionPayloadBid,
    /// `eth2.execution_payload_envelope` (Gloas, builder keys).
    Eth2ExecutionPayloadEnvelope,
    /// `eth2.voluntary_exit`: irreversible.
    Eth2VoluntaryExit,
    /// `eth2.deposit`.
    Eth2Deposit,
    /// `commit_boost.sign`: a Commit-Boost module's commitment, signed with
    /// the consensus key itself.
    CommitBoostSign,
    /// `commit_boost.proxy`: make a proxy key for the consensus key and sign
    /// its delegation.
    CommitBoostProxy,
    /// `commit_boost.proxy_sign`: a commitment signed by a proxy key the
    /// consensus key delegated to (decided on the consensus key).
    CommitBoostProxySign,
    /// `cometbft.vote`.
    CometVote,
    /// `cometbft.proposal`.
    CometProposal,
    /// `cometbft.raw` (v1 SignBytes).
    CometRaw,
    /// `raw.secp256k1`: arbitrary digests.
    RawSecp256k1,
    /// `raw.ed25519`: arbitrary bytes.
    RawEd25519,
}

use Operation::*;

/// Every operation, in display order.
pub const ALL: [Operation; 24] = [
    Eth2Block,
    Eth2Attestation,
    Eth2AggregationSlot,
    Eth2AggregateAndProof,
    Eth2RandaoReveal,
    Eth2SyncCommitteeMessage,
    Eth2SyncCommitteeSelectionProof,
    Eth2SyncCommitteeContribution,
    Eth2ValidatorRegistration,
    Eth2PayloadAttestation,
    Eth2ProposerPreferences,
    Eth2BuilderRequestAuth,
    Eth2ExecutionPayloadBid,
    Eth2ExecutionPayloadEnvelope,
    Eth2VoluntaryExit,
    Eth2Deposit,
    CommitBoostSign,
    CommitBoostProxy,
    CommitBoostProxySign,
    CometVote,
    CometProposal,
    CometRaw,
    RawSecp256k1,
    RawEd25519,
];

/// `eth2.duties`: what a validator client needs day to day (not exits, not
/// deposits). From Gloas on that includes payload attestations and proposer
/// preferences; builder request authorisations (opaque data) and builders'
/// own messages are granted by name (`eth2.builder` for the latter two).
pub const ETH2_DUTIES: [Operation; 11] = [
    Eth2Block,
    Eth2Attestation,
    Eth2AggregationSlot,
    Eth2AggregateAndProof,
    Eth2RandaoReveal,
    Eth2SyncCommitteeMessage,
    Eth2SyncCommitteeSelectionProof,
    Eth2SyncCommitteeContribution,
    Eth2ValidatorRegistration,
    Eth2PayloadAttestation,
    Eth2ProposerPreferences,
];

/// `eth2.builder`: what a Gloas builder signs with its builder key.
pub const ETH2_BUILDER: [Operation; 2] = [Eth2ExecutionPayloadBid, Eth2ExecutionPayloadEnvelope];

/// `commit_boost`: everything a Commit-Boost module may ask of a consensus
/// key (docs/commit-boost.md).
pub const COMMIT_BOOST: [Operation; 3] = [CommitBoostSign, CommitBoostProxy, CommitBoostProxySign];

/// What kind of network an operation's requests name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkKind {
    /// An Ethereum network (genesis validators root).
    Ethereum,
    /// A CometBFT chain (chain id).
    CometBft,
    /// None: the request names no network (deposits, registrations, raw bytes).
    None,
}

impl Operation {
    /// The policy-file name.
    pub fn name(self) -> &'static str {
        match self {
            Eth2Block => "eth2.block",
            Eth2Attestation => "eth2.attestation",
            Eth2AggregationSlot => "eth2.aggregation_slot",
            Eth2AggregateAndProof => "eth2.aggregate_and_proof",
            Eth2RandaoReveal => "eth2.randao_reveal",
            Eth2SyncCommitteeMessage => "eth2.sync_committee_message",
            Eth2SyncCommitteeSelectionProof => "eth2.sync_committee_selection_proof",
            Eth2SyncCommitteeContribution => "eth2.sync_committee_contribution",
            Eth2ValidatorRegistration => "eth2.validator_registration",
            Eth2PayloadAttestation => "eth2.payload_attestation",
            Eth2ProposerPreferences => "eth2.proposer_preferences",
            Eth2BuilderRequestAuth => "eth2.builder_request_auth",
            Eth2ExecutionPayloadBid => "eth2.execution_payload_bid",
            Eth2ExecutionPayloadEnvelope => "eth2.execution_payload_envelope",
            Eth2VoluntaryExit => "eth2.voluntary_exit",
            Eth2Deposit => "eth2.deposit",
            CommitBoostSign => "commit_boost.sign",
            CommitBoostProxy => "commit_boost.proxy",
            CommitBoostProxySign => "commit_boost.proxy_sign",
            CometVote => "cometbft.vote",
            CometProposal => "cometbft.proposal",
            CometRaw => "cometbft.raw",
            RawSecp256k1 => "raw.secp256k1",
            RawEd25519 => "raw.ed25519",
        }
    }

    /// The names a policy may use: one operation, or a group (`eth2.duties`,
    /// `cometbft.consensus`).
    pub fn parse(name: &str) -> Option<Vec<Operation>> {
        match name {
            "eth2.duties" => Some(ETH2_DUTIES.to_vec()),
            "eth2.builder" => Some(ETH2_BUILDER.to_vec()),
            "commit_boost" => Some(COMMIT_BOOST.to_vec()),
            "cometbft.consensus" => Some(vec![CometVote, CometProposal]),
            _ => ALL.iter().find(|o| o.name() == name).map(|o| vec![*o]),
        }
    }

    /// The network its requests name.
    pub fn network_kind(self) -> NetworkKind {
        match self {
            Eth2Deposit
            | Eth2ValidatorRegistration
            | Eth2BuilderRequestAuth
            | CommitBoostSign
            | CommitBoostProxy
            | CommitBoostProxySign
            | RawSecp256k1
            | RawEd25519
            | CometRaw => NetworkKind::None,
            CometVote | CometProposal => NetworkKind::CometBft,
            _ => NetworkKind::Ethereum,
        }
    }

    /// Why a reviewer should look twice at a grant of this, if they should.
    pub fn caution(self) -> Option<&'static str> {
        match self {
            Eth2VoluntaryExit => Some("voluntary exits are irreversible"),
            Eth2Deposit => Some("deposits move funds"),
            Eth2BuilderRequestAuth => {
                Some("authorises requests to builders; the data it signs is opaque to the signer")
            }
            CommitBoostSign | CommitBoostProxySign => Some(
                "signs a module's commitments: their data is opaque to the signer, and the module's protocol may penalise a broken one",
            ),
            CommitBoostProxy => Some(
                "lets a module create keys that sign commitments for this validator until the proxy is removed",
            ),
            RawSecp256k1 | RawEd25519 | CometRaw => {
                Some("signs arbitrary bytes: no slashing protection, no structure check")
            }
            _ => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
