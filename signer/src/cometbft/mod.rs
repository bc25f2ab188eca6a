//! CometBFT: what exactly is signed. Canonical sign bytes are
//! `uvarint(len) ‖ proto(CanonicalVote | CanonicalProposal | CanonicalVoteExtension)`,
//! encoded here with the prost types of `tendermint-proto` (never by hand).
//!
//! The canonical messages are field-for-field identical in v0.34, v0.37, v0.38
//! and v1.x (checked against the protos in `tests/vectors/cometbft/proto`);
//! only `CanonicalVoteExtension` is new in v0.38. So one encoder serves every
//! generation, and vote extensions are refused before v0.38.

pub mod node;
mod sign_bytes;

pub use sign_bytes::{proposal_sign_bytes, vote_extension_sign_bytes, vote_sign_bytes};

/// The protocol generation a chain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// CometBFT v0.34 (and Tendermint v0.34).
    V0_34,
    /// CometBFT v0.37.
    V0_37,
    /// CometBFT v0.38 (vote extensions).
    V0_38,
    /// CometBFT v1.x.
    V1,
}

impl ProtocolVersion {
    /// A `[[cometbft]] protocol` value: `v0.34`, `v0.37`, `v0.38`, `v1` (or `v1.0`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "v0.34" => Self::V0_34,
            "v0.37" => Self::V0_37,
            "v0.38" => Self::V0_38,
            "v1" | "v1.0" => Self::V1,
            _ => return None,
        })
    }
}

/// Read from the configuration as its name (`v0.34`, `v0.37`, `v0.38`, `v1`).
impl<'de> serde::Deserialize<'de> for ProtocolVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown protocol {s:?}: expected v0.34, v0.37, v0.38 or v1"
            ))
        })
    }
}

impl ProtocolVersion {
    /// The configuration's spelling (`v0.34`, `v0.37`, `v0.38`, `v1`).
    pub fn name(self) -> &'static str {
        match self {
            Self::V0_34 => "v0.34",
            Self::V0_37 => "v0.37",
            Self::V0_38 => "v0.38",
            Self::V1 => "v1",
        }
    }

    /// Whether votes may carry extensions.
    pub fn has_vote_extensions(self) -> bool {
        self >= Self::V0_38
    }
}

/// `SignedMsgType` of a vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteType {
    /// 1.
    Prevote,
    /// 2.
    Precommit,
}

impl VoteType {
    fn as_i32(self) -> i32 {
        match self {
            Self::Prevote => 1,
            Self::Precommit => 2,
        }
    }
}

/// A point in time as protobuf carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds since the Unix epoch (negative before it).
    pub seconds: i64,
    /// Nanoseconds, 0..1e9.
    pub nanos: i32,
}

impl Timestamp {
    /// Go's zero `time.Time` (0001-01-01T00:00:00Z), what an unset timestamp encodes as.
    pub const GO_ZERO: Timestamp = Timestamp {
        seconds: -62_135_596_800,
        nanos: 0,
    };
}

/// A block's id. All-empty means "nil" (a vote for no block).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockId {
    /// Block hash (32 bytes, or empty for nil).
    pub hash: Vec<u8>,
    /// Number of parts.
    pub part_set_total: u32,
    /// Part set hash.
    pub part_set_hash: Vec<u8>,
}

impl BlockId {
    /// True for the nil block id.
    pub fn is_nil(&self) -> bool {
        self.hash.is_empty() && self.part_set_total == 0 && self.part_set_hash.is_empty()
    }
}

/// A vote to sign (what the validator node sends, less the fields that are
/// not signed: validator address and index, signatures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    /// Prevote or precommit.
    pub kind: VoteType,
    /// Height.
    pub height: i64,
    /// Round.
    pub round: i32,
    /// The block voted for (nil: none).
    pub block_id: BlockId,
    /// The vote's timestamp.
    pub timestamp: Timestamp,
    /// The vote extension (v0.38+, precommits for a block only).
    pub extension: Vec<u8>,
}

/// A block proposal to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Height.
    pub height: i64,
    /// Round.
    pub round: i32,
    /// Proof-of-lock round, -1 for none.
    pub pol_round: i32,
    /// The proposed block.
    pub block_id: BlockId,
    /// The proposal's timestamp.
    pub timestamp: Timestamp,
}

/// Why a vote or proposal cannot be signed as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CometError {
    /// Height or round below zero.
    #[error("height and round must not be negative")]
    Negative,
    /// An extension on a chain whose protocol has none, or on a vote that may
    /// not carry one (prevotes, nil precommits).
    #[error("vote extension not allowed here ({0})")]
    ExtensionNotAllowed(&'static str),
    /// A chain id longer than CometBFT allows.
    #[error("chain id longer than 50 bytes")]
    ChainId,
}
