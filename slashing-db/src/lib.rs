//! Slashing protection that does not forget.
//!
//! One call, [`SlashingDb::check_and_record`], decides whether a message may be
//! signed and, if so, records it durably (fsync) before it returns. Sign only
//! after it said [`Safe`]; a crash at any point can then lose a signature,
//! never protection.
//!
//! - Ethereum: EIP-3076 "complete" strategy (full history, low watermarks).
//! - CometBFT: height/round/step per (key, chain), re-serving the stored
//!   signature for a repeated message or one that differs only in timestamp.
//! - Storage: an [`Engine`] trait; [`SqliteEngine`] is the embedded engine
//!   (WAL, `synchronous=FULL`, exclusive lock, group commit by one writer).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use slashing_db::*;
//! let db = SlashingDb::open("slashing.sqlite".as_ref(), Config::default())?;
//! let proposal = Proposal::Block(BlockProposal {
//!     pubkey: BlsPublicKey([0xa9; 48]),
//!     genesis_root: GenesisRoot([0; 32]),
//!     slot: Slot(100),
//!     signing_root: SigningRoot([7; 32]),
//! });
//! match db.check_and_record(proposal)? {
//!     Ok(Safe::Valid | Safe::SameData) => { /* now sign */ }
//!     Ok(Safe::Reserve { .. }) => unreachable!("CometBFT only"),
//!     Err(refusal) => eprintln!("refused: {refusal}"),
//! }
//! # Ok(()) }
//! ```

pub mod anchor;
mod db;
mod decide;
pub mod engine;
mod error;
pub mod interchange;
pub mod key_state;
mod prune;
mod record;
pub mod rules;
mod types;
mod writer;

pub use anchor::AuditAnchor;
pub use db::{Config, SlashingDb, Stats};
pub use engine::postgres::{Durability, PG_SCHEMA_VERSION, PostgresEngine, PostgresOptions};
pub use engine::sqlite::{SqliteEngine, SqliteOptions};
pub use engine::{Engine, SCHEMA_VERSION};
pub use error::{DbError, NotSafe};
pub use interchange::{HistorySummary, ImportSummary, Interchange, InterchangeError};
pub use key_state::{KeyState, KeyStateError, Lifecycle};
pub use prune::{PruneConfig, PruneSummary};
pub use record::{
    AttestationProposal, BlockProposal, CometProposal, CometRecord, Decision, Lane,
    MessageProposal, Proposal, Safe, SignedAttestation, SignedBlock, SignedMessage,
};
pub use rules::sign_bytes::SignBytesError;
pub use types::{
    BlsPublicKey, ChainId, ConsensusKey, Epoch, GenesisRoot, Height, HexError, Hrs, SigningRoot,
    Slot, Step,
};
