//! Ethereum consensus: from a Web3Signer-style request to the exact signing
//! root the signer will sign, computed here from the structured message
//! (`hash_tree_root` by the `tree_hash` crate, domains from `fork_info`), plus
//! the facts slashing protection needs. A client-supplied root is only
//! compared, never used.

pub mod blocks;
pub mod commit_boost;
pub mod containers;
pub mod gloas;
pub mod preset;
mod request;

use alloy_primitives::B256;
use tree_hash::TreeHash;

use containers::{ForkData, SigningData, Version};
pub use request::{
    Content, Eth2Error, ForkName, OnePerSlot, RequestKind, Signable, SlashingFacts, decode,
    decode_value, parse_body,
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
    /// Gloas builders' bids and payload envelopes.
    pub const BEACON_BUILDER: DomainType = [0x0b, 0, 0, 0];
    /// Gloas payload attestations.
    pub const PTC_ATTESTER: DomainType = [0x0c, 0, 0, 0];
    /// Gloas proposer preferences.
    pub const PROPOSER_PREFERENCES: DomainType = [0x0d, 0, 0, 0];
    /// Gloas builder API request authorisation (network-independent, like
    /// registrations).
    pub const BUILDER_REQUEST_AUTH: DomainType = [0x0b, 0, 0, 1];
}

/// Which preset a network uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetKind {
    /// `mainnet` (every public network).
    Mainnet,
    /// `minimal` (test networks).
    Minimal,
}

impl PresetKind {
    /// `SLOTS_PER_EPOCH`.
    pub fn slots_per_epoch(self) -> u64 {
        use preset::Preset;
        match self {
            PresetKind::Mainnet => preset::Mainnet::SLOTS_PER_EPOCH,
            PresetKind::Minimal => preset::Minimal::SLOTS_PER_EPOCH,
        }
    }
}

/// What the signer must know of a network that requests do not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// Sizes of SSZ types.
    pub preset: PresetKind,
    /// `GENESIS_FORK_VERSION`, for builder registrations.
    pub genesis_fork_version: [u8; 4],
    /// `GLOAS_FORK_EPOCH`: Gloas messages are refused before it, and
    /// always when it is not set.
    pub gloas_fork_epoch: Option<u64>,
    /// The network's wall clock, where known: slots and epochs far ahead of
    /// it are refused before they can raise a key's watermarks.
    pub clock: Option<Clock>,
}

impl Network {
    /// Ethereum mainnet (no clock: see [`Clock::known`]).
    pub const MAINNET: Network = Network {
        preset: PresetKind::Mainnet,
        genesis_fork_version: [0, 0, 0, 0],
        gloas_fork_epoch: None,
        clock: None,
    };
}

/// Where a network's slots are in time, and how far ahead of the current
/// slot a slashable message may be.
///
/// A block at slot 2^63−1 or an attestation targeting a far epoch is a valid
/// message the slashing rules would accept — and then refuse every real
/// message of that key for ever (the watermarks only rise). No honest client
/// signs for a slot more than a few seconds ahead of the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// `genesis_time`, Unix seconds.
    pub genesis_time: u64,
    /// `SECONDS_PER_SLOT`.
    pub seconds_per_slot: u64,
    /// Slots ahead of the current one still accepted.
    pub max_slots_ahead: u64,
}

/// The public networks, by `GENESIS_FORK_VERSION`: name, genesis time (from
/// each network's published `config.yaml`; all use 12-second slots) and the
/// EVM chain id of its execution layer (Commit-Boost binds commitments to it).
pub const PUBLIC_NETWORKS: [([u8; 4], &str, u64, u64); 4] = [
    ([0x00, 0x00, 0x00, 0x00], "mainnet", 1_606_824_023, 1),
    (
        [0x90, 0x00, 0x00, 0x69],
        "sepolia",
        1_655_733_600,
        11_155_111,
    ),
    ([0x01, 0x01, 0x70, 0x00], "holesky", 1_695_902_400, 17_000),
    ([0x10, 0x00, 0x09, 0x10], "hoodi", 1_742_213_400, 560_048),
];

/// The EVM chain id of a public network, if `fork` is one.
pub fn public_chain_id(fork: [u8; 4]) -> Option<u64> {
    PUBLIC_NETWORKS.iter().find(|n| n.0 == fork).map(|n| n.3)
}

impl Clock {
    /// The genesis time of a public network, if `fork` is one.
    pub fn known(fork: [u8; 4]) -> Option<(&'static str, u64)> {
        PUBLIC_NETWORKS
            .iter()
            .find(|n| n.0 == fork)
            .map(|&(_, name, time, _)| (name, time))
    }

    /// The current slot at Unix time `now` (0 before genesis).
    pub fn slot_at(&self, now: u64) -> u64 {
        now.saturating_sub(self.genesis_time) / self.seconds_per_slot.max(1)
    }

    /// Refuses `slot` if it is more than `max_slots_ahead` past the slot at
    /// `now`; the text says by how much and which setting allows more.
    pub fn check(&self, what: &str, slot: u64, now: u64) -> Result<(), String> {
        let current = self.slot_at(now);
        let limit = current.saturating_add(self.max_slots_ahead);
        if slot <= limit {
            return Ok(());
        }
        Err(format!(
            "{what} is at slot {slot}, {} slots ahead of the network's clock (current slot {current}); \
             at most {} ahead are accepted ([ethereum] max_slots_ahead) — check the client's clock and genesis",
            slot - current,
            self.max_slots_ahead
        ))
    }
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
