//! What a frontend hands the pipeline (one [`Request`] per item) and what
//! it gets back ([`Outcome`]).

use slashing_db::ChainId;

use crate::cometbft::{self, ProtocolVersion, Timestamp, Vote};
use crate::policy::{ClientId, Operation};

use super::Refusal;

/// A signature, and for CometBFT the timestamp to send back (the stored
/// one when an earlier message at this position is re-served).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// A BLS signature (Ethereum).
    Bls([u8; 96]),
    /// A CometBFT vote or proposal signature.
    CometBft {
        /// Signature over the sign bytes.
        signature: Vec<u8>,
        /// The timestamp that was signed (send it back in the vote/proposal).
        timestamp: Timestamp,
        /// Signature over the vote extension, when one was signed.
        extension_signature: Option<Vec<u8>>,
    },
    /// A new Commit-Boost proxy and its delegation, signed by the consensus key.
    Delegation {
        /// The proxy: a BLS public key or an Ethereum address.
        proxy: Vec<u8>,
        /// The consensus key's BLS signature of the delegation.
        signature: [u8; 96],
    },
    /// A raw signature: Ed25519 (64 bytes) or secp256k1 (r ‖ s, low-S).
    Raw {
        /// The signature.
        signature: Vec<u8>,
        /// secp256k1 over a digest: the recovery id.
        recovery_id: Option<u8>,
    },
}

impl Signature {
    /// The signature bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Bls(s) | Self::Delegation { signature: s, .. } => s,
            Self::CometBft { signature, .. } | Self::Raw { signature, .. } => signature,
        }
    }
}

/// What one item of a batch asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A Web3Signer eth2 signing request, as the JSON document the frontend
    /// read (HTTP: the body parsed once; gRPC: built from the protobuf
    /// fields). The pipeline computes the signing root from it.
    Eth2(serde_json::Value),
    /// A CometBFT vote.
    CometVote {
        /// The chain's protocol generation (vote extensions from v0.38).
        version: ProtocolVersion,
        /// Chain id (at most 50 bytes: checked by the frontend).
        chain_id: ChainId,
        /// The vote.
        vote: Vote,
        /// Sign the vote extension where the protocol has one (a node may
        /// ask to skip it; a chain may not use extensions).
        sign_extension: bool,
    },
    /// A CometBFT proposal.
    CometProposal {
        /// Chain id (at most 50 bytes: checked by the frontend).
        chain_id: ChainId,
        /// The proposal.
        proposal: cometbft::Proposal,
    },
    /// CometBFT v1 `SignBytes`: arbitrary bytes with a consensus key.
    CometRaw(Vec<u8>),
    /// ECDSA over a 32-byte digest.
    RawSecp256k1(Vec<u8>),
    /// Pure Ed25519 over a message.
    RawEd25519(Vec<u8>),
    /// A Commit-Boost module's request (`request.public_key`: the consensus
    /// key, or for a proxy signature the proxy's public key or address).
    CommitBoost(super::CommitBoostAsk),
    /// A request the frontend could not read: refused as `INVALID_REQUEST`
    /// and audited under `request` like every other decision.
    Invalid {
        /// What it looked like (`eth2.request`, `cometbft.vote`, …).
        request: &'static str,
        /// Why it was refused.
        reason: String,
    },
}

/// Which key a request names: its public key bytes, as the frontend read
/// them (a key not loaded is refused as `UNKNOWN_KEY`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(Vec<u8>);

impl KeyId {
    /// The key with these public key bytes.
    pub fn new(public_key: Vec<u8>) -> Self {
        Self(public_key)
    }
}

impl std::ops::Deref for KeyId {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for KeyId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// One item: who asks, with which key, for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Who asks.
    pub client: ClientId,
    /// The key.
    pub public_key: KeyId,
    /// The message.
    pub message: Message,
    /// What the connection it came on may ask for, beyond the policy: a
    /// privval connection serves one chain, up to its `max_height`.
    pub scope: Option<Scope>,
}

/// The bounds of a connection that serves one CometBFT chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The only chain it may sign for.
    pub chain_id: String,
    /// Highest height it may sign (`[[cometbft.chain]] max_height`).
    pub max_height: Option<i64>,
}

/// The answer to one item.
pub type Outcome = Result<Signature, Refusal>;

/// A key as `ListKeys` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Public key bytes.
    pub public_key: Vec<u8>,
    /// `bls`, `ed25519`, `secp256k1`.
    pub scheme: &'static str,
    /// What the caller may do with it.
    pub operations: Vec<Operation>,
}
