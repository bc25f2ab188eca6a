//! CometBFT privval protocol: the messages a validator node and a remote
//! signer exchange. This module is the wire codec (bare `Message`s, without
//! the uvarint framing); the connector that dials nodes comes with its issue.
//!
//! One set of prost types covers the generations: v0.34, v0.37 and v0.38
//! share the `tendermint.privval` envelope and field numbers, and a v0.38
//! `Vote` with empty extension fields encodes exactly like a v0.34 one
//! (proto3 omits empty bytes). v1 (`cometbft.privval.v1`) keeps the numbers
//! but changes `PubKeyResponse` (raw key bytes plus a type name), adds
//! `skip_extension_signing` and `SignBytes`; its envelope is declared in
//! [`v1`] with prost derives (no crate ships it yet).

mod codec;
pub mod connector;
mod v1;

pub use codec::{decode_request, decode_response, encode_request, encode_response};

use crate::cometbft::{Proposal, Vote};

/// A vote as the node sends it: the signed fields plus who signs and the
/// signatures (empty in requests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireVote {
    /// What is signed.
    pub vote: Vote,
    /// The validator's address.
    pub validator_address: Vec<u8>,
    /// The validator's index in the set.
    pub validator_index: i32,
    /// Vote signature (set in responses).
    pub signature: Vec<u8>,
    /// Extension signature (v0.38+, set in responses).
    pub extension_signature: Vec<u8>,
}

/// A proposal as the node sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireProposal {
    /// The `type` field as sent. Sign bytes always use the proposal type (32);
    /// this is echoed back unchanged.
    pub wire_type: i32,
    /// What is signed.
    pub proposal: Proposal,
    /// Signature (set in responses).
    pub signature: Vec<u8>,
}

/// A consensus public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubKey {
    /// Ed25519.
    Ed25519([u8; 32]),
    /// secp256k1, compressed.
    Secp256k1([u8; 33]),
}

/// `RemoteSignerError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// Error code.
    pub code: i32,
    /// Description (sent to the node; no internal detail).
    pub description: String,
}

/// What a node asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The signer's public key for a chain.
    PubKey {
        /// Chain id.
        chain_id: String,
    },
    /// Sign a vote.
    SignVote {
        /// Chain id.
        chain_id: String,
        /// The vote.
        vote: WireVote,
        /// v1: the node does not need the extension signed.
        skip_extension_signing: bool,
    },
    /// Sign a proposal.
    SignProposal {
        /// Chain id.
        chain_id: String,
        /// The proposal.
        proposal: WireProposal,
    },
    /// v1: sign raw bytes (only where policy allows it).
    SignBytes {
        /// The bytes.
        value: Vec<u8>,
    },
    /// Keep-alive.
    Ping,
}

/// What the signer answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// To `PubKey`.
    PubKey(Result<PubKey, RemoteError>),
    /// To `SignVote`.
    SignedVote(Result<WireVote, RemoteError>),
    /// To `SignProposal`.
    SignedProposal(Result<WireProposal, RemoteError>),
    /// To `SignBytes` (v1).
    SignBytes(Result<Vec<u8>, RemoteError>),
    /// To `Ping`.
    Ping,
}

/// A privval message that cannot be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivvalCodecError {
    /// Not a protobuf `Message`.
    #[error("undecodable privval message: {0}")]
    Decode(String),
    /// A `Message` with no variant set.
    #[error("empty privval message")]
    Empty,
    /// A request where a response was expected, or the reverse.
    #[error("unexpected privval message {0}")]
    Unexpected(&'static str),
    /// A message that this protocol generation does not have.
    #[error("{0} does not exist in this protocol generation")]
    NotInVersion(&'static str),
    /// A vote whose type is neither prevote nor precommit, a proposal whose
    /// type is not 32, negative heights, malformed keys.
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}
