//! Consensus presets: the sizes SSZ types take (list limits, bitfield
//! lengths). Only the ones signing needs; values from
//! `consensus-specs/presets/{mainnet,minimal}` (limits the two share since
//! Bellatrix are written where they are used, in `blocks.rs`).

use ssz_types::typenum::{U4, U8, U16, U32, U64, U128, U512, U2048, U8192, U131072, Unsigned};

/// Sizes that differ between networks' presets.
pub trait Preset: Clone + Send + Sync + std::fmt::Debug + PartialEq + 'static {
    /// `MAX_VALIDATORS_PER_COMMITTEE`.
    type MaxValidatorsPerCommittee: Unsigned + Clone + Send + Sync + std::fmt::Debug + PartialEq;
    /// `MAX_COMMITTEES_PER_SLOT`.
    type MaxCommitteesPerSlot: Unsigned + Clone + Send + Sync + std::fmt::Debug + PartialEq;
    /// `MAX_VALIDATORS_PER_COMMITTEE * MAX_COMMITTEES_PER_SLOT` (Electra aggregation bits).
    type MaxValidatorsPerSlot: Unsigned + Clone + Send + Sync + std::fmt::Debug + PartialEq;
    /// `SYNC_COMMITTEE_SIZE`.
    type SyncCommitteeSize: Unsigned + Clone + Send + Sync + std::fmt::Debug + PartialEq;
    /// `SYNC_COMMITTEE_SIZE / SYNC_COMMITTEE_SUBNET_COUNT`.
    type SyncSubcommitteeSize: Unsigned + Clone + Send + Sync + std::fmt::Debug + PartialEq;
    /// `MAX_PROPOSER_SLASHINGS`, `MAX_DEPOSITS`, `MAX_VOLUNTARY_EXITS` (16 in both).
    type Max16: Unsigned + Clone + Send + Sync + std::fmt::Debug + PartialEq;
    /// `MAX_WITHDRAWALS_PER_PAYLOAD` (Capella on).
    type MaxWithdrawalsPerPayload: Unsigned + Clone + Send + Sync + std::fmt::Debug + PartialEq;
    /// `PTC_SIZE` (Gloas: the payload-timeliness committee).
    type PtcSize: Unsigned + Clone + Send + Sync + std::fmt::Debug + PartialEq;
    /// `SLOTS_PER_EPOCH`.
    const SLOTS_PER_EPOCH: u64;
}

/// The mainnet preset (mainnet, holesky, sepolia, hoodi, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mainnet;

impl Preset for Mainnet {
    type MaxValidatorsPerCommittee = U2048;
    type MaxCommitteesPerSlot = U64;
    type MaxValidatorsPerSlot = U131072;
    type SyncCommitteeSize = U512;
    type SyncSubcommitteeSize = U128;
    type Max16 = U16;
    type MaxWithdrawalsPerPayload = U16;
    type PtcSize = U512;
    const SLOTS_PER_EPOCH: u64 = 32;
}

/// The minimal preset (test networks, the Web3Signer API examples).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minimal;

impl Preset for Minimal {
    type MaxValidatorsPerCommittee = U2048;
    type MaxCommitteesPerSlot = U4;
    type MaxValidatorsPerSlot = U8192;
    type SyncCommitteeSize = U32;
    type SyncSubcommitteeSize = U8;
    type Max16 = U16;
    type MaxWithdrawalsPerPayload = U4;
    type PtcSize = U16;
    const SLOTS_PER_EPOCH: u64 = 8;
}
