//! `impl Engine for PostgresEngine`: the same narrow questions as the SQLite
//! engine, each one prepared statement. Every call that reads or writes a
//! validator's history first makes sure this transaction holds that
//! validator's row lock (and every CometBFT read its (key, chain) advisory
//! lock), so two instances never decide for one key at the same time.
//!
//! One file because it is one concept, the `Engine` seam for PostgreSQL:
//! the question-by-question half of the trait (import, export, pruning,
//! transactions) as the rules ask it, each method a query; the batch path
//! is `batch.rs`.

use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use super::PostgresEngine;
use crate::engine::{Bounds, Engine, ValidatorId, Watermarks};
use crate::error::DbError;
use crate::record::{CometRecord, Lane, Proposal, SignedAttestation, SignedBlock, SignedMessage};
use crate::types::{
    BlsPublicKey, ChainId, ConsensusKey, Epoch, GenesisRoot, Height, Hrs, SigningRoot, Slot, Step,
};

pub(super) const GENESIS_KEY: &str = "genesis_validators_root";
pub(super) const GENESIS: &str = "SELECT value FROM meta WHERE key = $1";

/// Replaces the last CometBFT record of (key, chain).
pub(super) const COMET_STORE: &str = "INSERT INTO cometbft_state (consensus_key, chain_id, height, round, step, sign_bytes, signature)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (consensus_key, chain_id) DO UPDATE SET
       height = excluded.height, round = excluded.round, step = excluded.step,
       sign_bytes = excluded.sign_bytes, signature = excluded.signature";

impl PostgresEngine {
    pub(super) fn corrupt(&self, detail: impl Into<String>) -> DbError {
        DbError::Corrupt {
            path: self.target.clone().into(),
            detail: detail.into(),
        }
    }

    pub(super) fn col<'a, T: FromSql<'a>>(&self, row: &'a Row, i: usize) -> Result<T, DbError> {
        row.try_get(i)
            .map_err(|e| self.corrupt(format!("unexpected column {i}: {e}")))
    }

    pub(super) fn u64_of(&self, v: i64) -> Result<u64, DbError> {
        u64::try_from(v).map_err(|_| self.corrupt(format!("negative value {v} stored")))
    }

    pub(super) fn opt_u64(&self, row: &Row, i: usize) -> Result<Option<u64>, DbError> {
        self.col::<Option<i64>>(row, i)?
            .map(|v| self.u64_of(v))
            .transpose()
    }

    pub(super) fn root_of(&self, b: Option<Vec<u8>>) -> Result<Option<SigningRoot>, DbError> {
        b.map(|b| {
            SigningRoot::from_slice(&b).ok_or_else(|| self.corrupt("signing root of wrong length"))
        })
        .transpose()
    }

    fn att_of(&self, row: &Row) -> Result<SignedAttestation, DbError> {
        self.att_at(row, 0)
    }

    /// `(source, target, root)` from column `at` on.
    pub(super) fn att_at(&self, row: &Row, at: usize) -> Result<SignedAttestation, DbError> {
        Ok(SignedAttestation {
            source: Epoch(self.u64_of(self.col(row, at)?)?),
            target: Epoch(self.u64_of(self.col(row, at + 1)?)?),
            signing_root: self.root_of(self.col(row, at + 2)?)?,
        })
    }

    /// Refuses a call the read-ahead path does not serve (a bug).
    fn classic(&self, what: &'static str) -> Result<(), DbError> {
        if self.ahead.is_some() {
            return Err(DbError::Engine {
                context: "deciding a batch",
                source: format!("{what} inside a batch read ahead").into(),
            });
        }
        Ok(())
    }

    /// The pinned root in a row of [`GENESIS`].
    pub(super) fn genesis_of(&self, row: &Row) -> Result<GenesisRoot, DbError> {
        let b: Vec<u8> = self.col(row, 0)?;
        GenesisRoot::from_slice(&b).ok_or_else(|| self.corrupt("genesis root of wrong length"))
    }

    pub(super) fn comet_of(&self, row: &Row, at: usize) -> Result<CometRecord, DbError> {
        let round: i64 = self.col(row, at + 1)?;
        let step: i16 = self.col(row, at + 2)?;
        Ok(CometRecord {
            hrs: Hrs {
                height: Height(self.u64_of(self.col(row, at)?)?),
                round: u32::try_from(round).map_err(|_| self.corrupt("round out of range"))?,
                step: Step::from_i64(i64::from(step))
                    .ok_or_else(|| self.corrupt("unknown step"))?,
            },
            sign_bytes: self.col(row, at + 3)?,
            signature: self.col(row, at + 4)?,
        })
    }

    /// Locks validator `v`'s row for the rest of the transaction (once).
    fn lock_validator(&mut self, v: ValidatorId) -> Result<(), DbError> {
        if self.locked.contains(&v.0) {
            return Ok(());
        }
        let found = self.query_opt(
            "locking validator",
            "SELECT 1 FROM validators WHERE id = $1 FOR UPDATE",
            &[&v.0],
        )?;
        if found.is_none() {
            return Err(self.corrupt(format!("validator {} vanished", v.0)));
        }
        self.locked.insert(v.0);
        Ok(())
    }

    /// One `(source, target, root)` row, if any.
    fn att_query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<SignedAttestation>, DbError> {
        self.query_opt("reading attestations", sql, params)?
            .map(|r| self.att_of(&r))
            .transpose()
    }
}

fn i64_of(what: &'static str, v: u64) -> Result<i64, DbError> {
    i64::try_from(v).map_err(|_| DbError::OutOfRange { what, value: v })
}

fn opt_i64(what: &'static str, v: Option<u64>) -> Result<Option<i64>, DbError> {
    v.map(|x| i64_of(what, x)).transpose()
}

fn root_param(r: Option<&SigningRoot>) -> Option<&[u8]> {
    r.map(|r| r.as_bytes())
}

impl Engine for PostgresEngine {
    fn begin(&mut self) -> Result<(), DbError> {
        self.connect()?;
        // Outside the transaction, before BEGIN is pending.
        self.recheck_durability()?;
        self.locked.clear();
        self.locked_comet.clear();
        self.ahead = None;
        // READ COMMITTED: every statement sees what committed before it, so a
        // read after a lock sees the previous lock holder's writes. BEGIN
        // itself goes out with the first statement (no round trip of its own).
        self.begin_pending = true;
        self.in_tx = true;
        Ok(())
    }

    fn read_ahead(&mut self, batch: &[&Proposal]) -> Result<(), DbError> {
        self.read_ahead_batch(batch)
    }

    fn commit(&mut self) -> Result<(), DbError> {
        let ahead = self.ahead.take();
        let pending = std::mem::take(&mut self.begin_pending);
        // The writes held by a read-ahead batch go out with the COMMIT.
        let mut steps = match &ahead {
            Some(a) => match self.write_steps(a) {
                Ok(steps) => steps,
                Err(e) => {
                    if pending {
                        // Nothing was sent.
                        self.in_tx = false;
                    } else {
                        let _ = self.rollback();
                    }
                    return Err(e);
                }
            },
            None => Vec::new(),
        };
        if pending {
            if steps.is_empty() {
                // Nothing was sent and nothing is to be written.
                self.in_tx = false;
                return Ok(());
            }
            steps.insert(0, super::pipeline::Step::Control(super::pipeline::BEGIN));
        }
        steps.push(super::pipeline::Step::Control("COMMIT"));
        let Some(client) = self.client.as_ref() else {
            return Err(DbError::Unavailable {
                context: "committing",
                detail: "the connection was lost during the transaction".into(),
            });
        };
        let deadline = self.opts.statement_timeout;
        let out = super::block(&self.rt, async {
            tokio::time::timeout(deadline, super::pipeline::pipeline(client, &steps)).await
        });
        self.in_tx = false;
        self.locked.clear();
        self.locked_comet.clear();
        // A write refused by the server aborted the transaction (its COMMIT
        // then only rolls back): the first error is the outcome.
        let out = out.map(|answers| {
            answers
                .into_iter()
                .find_map(Result::err)
                .map_or(Ok(()), Err)
        });
        match out {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e))
                if e.as_db_error().is_some()
                    && !self
                        .client
                        .as_ref()
                        .is_none_or(tokio_postgres::Client::is_closed) =>
            {
                // The server answered: the transaction was rolled back.
                if e.code()
                    .is_some_and(|c| c.code() == super::schema::ASSUMPTION_FAILED)
                {
                    self.read_next = true;
                }
                self.genesis = None;
                Err(self.fail("committing", &e))
            }
            Ok(Err(e)) => {
                self.drop_connection();
                Err(DbError::CommitOutcomeUnknown {
                    detail: e.to_string(),
                })
            }
            Err(_) => {
                self.drop_connection();
                Err(DbError::CommitOutcomeUnknown {
                    detail: format!("no answer to COMMIT within {deadline:?}"),
                })
            }
        }
    }

    fn in_transaction(&self) -> bool {
        self.in_tx && self.client.is_some()
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        self.genesis = None;
        self.locked.clear();
        self.locked_comet.clear();
        self.ahead = None;
        if std::mem::take(&mut self.begin_pending) || !self.in_tx || self.client.is_none() {
            self.in_tx = false;
            return Ok(());
        }
        self.in_tx = false;
        self.batch("rolling back", "ROLLBACK")
    }

    fn savepoint(&mut self) -> Result<(), DbError> {
        if let Some(a) = self.ahead.as_mut() {
            a.savepoint();
            return Ok(());
        }
        self.batch("savepoint", "SAVEPOINT request")
    }

    fn release_savepoint(&mut self) -> Result<(), DbError> {
        if let Some(a) = self.ahead.as_mut() {
            a.release_savepoint();
            return Ok(());
        }
        self.batch("savepoint", "RELEASE SAVEPOINT request")
    }

    fn rollback_to_savepoint(&mut self) -> Result<(), DbError> {
        if let Some(a) = self.ahead.as_mut() {
            a.rollback_to_savepoint();
            return Ok(());
        }
        self.genesis = None;
        // Locks taken since the savepoint are released by the rollback.
        self.locked.clear();
        self.locked_comet.clear();
        self.batch(
            "savepoint",
            "ROLLBACK TO SAVEPOINT request; RELEASE SAVEPOINT request",
        )
    }

    fn genesis_root(&mut self) -> Result<Option<GenesisRoot>, DbError> {
        if self.genesis.is_some() {
            return Ok(self.genesis);
        }
        self.classic("reading the network")?;
        let row = self.query_opt("reading genesis root", GENESIS, &[&GENESIS_KEY])?;
        let root = row.map(|r| self.genesis_of(&r)).transpose()?;
        self.genesis = root;
        Ok(root)
    }

    fn set_genesis_root(&mut self, root: &GenesisRoot) -> Result<(), DbError> {
        self.classic("pinning the network")?;
        // Another instance may pin at the same moment: the first commit wins,
        // and whoever loses learns the pinned root here.
        self.execute(
            "pinning genesis root",
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&GENESIS_KEY, &root.as_bytes()],
        )?;
        self.genesis = None;
        match self.genesis_root()? {
            Some(stored) if stored == *root => Ok(()),
            Some(stored) => Err(DbError::GenesisRootMismatch {
                stored,
                configured: *root,
            }),
            None => Err(self.corrupt("the genesis root did not stick")),
        }
    }

    fn meta(&mut self, key: &str) -> Result<Option<Vec<u8>>, DbError> {
        self.classic("reading meta")?;
        let row = self.query_opt(
            "reading meta",
            "SELECT value FROM meta WHERE key = $1 FOR UPDATE",
            &[&key],
        )?;
        row.map(|r| self.col(&r, 0)).transpose()
    }

    fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<(), DbError> {
        self.classic("writing meta")?;
        self.execute(
            "writing meta",
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )
        .map(|_| ())
    }

    fn meta_with_prefix(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, DbError> {
        self.classic("reading meta")?;
        // FOR UPDATE: a caller that reads to compare and then writes holds
        // the rows until it commits.
        let rows = self.query(
            "reading meta",
            "SELECT key, value FROM meta WHERE left(key, length($1)) = $1 ORDER BY key FOR UPDATE",
            &[&prefix],
        )?;
        rows.iter()
            .map(|r| Ok((self.col(r, 0)?, self.col(r, 1)?)))
            .collect()
    }

    fn validator(&mut self, pubkey: &BlsPublicKey) -> Result<Option<ValidatorId>, DbError> {
        if let Some(a) = &self.ahead {
            return a.validator(pubkey).map(|v| Some(ValidatorId(v)));
        }
        let row = self.query_opt(
            "reading validator",
            "SELECT id FROM validators WHERE pubkey = $1 FOR UPDATE",
            &[&pubkey.as_bytes()],
        )?;
        match row {
            Some(r) => {
                let id: i64 = self.col(&r, 0)?;
                self.locked.insert(id);
                Ok(Some(ValidatorId(id)))
            }
            None => Ok(None),
        }
    }

    fn insert_validator(&mut self, pubkey: &BlsPublicKey) -> Result<ValidatorId, DbError> {
        self.classic("registering a validator")?;
        // Another instance may register the same key at the same moment: the
        // insert waits for its commit and then does nothing; the lock below
        // then finds its row.
        self.execute(
            "registering validator",
            "INSERT INTO validators (pubkey) VALUES ($1) ON CONFLICT (pubkey) DO NOTHING",
            &[&pubkey.as_bytes()],
        )?;
        self.validator(pubkey)?
            .ok_or_else(|| self.corrupt("a registered validator is missing"))
    }

    fn validators(&mut self) -> Result<Vec<(ValidatorId, BlsPublicKey)>, DbError> {
        self.classic("listing validators")?;
        let rows = self.query(
            "listing validators",
            "SELECT id, pubkey FROM validators ORDER BY pubkey",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                let pk: Vec<u8> = self.col(r, 1)?;
                let pk = BlsPublicKey::from_slice(&pk)
                    .ok_or_else(|| self.corrupt("public key of wrong length"))?;
                Ok((ValidatorId(self.col(r, 0)?), pk))
            })
            .collect()
    }

    fn bounds(&mut self, v: ValidatorId) -> Result<Bounds, DbError> {
        if let Some(a) = &self.ahead {
            return a.bounds(v.0);
        }
        self.lock_validator(v)?;
        let row = self
            .query_opt(
                "reading low watermarks",
                "SELECT min_slot, min_source_epoch, min_target_epoch, slot_wm, source_epoch_wm, target_epoch_wm
                 FROM validators WHERE id = $1",
                &[&v.0],
            )?
            .ok_or_else(|| self.corrupt(format!("validator {} vanished", v.0)))?;
        Ok(Bounds {
            min_slot: self.opt_u64(&row, 0)?.map(Slot),
            min_source: self.opt_u64(&row, 1)?.map(Epoch),
            min_target: self.opt_u64(&row, 2)?.map(Epoch),
            watermarks: Watermarks {
                block_slot: self.opt_u64(&row, 3)?.map(Slot),
                source_epoch: self.opt_u64(&row, 4)?.map(Epoch),
                target_epoch: self.opt_u64(&row, 5)?.map(Epoch),
            },
        })
    }

    fn set_watermarks(&mut self, v: ValidatorId, w: &Watermarks) -> Result<(), DbError> {
        self.classic("writing watermarks")?;
        self.lock_validator(v)?;
        let b = opt_i64("slot", w.block_slot.map(|x| x.0))?;
        let s = opt_i64("source epoch", w.source_epoch.map(|x| x.0))?;
        let t = opt_i64("target epoch", w.target_epoch.map(|x| x.0))?;
        self.execute(
            "writing watermarks",
            "UPDATE validators SET slot_wm = $2, source_epoch_wm = $3, target_epoch_wm = $4 WHERE id = $1",
            &[&v.0, &b, &s, &t],
        )?;
        Ok(())
    }

    fn block_at(&mut self, v: ValidatorId, slot: Slot) -> Result<Option<SignedBlock>, DbError> {
        if let Some(a) = &self.ahead {
            return a.block_at(v.0, slot);
        }
        self.lock_validator(v)?;
        let s = i64_of("slot", slot.0)?;
        let row = self.query_opt(
            "reading blocks",
            "SELECT signing_root FROM signed_blocks WHERE validator_id = $1 AND slot = $2",
            &[&v.0, &s],
        )?;
        row.map(|r| {
            Ok(SignedBlock {
                slot,
                signing_root: self.root_of(self.col(&r, 0)?)?,
            })
        })
        .transpose()
    }

    fn max_block_slot(&mut self, v: ValidatorId) -> Result<Option<Slot>, DbError> {
        self.classic("reading blocks")?;
        self.lock_validator(v)?;
        let row = self
            .query_opt(
                "reading blocks",
                "SELECT max(slot) FROM signed_blocks WHERE validator_id = $1",
                &[&v.0],
            )?
            .ok_or_else(|| self.corrupt("max() answered no row"))?;
        Ok(self.opt_u64(&row, 0)?.map(Slot))
    }

    fn insert_block(&mut self, v: ValidatorId, b: &SignedBlock) -> Result<(), DbError> {
        if let Some(a) = self.ahead.as_mut() {
            a.insert_block(v.0, b);
            return Ok(());
        }
        self.lock_validator(v)?;
        let s = i64_of("slot", b.slot.0)?;
        self.execute(
            "recording block",
            "INSERT INTO signed_blocks (validator_id, slot, signing_root) VALUES ($1, $2, $3)",
            &[&v.0, &s, &root_param(b.signing_root.as_ref())],
        )?;
        Ok(())
    }

    fn merge_block(&mut self, v: ValidatorId, b: &SignedBlock) -> Result<(), DbError> {
        self.classic("importing a block")?;
        self.lock_validator(v)?;
        let s = i64_of("slot", b.slot.0)?;
        self.execute(
            "importing block",
            "INSERT INTO signed_blocks AS b (validator_id, slot, signing_root) VALUES ($1, $2, $3)
             ON CONFLICT (validator_id, slot) DO UPDATE SET signing_root =
               CASE WHEN b.signing_root = excluded.signing_root THEN b.signing_root ELSE NULL END",
            &[&v.0, &s, &root_param(b.signing_root.as_ref())],
        )?;
        Ok(())
    }

    fn blocks(&mut self, v: ValidatorId) -> Result<Vec<SignedBlock>, DbError> {
        self.classic("reading blocks")?;
        let rows = self.query(
            "reading blocks",
            "SELECT slot, signing_root FROM signed_blocks WHERE validator_id = $1 ORDER BY slot",
            &[&v.0],
        )?;
        rows.iter()
            .map(|r| {
                Ok(SignedBlock {
                    slot: Slot(self.u64_of(self.col(r, 0)?)?),
                    signing_root: self.root_of(self.col(r, 1)?)?,
                })
            })
            .collect()
    }

    fn delete_blocks_below(
        &mut self,
        v: ValidatorId,
        slot: Slot,
    ) -> Result<(u64, Option<Slot>), DbError> {
        self.classic("pruning")?;
        self.lock_validator(v)?;
        let s = i64_of("slot", slot.0)?;
        let row = self
            .query_opt(
                "pruning blocks",
                "WITH gone AS (DELETE FROM signed_blocks WHERE validator_id = $1 AND slot < $2 RETURNING slot)
                 SELECT count(*), max(slot) FROM gone",
                &[&v.0, &s],
            )?
            .ok_or_else(|| self.corrupt("count() answered no row"))?;
        let n: i64 = self.col(&row, 0)?;
        Ok((self.u64_of(n)?, self.opt_u64(&row, 1)?.map(Slot)))
    }

    fn attestation_for_target(
        &mut self,
        v: ValidatorId,
        target: Epoch,
    ) -> Result<Option<SignedAttestation>, DbError> {
        if let Some(a) = &self.ahead {
            return a.attestation_for_target(v.0, target);
        }
        self.lock_validator(v)?;
        let t = i64_of("target epoch", target.0)?;
        self.att_query(
            "SELECT source_epoch, target_epoch, signing_root FROM signed_attestations
             WHERE validator_id = $1 AND target_epoch = $2",
            &[&v.0, &t],
        )
    }

    fn attestation_surrounded_by(
        &mut self,
        v: ValidatorId,
        source: Epoch,
        target: Epoch,
    ) -> Result<Option<SignedAttestation>, DbError> {
        if let Some(a) = &self.ahead {
            return a.surrounded_by(v.0, source, target);
        }
        self.lock_validator(v)?;
        let s = i64_of("source epoch", source.0)?;
        let t = i64_of("target epoch", target.0)?;
        // Ordinary records (source <= target) inside (source, target) by the
        // primary key; the rare inverted imported ones by their partial index.
        self.att_query(
            "(SELECT source_epoch, target_epoch, signing_root FROM signed_attestations
              WHERE validator_id = $1 AND target_epoch > $2 AND target_epoch < $3 AND source_epoch > $2
              LIMIT 1)
             UNION ALL
             (SELECT source_epoch, target_epoch, signing_root FROM signed_attestations
              WHERE validator_id = $1 AND source_epoch > target_epoch AND source_epoch > $2 AND target_epoch < $3
              LIMIT 1)
             LIMIT 1",
            &[&v.0, &s, &t],
        )
    }

    fn attestation_surrounding(
        &mut self,
        v: ValidatorId,
        source: Epoch,
        target: Epoch,
    ) -> Result<Option<SignedAttestation>, DbError> {
        if let Some(a) = &self.ahead {
            return a.surrounding(v.0, source, target);
        }
        self.lock_validator(v)?;
        let s = i64_of("source epoch", source.0)?;
        let t = i64_of("target epoch", target.0)?;
        self.att_query(
            "SELECT source_epoch, target_epoch, signing_root FROM signed_attestations
             WHERE validator_id = $1 AND target_epoch > $3 AND source_epoch < $2
             LIMIT 1",
            &[&v.0, &s, &t],
        )
    }

    fn max_target_epoch(&mut self, v: ValidatorId) -> Result<Option<Epoch>, DbError> {
        self.classic("reading attestations")?;
        self.lock_validator(v)?;
        let row = self
            .query_opt(
                "reading attestations",
                "SELECT max(target_epoch) FROM signed_attestations WHERE validator_id = $1",
                &[&v.0],
            )?
            .ok_or_else(|| self.corrupt("max() answered no row"))?;
        Ok(self.opt_u64(&row, 0)?.map(Epoch))
    }

    fn recount_minimums(&mut self, v: ValidatorId) -> Result<(), DbError> {
        self.classic("pruning")?;
        self.lock_validator(v)?;
        self.execute(
            "recounting low watermarks",
            "UPDATE validators SET
               min_slot = (SELECT min(slot) FROM signed_blocks WHERE validator_id = $1),
               min_source_epoch = (SELECT min(source_epoch) FROM signed_attestations WHERE validator_id = $1),
               min_target_epoch = (SELECT min(target_epoch) FROM signed_attestations WHERE validator_id = $1)
             WHERE id = $1",
            &[&v.0],
        )?;
        Ok(())
    }

    fn insert_attestation(&mut self, v: ValidatorId, a: &SignedAttestation) -> Result<(), DbError> {
        if let Some(ahead) = self.ahead.as_mut() {
            ahead.insert_attestation(v.0, a);
            return Ok(());
        }
        self.lock_validator(v)?;
        let s = i64_of("source epoch", a.source.0)?;
        let t = i64_of("target epoch", a.target.0)?;
        self.execute(
            "recording attestation",
            "INSERT INTO signed_attestations (validator_id, source_epoch, target_epoch, signing_root)
             VALUES ($1, $2, $3, $4)",
            &[&v.0, &s, &t, &root_param(a.signing_root.as_ref())],
        )?;
        Ok(())
    }

    fn merge_attestation(&mut self, v: ValidatorId, a: &SignedAttestation) -> Result<(), DbError> {
        self.classic("importing an attestation")?;
        self.lock_validator(v)?;
        let s = i64_of("source epoch", a.source.0)?;
        let t = i64_of("target epoch", a.target.0)?;
        self.execute(
            "importing attestation",
            "INSERT INTO signed_attestations AS a (validator_id, source_epoch, target_epoch, signing_root)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (validator_id, target_epoch) DO UPDATE SET
               signing_root = CASE WHEN a.signing_root = excluded.signing_root
                                    AND a.source_epoch = excluded.source_epoch
                                   THEN a.signing_root ELSE NULL END,
               source_epoch = GREATEST(a.source_epoch, excluded.source_epoch)",
            &[&v.0, &s, &t, &root_param(a.signing_root.as_ref())],
        )?;
        Ok(())
    }

    fn attestations(&mut self, v: ValidatorId) -> Result<Vec<SignedAttestation>, DbError> {
        self.classic("reading attestations")?;
        let rows = self.query(
            "reading attestations",
            "SELECT source_epoch, target_epoch, signing_root FROM signed_attestations
             WHERE validator_id = $1 ORDER BY target_epoch",
            &[&v.0],
        )?;
        rows.iter().map(|r| self.att_of(r)).collect()
    }

    fn delete_attestations_below(
        &mut self,
        v: ValidatorId,
        target: Epoch,
    ) -> Result<(u64, Option<(Epoch, Epoch)>), DbError> {
        self.classic("pruning")?;
        self.lock_validator(v)?;
        let t = i64_of("target epoch", target.0)?;
        let row = self
            .query_opt(
                "pruning attestations",
                "WITH gone AS (DELETE FROM signed_attestations WHERE validator_id = $1 AND target_epoch < $2
                               RETURNING source_epoch, target_epoch)
                 SELECT count(*), max(source_epoch), max(target_epoch) FROM gone",
                &[&v.0, &t],
            )?
            .ok_or_else(|| self.corrupt("count() answered no row"))?;
        let n: i64 = self.col(&row, 0)?;
        let max = match (self.opt_u64(&row, 1)?, self.opt_u64(&row, 2)?) {
            (Some(s), Some(t)) => Some((Epoch(s), Epoch(t))),
            _ => None,
        };
        Ok((self.u64_of(n)?, max))
    }

    fn message_last(
        &mut self,
        v: ValidatorId,
        lane: Lane,
    ) -> Result<Option<SignedMessage>, DbError> {
        // A batch with Gloas messages is not read ahead (`read_ahead_batch`).
        self.classic("reading Gloas messages")?;
        self.lock_validator(v)?;
        let row = self.query_opt(
            "reading Gloas messages",
            "SELECT slot, signing_root FROM signed_messages WHERE validator_id = $1 AND lane = $2",
            &[&v.0, &(lane.code() as i16)],
        )?;
        row.map(|r| {
            Ok(SignedMessage {
                slot: Slot(self.u64_of(self.col(&r, 0)?)?),
                signing_root: self
                    .root_of(Some(self.col(&r, 1)?))?
                    .ok_or_else(|| self.corrupt("Gloas message without a root"))?,
            })
        })
        .transpose()
    }

    fn message_store(
        &mut self,
        v: ValidatorId,
        lane: Lane,
        m: &SignedMessage,
    ) -> Result<(), DbError> {
        self.classic("recording a Gloas message")?;
        self.lock_validator(v)?;
        let s = i64_of("slot", m.slot.0)?;
        self.execute(
            "recording a Gloas message",
            "INSERT INTO signed_messages (validator_id, lane, slot, signing_root) VALUES ($1, $2, $3, $4)
             ON CONFLICT (validator_id, lane) DO UPDATE SET
               slot = excluded.slot, signing_root = excluded.signing_root",
            &[&v.0, &(lane.code() as i16), &s, &m.signing_root.as_bytes()],
        )?;
        Ok(())
    }

    fn messages_all(&mut self) -> Result<Vec<(BlsPublicKey, Lane, SignedMessage)>, DbError> {
        self.classic("reading Gloas messages")?;
        let rows = self.query(
            "reading Gloas messages",
            "SELECT v.pubkey, m.lane, m.slot, m.signing_root FROM signed_messages m
             JOIN validators v ON v.id = m.validator_id ORDER BY v.pubkey, m.lane",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                let pk: Vec<u8> = self.col(r, 0)?;
                let lane: i16 = self.col(r, 1)?;
                Ok((
                    BlsPublicKey::from_slice(&pk)
                        .ok_or_else(|| self.corrupt("public key of wrong length"))?,
                    Lane::from_code(i64::from(lane))
                        .ok_or_else(|| self.corrupt(format!("unknown lane {lane}")))?,
                    SignedMessage {
                        slot: Slot(self.u64_of(self.col(r, 2)?)?),
                        signing_root: self
                            .root_of(Some(self.col(r, 3)?))?
                            .ok_or_else(|| self.corrupt("Gloas message without a root"))?,
                    },
                ))
            })
            .collect()
    }

    fn cometbft_last(
        &mut self,
        key: &ConsensusKey,
        chain: &ChainId,
    ) -> Result<Option<CometRecord>, DbError> {
        if let Some(a) = &self.ahead {
            return a.cometbft_last(key, chain);
        }
        // The row may not exist yet, so the lock is an advisory one on
        // (key, chain), held until the transaction ends.
        let lock = super::comet_lock_key(key, chain);
        if !self.locked_comet.contains(&lock) {
            self.query(
                "locking CometBFT key",
                "SELECT pg_advisory_xact_lock($1)",
                &[&lock],
            )?;
            self.locked_comet.insert(lock);
        }
        let row = self.query_opt(
            "reading CometBFT state",
            "SELECT height, round, step, sign_bytes, signature FROM cometbft_state
             WHERE consensus_key = $1 AND chain_id = $2",
            &[&key.as_bytes(), &chain.as_str()],
        )?;
        row.map(|r| self.comet_of(&r, 0)).transpose()
    }

    fn cometbft_store(
        &mut self,
        key: &ConsensusKey,
        chain: &ChainId,
        r: &CometRecord,
    ) -> Result<(), DbError> {
        if let Some(a) = self.ahead.as_mut() {
            return a.cometbft_store(key, chain, r);
        }
        let h = i64_of("height", r.hrs.height.0)?;
        let round = i64::from(r.hrs.round);
        let step = i16::try_from(r.hrs.step.as_i64()).unwrap_or(i16::MAX);
        self.execute(
            "recording CometBFT state",
            COMET_STORE,
            &[
                &key.as_bytes(),
                &chain.as_str(),
                &h,
                &round,
                &step,
                &r.sign_bytes,
                &r.signature,
            ],
        )?;
        Ok(())
    }

    fn durability(&mut self) -> Result<Option<super::Durability>, DbError> {
        let d = PostgresEngine::durability(self)?;
        self.check_durability(&d)?;
        Ok(Some(d))
    }

    fn cometbft_all(&mut self) -> Result<Vec<(ConsensusKey, ChainId, CometRecord)>, DbError> {
        self.classic("reading CometBFT state")?;
        let rows = self.query(
            "reading CometBFT state",
            "SELECT consensus_key, chain_id, height, round, step, sign_bytes, signature
             FROM cometbft_state ORDER BY consensus_key, chain_id",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                let k: Vec<u8> = self.col(r, 0)?;
                let c: String = self.col(r, 1)?;
                let key = ConsensusKey::new(k).ok_or_else(|| self.corrupt("bad consensus key"))?;
                let chain = ChainId::new(c).ok_or_else(|| self.corrupt("bad chain id"))?;
                Ok((key, chain, self.comet_of(r, 2)?))
            })
            .collect()
    }
}
