//! The picture a batch decides against on the PostgreSQL engine: facts read
//! (or assumed) under the batch's locks, plus the batch's own writes so far,
//! held in memory until commit and undone by a savepoint rollback, so a
//! later request of the batch sees an earlier one. See `batch.rs`.

use std::collections::HashMap;

use crate::engine::Bounds;
use crate::error::DbError;
use crate::record::{CometRecord, SignedAttestation, SignedBlock};
use crate::types::{BlsPublicKey, ChainId, ConsensusKey, Epoch, Slot};

/// Facts about one attestation's (validator, source, target), as read.
#[derive(Debug, Default, Clone)]
pub(super) struct Surrounds {
    pub(super) surrounded_by_new: Option<SignedAttestation>,
    pub(super) surrounding_new: Option<SignedAttestation>,
}

/// A write of this batch, held until commit.
#[derive(Debug, Clone)]
pub(super) enum Write {
    Block(i64, SignedBlock),
    Attestation(i64, SignedAttestation),
    Comet(ConsensusKey, ChainId, CometRecord),
}

/// What a batch's transaction read ahead (under its locks), and what it has
/// written so far.
#[derive(Debug, Default)]
pub(super) struct Ahead {
    pub(super) ids: HashMap<BlsPublicKey, i64>,
    pub(super) bounds: HashMap<i64, Bounds>,
    pub(super) blocks: HashMap<(i64, u64), Option<SignedBlock>>,
    pub(super) targets: HashMap<(i64, u64), Option<SignedAttestation>>,
    pub(super) surrounds: HashMap<(i64, u64, u64), Surrounds>,
    pub(super) comet: HashMap<(ConsensusKey, ChainId), Option<CometRecord>>,
    pub(super) writes: Vec<Write>,
    pub(super) savepoints: Vec<usize>,
    /// The facts were assumed (nothing recorded in the way), not read: the
    /// writes check them, and every Ethereum proposal must be written.
    pub(super) assumed: bool,
    /// How many proposals of the batch the rules will decide (Ethereum ones
    /// for the pinned network, and CometBFT ones).
    pub(super) proposals: usize,
}

/// A question the read-ahead did not cover: a bug, refused rather than
/// answered from an incomplete picture.
pub(super) fn not_read(what: &str) -> DbError {
    DbError::Engine {
        context: "deciding a batch",
        source: format!("{what} was not read ahead").into(),
    }
}

fn at_most(a: Option<u64>, b: u64) -> Option<u64> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Ahead {
    pub(super) fn validator(&self, pubkey: &BlsPublicKey) -> Result<i64, DbError> {
        self.ids
            .get(pubkey)
            .copied()
            .ok_or_else(|| not_read("a validator"))
    }

    pub(super) fn bounds(&self, v: i64) -> Result<Bounds, DbError> {
        let mut b = *self
            .bounds
            .get(&v)
            .ok_or_else(|| not_read("a validator's bounds"))?;
        for w in &self.writes {
            match w {
                Write::Block(id, blk) if *id == v => {
                    b.min_slot = at_most(b.min_slot.map(|s| s.0), blk.slot.0).map(Slot);
                }
                Write::Attestation(id, a) if *id == v => {
                    b.min_source = at_most(b.min_source.map(|e| e.0), a.source.0).map(Epoch);
                    b.min_target = at_most(b.min_target.map(|e| e.0), a.target.0).map(Epoch);
                }
                _ => {}
            }
        }
        Ok(b)
    }

    fn new_attestations(&self, v: i64) -> impl Iterator<Item = &SignedAttestation> {
        self.writes.iter().filter_map(move |w| match w {
            Write::Attestation(id, a) if *id == v => Some(a),
            _ => None,
        })
    }

    pub(super) fn block_at(&self, v: i64, slot: Slot) -> Result<Option<SignedBlock>, DbError> {
        let new = self.writes.iter().find_map(|w| match w {
            Write::Block(id, b) if *id == v && b.slot == slot => Some(b.clone()),
            _ => None,
        });
        if new.is_some() {
            return Ok(new);
        }
        self.blocks
            .get(&(v, slot.0))
            .cloned()
            .ok_or_else(|| not_read("a block slot"))
    }

    pub(super) fn attestation_for_target(
        &self,
        v: i64,
        target: Epoch,
    ) -> Result<Option<SignedAttestation>, DbError> {
        if let Some(a) = self.new_attestations(v).find(|a| a.target == target) {
            return Ok(Some(a.clone()));
        }
        self.targets
            .get(&(v, target.0))
            .cloned()
            .ok_or_else(|| not_read("an attestation target"))
    }

    fn surrounds_of(&self, v: i64, source: Epoch, target: Epoch) -> Result<&Surrounds, DbError> {
        self.surrounds
            .get(&(v, source.0, target.0))
            .ok_or_else(|| not_read("an attestation's surroundings"))
    }

    pub(super) fn surrounded_by(
        &self,
        v: i64,
        source: Epoch,
        target: Epoch,
    ) -> Result<Option<SignedAttestation>, DbError> {
        let read = &self.surrounds_of(v, source, target)?.surrounded_by_new;
        if read.is_some() {
            return Ok(read.clone());
        }
        Ok(self
            .new_attestations(v)
            .find(|a| source < a.source && a.target < target)
            .cloned())
    }

    pub(super) fn surrounding(
        &self,
        v: i64,
        source: Epoch,
        target: Epoch,
    ) -> Result<Option<SignedAttestation>, DbError> {
        let read = &self.surrounds_of(v, source, target)?.surrounding_new;
        if read.is_some() {
            return Ok(read.clone());
        }
        Ok(self
            .new_attestations(v)
            .find(|a| a.source < source && target < a.target)
            .cloned())
    }

    pub(super) fn insert_block(&mut self, v: i64, b: &SignedBlock) {
        self.writes.push(Write::Block(v, b.clone()));
    }

    pub(super) fn insert_attestation(&mut self, v: i64, a: &SignedAttestation) {
        self.writes.push(Write::Attestation(v, a.clone()));
    }

    /// The record as it stands after this batch's writes (`None` inside the
    /// outer option: the key was not read ahead).
    pub(super) fn comet_now(
        &self,
        key: &ConsensusKey,
        chain: &ChainId,
    ) -> Option<Option<CometRecord>> {
        let mut now = self.comet.get(&(key.clone(), chain.clone()))?.clone();
        for w in &self.writes {
            match w {
                Write::Comet(k, c, r) if k == key && c == chain => now = Some(r.clone()),
                _ => {}
            }
        }
        Some(now)
    }

    pub(super) fn cometbft_last(
        &self,
        key: &ConsensusKey,
        chain: &ChainId,
    ) -> Result<Option<CometRecord>, DbError> {
        self.comet_now(key, chain)
            .ok_or_else(|| not_read("a CometBFT key"))
    }

    pub(super) fn cometbft_store(
        &mut self,
        key: &ConsensusKey,
        chain: &ChainId,
        r: &CometRecord,
    ) -> Result<(), DbError> {
        if !self.comet.contains_key(&(key.clone(), chain.clone())) {
            return Err(not_read("a CometBFT key"));
        }
        self.writes
            .push(Write::Comet(key.clone(), chain.clone(), r.clone()));
        Ok(())
    }

    pub(super) fn savepoint(&mut self) {
        self.savepoints.push(self.writes.len());
    }

    pub(super) fn release_savepoint(&mut self) {
        self.savepoints.pop();
    }

    pub(super) fn rollback_to_savepoint(&mut self) {
        if let Some(n) = self.savepoints.pop() {
            self.writes.truncate(n);
        }
    }
}
