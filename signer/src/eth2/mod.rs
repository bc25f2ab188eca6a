//! Ethereum consensus: from a Web3Signer-style request to the exact signing
//! root the signer will sign, computed here from the structured message
//! (`hash_tree_root` by the `tree_hash` crate, domains from `fork_info`), plus
//! the facts slashing protection needs. A client-supplied root is only
//! compared, never used.

pub mod containers;
pub mod preset;
mod request;

use alloy_primitives::B256;
use tree_hash::TreeHash;

use containers::{ForkData, SigningData, Version};
pub use request::{
    Eth2Error, ForkName, RequestKind, Signable, SlashingFacts, decode, decode_value, parse_body,
};

/// Domain types (`DOMAIN_*` in the consensus specs).
pub mod domain {
    /// Type of a domain.
    pub type DomainType = [u8; 4];
    /// Blocks.
    pub const BEACON_PROPOSER: DomainType = [0, 0, 0, 0];
    /// Attestations.
    pub const BEACON_ATTESTER: DomainType = [1, 0, 0, 0];
    /// RANDAO reveals.
    pub const RANDAO: DomainType = [2, 0, 0, 0];
    /// Deposits (network-independent: no genesis validators root).
    pub const DEPOSIT: DomainType = [3, 0, 0, 0];
    /// Voluntary exits.
    pub const VOLUNTARY_EXIT: DomainType = [4, 0, 0, 0];
    /// Aggregator selection proofs.
    pub const SELECTION_PROOF: DomainType = [5, 0, 0, 0];
    /// Aggregate-and-proofs.
    pub const AGGREGATE_AND_PROOF: DomainType = [6, 0, 0, 0];
    /// Sync committee messages.
    pub const SYNC_COMMITTEE: DomainType = [7, 0, 0, 0];
    /// Sync committee aggregator selection.
    pub const SYNC_COMMITTEE_SELECTION_PROOF: DomainType = [8, 0, 0, 0];
    /// Sync committee contributions.
    pub const CONTRIBUTION_AND_PROOF: DomainType = [9, 0, 0, 0];
    /// Builder API validator registrations (`DOMAIN_APPLICATION_BUILDER`).
    pub const APPLICATION_BUILDER: DomainType = [0, 0, 0, 1];
}

/// Which preset a network uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetKind {
    /// `mainnet` (every public network).
    Mainnet,
    /// `minimal` (test networks).
    Minimal,
}

/// What the signer must know of a network that requests do not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// Sizes of SSZ types.
    pub preset: PresetKind,
    /// `GENESIS_FORK_VERSION`, for builder registrations.
    pub genesis_fork_version: [u8; 4],
}

impl Network {
    /// Ethereum mainnet.
    pub const MAINNET: Network = Network {
        preset: PresetKind::Mainnet,
        genesis_fork_version: [0, 0, 0, 0],
    };
}

/// `compute_domain(domain_type, fork_version, genesis_validators_root)`.
pub fn compute_domain(
    domain_type: domain::DomainType,
    fork_version: Version,
    genesis_validators_root: B256,
) -> B256 {
    let fork_data_root = ForkData {
        current_version: fork_version,
        genesis_validators_root,
    }
    .tree_hash_root();
    let mut d = [0u8; 32];
    d[..4].copy_from_slice(&domain_type);
    d[4..].copy_from_slice(&fork_data_root.0[..28]);
    B256::from(d)
}

/// `compute_signing_root(object, domain)`.
pub fn compute_signing_root<T: TreeHash>(object: &T, domain: B256) -> B256 {
    SigningData {
        object_root: object.tree_hash_root(),
        domain,
    }
    .tree_hash_root()
}
