//! Pruning old history without weakening protection: for each validator the
//! explicit low watermarks are raised to cover what is deleted, in the same
//! transaction as the delete. Afterwards every message refused before is still
//! refused (a repeat of a deleted message now is too: stricter, never weaker).

use crate::engine::{Engine, ValidatorId, Watermarks};
use crate::error::DbError;
use crate::rules::eth::max_bound;
use crate::types::{Epoch, Slot};

/// How much history to keep, counted back from each validator's newest record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneConfig {
    /// Blocks with a slot more than this far below the newest are deleted.
    pub keep_slots: u64,
    /// Attestations with a target more than this far below the newest are deleted.
    pub keep_epochs: u64,
}

/// What a prune deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneSummary {
    /// Block records deleted.
    pub blocks: u64,
    /// Attestation records deleted.
    pub attestations: u64,
}

/// Validators pruned per transaction: each validator's delete and raised
/// watermarks commit together, but a whole database is never one
/// transaction — on a shared database that would hold every validator's
/// lock, and stall every instance's signing, until the end.
pub(crate) const VALIDATORS_PER_TRANSACTION: usize = 64;

/// Prunes the validators `vs`. Call inside a transaction. CometBFT keeps only
/// the last position per key and chain, so there is nothing to prune there.
pub(crate) fn prune(
    e: &mut dyn Engine,
    vs: &[ValidatorId],
    cfg: PruneConfig,
) -> Result<PruneSummary, DbError> {
    let mut summary = PruneSummary::default();
    for &v in vs {
        let mut w: Watermarks = e.bounds(v)?.watermarks;
        if let Some(newest) = e.max_block_slot(v)? {
            let cutoff = Slot(newest.0.saturating_sub(cfg.keep_slots));
            let (n, highest) = e.delete_blocks_below(v, cutoff)?;
            summary.blocks += n;
            w.block_slot = max_bound(w.block_slot, highest);
        }
        if let Some(newest) = e.max_target_epoch(v)? {
            let cutoff = Epoch(newest.0.saturating_sub(cfg.keep_epochs));
            let (n, highest) = e.delete_attestations_below(v, cutoff)?;
            summary.attestations += n;
            if let Some((source, target)) = highest {
                w.source_epoch = max_bound(w.source_epoch, Some(source));
                w.target_epoch = max_bound(w.target_epoch, Some(target));
            }
        }
        e.set_watermarks(v, &w)?;
        e.recount_minimums(v)?;
    }
    Ok(summary)
}
