//! The storage seam. An [`Engine`] answers narrow questions about stored
//! history and writes records; it knows nothing about what is slashable. The
//! rules in [`crate::rules`] decide, [`crate::decide`] ties the two together
//! inside one transaction. A PostgreSQL engine implements the same trait and
//! runs the same test suite (`tests/scenarios.rs` is generic over engines).

pub mod postgres;
mod schema;
pub mod sqlite;

pub use schema::SCHEMA_VERSION;

use crate::error::DbError;
use crate::record::{CometRecord, Lane, Proposal, SignedAttestation, SignedBlock, SignedMessage};
use crate::rules::eth::max_bound;
use crate::types::{BlsPublicKey, ChainId, ConsensusKey, Epoch, GenesisRoot, Slot};

/// Row id of a validator in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValidatorId(pub i64);

/// What bounds one validator's history from below: the lowest recorded
/// messages, and explicit watermarks left by pruning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    /// Lowest recorded block slot.
    pub min_slot: Option<Slot>,
    /// Lowest recorded attestation source.
    pub min_source: Option<Epoch>,
    /// Lowest recorded attestation target.
    pub min_target: Option<Epoch>,
    /// Explicit watermarks.
    pub watermarks: Watermarks,
}

impl Bounds {
    /// Blocks at or below this slot are refused (unless they repeat a record).
    pub fn block_slot(&self) -> Option<Slot> {
        max_bound(self.watermarks.block_slot, self.min_slot)
    }

    /// Attestations with a source below this are refused.
    pub fn source_epoch(&self) -> Option<Epoch> {
        max_bound(self.watermarks.source_epoch, self.min_source)
    }

    /// Attestations with a target at or below this are refused (unless they repeat a record).
    pub fn target_epoch(&self) -> Option<Epoch> {
        max_bound(self.watermarks.target_epoch, self.min_target)
    }
}

/// Explicit low watermarks of one validator, raised by pruning (and never lowered).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watermarks {
    /// Blocks at or below this slot are refused.
    pub block_slot: Option<Slot>,
    /// Attestations with a source below this epoch are refused.
    pub source_epoch: Option<Epoch>,
    /// Attestations with a target at or below this epoch are refused.
    pub target_epoch: Option<Epoch>,
}

/// Storage of slashing history. All calls between [`Engine::begin`] and
/// [`Engine::commit`] form one exclusive transaction; `commit` returns only
/// once the transaction is durable (fsync).
pub trait Engine: Send {
    /// Starts an exclusive write transaction.
    fn begin(&mut self) -> Result<(), DbError>;
    /// Commits durably.
    fn commit(&mut self) -> Result<(), DbError>;
    /// True while a transaction is open. Engines may abandon a transaction on
    /// their own (SQLite does on a full disk); the writer checks this.
    fn in_transaction(&self) -> bool;
    /// Abandons the transaction.
    fn rollback(&mut self) -> Result<(), DbError>;
    /// Called once right after [`Engine::begin`] with every proposal the
    /// transaction is about to decide, so that an engine for which each
    /// question is a network round trip can take the locks and read the
    /// facts for all of them at once (PostgreSQL). The rules then ask their
    /// questions as usual. Default: nothing (SQLite answers from its cache).
    fn read_ahead(&mut self, batch: &[&Proposal]) -> Result<(), DbError> {
        let _ = batch;
        Ok(())
    }
    /// Marks a point the transaction can roll back to (nested work of one caller).
    fn savepoint(&mut self) -> Result<(), DbError>;
    /// Keeps the work since the last savepoint.
    fn release_savepoint(&mut self) -> Result<(), DbError>;
    /// Undoes the work since the last savepoint, and forgets the savepoint.
    fn rollback_to_savepoint(&mut self) -> Result<(), DbError>;

    /// The network this database protects, once pinned.
    fn genesis_root(&mut self) -> Result<Option<GenesisRoot>, DbError>;
    /// Pins the network.
    fn set_genesis_root(&mut self, root: &GenesisRoot) -> Result<(), DbError>;

    /// Looks a validator up.
    fn validator(&mut self, pubkey: &BlsPublicKey) -> Result<Option<ValidatorId>, DbError>;
    /// Registers a validator (must not exist yet).
    fn insert_validator(&mut self, pubkey: &BlsPublicKey) -> Result<ValidatorId, DbError>;
    /// Every validator, ordered by public key.
    fn validators(&mut self) -> Result<Vec<(ValidatorId, BlsPublicKey)>, DbError>;
    /// A validator's lowest recorded messages and explicit watermarks.
    fn bounds(&mut self, v: ValidatorId) -> Result<Bounds, DbError>;
    /// Replaces a validator's explicit watermarks.
    fn set_watermarks(&mut self, v: ValidatorId, w: &Watermarks) -> Result<(), DbError>;

    /// The block recorded at `slot`.
    fn block_at(&mut self, v: ValidatorId, slot: Slot) -> Result<Option<SignedBlock>, DbError>;
    /// Highest recorded block slot.
    fn max_block_slot(&mut self, v: ValidatorId) -> Result<Option<Slot>, DbError>;
    /// Records a new block (the slot must be free).
    fn insert_block(&mut self, v: ValidatorId, b: &SignedBlock) -> Result<(), DbError>;
    /// Merges an imported block: a free slot takes it; an occupied slot keeps
    /// its root only if the roots are equal, else the root
    /// becomes unknown (`None`), which refuses every block at that slot.
    fn merge_block(&mut self, v: ValidatorId, b: &SignedBlock) -> Result<(), DbError>;
    /// All recorded blocks, by slot.
    fn blocks(&mut self, v: ValidatorId) -> Result<Vec<SignedBlock>, DbError>;
    /// Deletes blocks below `slot`; returns how many and the highest deleted slot.
    fn delete_blocks_below(
        &mut self,
        v: ValidatorId,
        slot: Slot,
    ) -> Result<(u64, Option<Slot>), DbError>;

    /// The attestation recorded for `target`.
    fn attestation_for_target(
        &mut self,
        v: ValidatorId,
        target: Epoch,
    ) -> Result<Option<SignedAttestation>, DbError>;
    /// A recorded attestation `a` with `source < a.source` and `a.target < target` (surrounded by the new one).
    fn attestation_surrounded_by(
        &mut self,
        v: ValidatorId,
        source: Epoch,
        target: Epoch,
    ) -> Result<Option<SignedAttestation>, DbError>;
    /// A recorded attestation `a` with `a.source < source` and `target < a.target` (surrounding the new one).
    fn attestation_surrounding(
        &mut self,
        v: ValidatorId,
        source: Epoch,
        target: Epoch,
    ) -> Result<Option<SignedAttestation>, DbError>;
    /// Highest recorded attestation target.
    fn max_target_epoch(&mut self, v: ValidatorId) -> Result<Option<Epoch>, DbError>;
    /// Recounts the lowest recorded messages after a delete (pruning).
    fn recount_minimums(&mut self, v: ValidatorId) -> Result<(), DbError>;
    /// Records a new attestation (the target must be free).
    fn insert_attestation(&mut self, v: ValidatorId, a: &SignedAttestation) -> Result<(), DbError>;
    /// Merges an imported attestation, like [`Engine::merge_block`]; on a
    /// shared target the higher source is kept.
    fn merge_attestation(&mut self, v: ValidatorId, a: &SignedAttestation) -> Result<(), DbError>;
    /// All recorded attestations, by target.
    fn attestations(&mut self, v: ValidatorId) -> Result<Vec<SignedAttestation>, DbError>;
    /// Deletes attestations with target below `target`; returns how many, and
    /// the highest deleted source and target.
    fn delete_attestations_below(
        &mut self,
        v: ValidatorId,
        target: Epoch,
    ) -> Result<(u64, Option<(Epoch, Epoch)>), DbError>;

    /// The last CometBFT record for (key, chain).
    fn cometbft_last(
        &mut self,
        key: &ConsensusKey,
        chain: &ChainId,
    ) -> Result<Option<CometRecord>, DbError>;
    /// Replaces the last CometBFT record for (key, chain).
    fn cometbft_store(
        &mut self,
        key: &ConsensusKey,
        chain: &ChainId,
        r: &CometRecord,
    ) -> Result<(), DbError>;
    /// The last Gloas message of `lane` recorded for validator `v`.
    fn message_last(
        &mut self,
        v: ValidatorId,
        lane: Lane,
    ) -> Result<Option<SignedMessage>, DbError>;
    /// Records `m` as the last message of `lane` for validator `v` (its slot
    /// above the last one's: the schema refuses a slot that goes back).
    fn message_store(
        &mut self,
        v: ValidatorId,
        lane: Lane,
        m: &SignedMessage,
    ) -> Result<(), DbError>;

    /// The last Gloas message of every validator and lane.
    fn messages_all(&mut self) -> Result<Vec<(BlsPublicKey, Lane, SignedMessage)>, DbError>;

    /// Every CometBFT record.
    fn cometbft_all(&mut self) -> Result<Vec<(ConsensusKey, ChainId, CometRecord)>, DbError>;

    /// A value of the `meta` table: what the signer keeps beside the history
    /// (the pinned network, the audit logs' anchors).
    fn meta(&mut self, key: &str) -> Result<Option<Vec<u8>>, DbError>;
    /// Sets a `meta` value, inserting or replacing it.
    fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<(), DbError>;
    /// Every `meta` entry whose key starts with `prefix`, by key.
    fn meta_with_prefix(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, DbError>;

    /// How durable a commit of this engine is, for engines whose durability
    /// depends on a server's settings (PostgreSQL), read now and checked:
    /// [`DbError::NotDurable`] when the server no longer gives what the
    /// engine was opened to require (fsync off, a standby now, no
    /// synchronous standby when one is required). `None`: a local file whose
    /// commits fsync (SQLite).
    fn durability(&mut self) -> Result<Option<postgres::Durability>, DbError> {
        Ok(None)
    }
}
