//! The history queries: `impl Engine for SqliteEngine`. Every durable write of
//! the workspace goes through here.
//!
//! One concept: the `Engine` trait for SQLite, one method per question the
//! rules ask, each a prepared statement (the length is the trait's breadth).

use std::path::Path;

use rusqlite::{OptionalExtension, params};

use super::{SqliteEngine, corrupt, root_param, to_i64, to_root, to_u64};
use crate::engine::{Bounds, Engine, ValidatorId, Watermarks};
use crate::error::DbError;
use crate::record::{CometRecord, Lane, SignedAttestation, SignedBlock, SignedMessage};
use crate::types::{
    BlsPublicKey, ChainId, ConsensusKey, Epoch, GenesisRoot, Height, Hrs, Slot, Step,
};

const GENESIS_KEY: &str = "genesis_validators_root";

type RawAtt = (i64, i64, Option<Vec<u8>>);

fn att_row(path: &Path, (s, t, r): RawAtt) -> Result<SignedAttestation, DbError> {
    Ok(SignedAttestation {
        source: Epoch(to_u64(path, s)?),
        target: Epoch(to_u64(path, t)?),
        signing_root: to_root(path, r)?,
    })
}

impl SqliteEngine {
    /// Runs a query returning at most one `(source, target, root)` row.
    fn att_query(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<SignedAttestation>, DbError> {
        let raw: Option<RawAtt> = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut st| {
                st.query_row(params, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(self.err("reading attestations"))?;
        raw.map(|raw| att_row(&self.path, raw)).transpose()
    }
}

impl Engine for SqliteEngine {
    fn begin(&mut self) -> Result<(), DbError> {
        self.exec("beginning transaction", "BEGIN EXCLUSIVE")
    }

    fn commit(&mut self) -> Result<(), DbError> {
        self.exec("committing", "COMMIT")
    }

    fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        self.genesis = None;
        if self.conn.is_autocommit() {
            return Ok(()); // SQLite already rolled back (e.g. after SQLITE_FULL)
        }
        self.exec("rolling back", "ROLLBACK")
    }

    fn savepoint(&mut self) -> Result<(), DbError> {
        self.exec("savepoint", "SAVEPOINT request")
    }

    fn release_savepoint(&mut self) -> Result<(), DbError> {
        self.exec("savepoint", "RELEASE request")
    }

    fn rollback_to_savepoint(&mut self) -> Result<(), DbError> {
        self.genesis = None;
        self.exec("savepoint", "ROLLBACK TO request")?;
        self.exec("savepoint", "RELEASE request")
    }

    fn genesis_root(&mut self) -> Result<Option<GenesisRoot>, DbError> {
        if self.genesis.is_some() {
            return Ok(self.genesis);
        }
        let raw: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .and_then(|mut s| s.query_row([GENESIS_KEY], |r| r.get(0)).optional())
            .map_err(self.err("reading genesis root"))?;
        raw.map(|b| {
            GenesisRoot::from_slice(&b)
                .ok_or_else(|| corrupt(&self.path, "genesis root of wrong length"))
        })
        .transpose()
    }

    fn set_genesis_root(&mut self, root: &GenesisRoot) -> Result<(), DbError> {
        self.conn
            .prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![GENESIS_KEY, root.as_bytes()]))
            .map_err(self.err("pinning genesis root"))?;
        self.genesis = Some(*root);
        Ok(())
    }

    fn meta(&mut self, key: &str) -> Result<Option<Vec<u8>>, DbError> {
        self.conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(self.err("reading meta"))
    }

    fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<(), DbError> {
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut s| s.execute(params![key, value]))
            .map(|_| ())
            .map_err(self.err("writing meta"))
    }

    fn meta_with_prefix(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, DbError> {
        self.conn
            .prepare_cached(
                "SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
            )
            .and_then(|mut s| {
                s.query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(self.err("reading meta"))
    }

    fn validator(&mut self, pubkey: &BlsPublicKey) -> Result<Option<ValidatorId>, DbError> {
        self.conn
            .prepare_cached("SELECT id FROM validators WHERE pubkey = ?1")
            .and_then(|mut s| s.query_row([pubkey.as_bytes()], |r| r.get(0)).optional())
            .map(|id| id.map(ValidatorId))
            .map_err(self.err("reading validator"))
    }

    fn insert_validator(&mut self, pubkey: &BlsPublicKey) -> Result<ValidatorId, DbError> {
        self.conn
            .prepare_cached("INSERT INTO validators (pubkey) VALUES (?1) RETURNING id")
            .and_then(|mut s| s.query_row([pubkey.as_bytes()], |r| r.get(0)))
            .map(ValidatorId)
            .map_err(self.err("registering validator"))
    }

    fn validators(&mut self) -> Result<Vec<(ValidatorId, BlsPublicKey)>, DbError> {
        let rows: Vec<(i64, Vec<u8>)> = self
            .conn
            .prepare_cached("SELECT id, pubkey FROM validators ORDER BY pubkey")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(self.err("listing validators"))?;
        rows.into_iter()
            .map(|(id, pk)| {
                let pk = BlsPublicKey::from_slice(&pk)
                    .ok_or_else(|| corrupt(&self.path, "public key of wrong length"))?;
                Ok((ValidatorId(id), pk))
            })
            .collect()
    }

    fn bounds(&mut self, v: ValidatorId) -> Result<Bounds, DbError> {
        type Raw = [Option<i64>; 6];
        let raw: Raw = self
            .conn
            .prepare_cached(
                "SELECT min_slot, min_source_epoch, min_target_epoch, slot_wm, source_epoch_wm, target_epoch_wm
                 FROM validators WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([v.0], |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?]))
            })
            .map_err(self.err("reading low watermarks"))?;
        let p = &self.path;
        let n = |x: Option<i64>| x.map(|x| to_u64(p, x)).transpose();
        let [
            min_slot,
            min_source,
            min_target,
            slot_wm,
            source_wm,
            target_wm,
        ] = raw;
        Ok(Bounds {
            min_slot: n(min_slot)?.map(Slot),
            min_source: n(min_source)?.map(Epoch),
            min_target: n(min_target)?.map(Epoch),
            watermarks: Watermarks {
                block_slot: n(slot_wm)?.map(Slot),
                source_epoch: n(source_wm)?.map(Epoch),
                target_epoch: n(target_wm)?.map(Epoch),
            },
        })
    }

    fn set_watermarks(&mut self, v: ValidatorId, w: &Watermarks) -> Result<(), DbError> {
        let b = w.block_slot.map(|x| to_i64("slot", x.0)).transpose()?;
        let s = w
            .source_epoch
            .map(|x| to_i64("source epoch", x.0))
            .transpose()?;
        let t = w
            .target_epoch
            .map(|x| to_i64("target epoch", x.0))
            .transpose()?;
        self.conn
            .prepare_cached(
                "UPDATE validators SET slot_wm = ?2, source_epoch_wm = ?3, target_epoch_wm = ?4 WHERE id = ?1",
            )
            .and_then(|mut st| st.execute(params![v.0, b, s, t]))
            .map_err(self.err("writing watermarks"))?;
        Ok(())
    }

    fn block_at(&mut self, v: ValidatorId, slot: Slot) -> Result<Option<SignedBlock>, DbError> {
        let s = to_i64("slot", slot.0)?;
        let raw: Option<Option<Vec<u8>>> = self
            .conn
            .prepare_cached(
                "SELECT signing_root FROM signed_blocks WHERE validator_id = ?1 AND slot = ?2",
            )
            .and_then(|mut st| st.query_row(params![v.0, s], |r| r.get(0)).optional())
            .map_err(self.err("reading blocks"))?;
        raw.map(|r| {
            Ok(SignedBlock {
                slot,
                signing_root: to_root(&self.path, r)?,
            })
        })
        .transpose()
    }

    fn max_block_slot(&mut self, v: ValidatorId) -> Result<Option<Slot>, DbError> {
        let hi = self.one(
            "reading blocks",
            "SELECT max(slot) FROM signed_blocks WHERE validator_id = +?1",
            v,
        )?;
        hi.map(|x| to_u64(&self.path, x).map(Slot)).transpose()
    }

    fn insert_block(&mut self, v: ValidatorId, b: &SignedBlock) -> Result<(), DbError> {
        let s = to_i64("slot", b.slot.0)?;
        self.conn
            .prepare_cached(
                "INSERT INTO signed_blocks (validator_id, slot, signing_root) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut st| st.execute(params![v.0, s, root_param(b.signing_root.as_ref())]))
            .map_err(self.err("recording block"))?;
        Ok(())
    }

    fn merge_block(&mut self, v: ValidatorId, b: &SignedBlock) -> Result<(), DbError> {
        let s = to_i64("slot", b.slot.0)?;
        self.conn
            .prepare_cached(
                "INSERT INTO signed_blocks (validator_id, slot, signing_root) VALUES (?1, ?2, ?3)
                 ON CONFLICT (validator_id, slot) DO UPDATE SET signing_root =
                   CASE WHEN signing_root = excluded.signing_root THEN signing_root ELSE NULL END",
            )
            .and_then(|mut st| st.execute(params![v.0, s, root_param(b.signing_root.as_ref())]))
            .map_err(self.err("importing block"))?;
        Ok(())
    }

    fn blocks(&mut self, v: ValidatorId) -> Result<Vec<SignedBlock>, DbError> {
        let rows: Vec<(i64, Option<Vec<u8>>)> = self
            .conn
            .prepare_cached("SELECT slot, signing_root FROM signed_blocks WHERE validator_id = ?1 ORDER BY slot")
            .and_then(|mut st| st.query_map([v.0], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(self.err("reading blocks"))?;
        rows.into_iter()
            .map(|(s, r)| {
                Ok(SignedBlock {
                    slot: Slot(to_u64(&self.path, s)?),
                    signing_root: to_root(&self.path, r)?,
                })
            })
            .collect()
    }

    fn delete_blocks_below(
        &mut self,
        v: ValidatorId,
        slot: Slot,
    ) -> Result<(u64, Option<Slot>), DbError> {
        let s = to_i64("slot", slot.0)?;
        let max: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT max(slot) FROM signed_blocks WHERE validator_id = ?1 AND slot < ?2",
            )
            .and_then(|mut st| st.query_row(params![v.0, s], |r| r.get(0)))
            .map_err(self.err("pruning blocks"))?;
        let n = self
            .conn
            .prepare_cached("DELETE FROM signed_blocks WHERE validator_id = ?1 AND slot < ?2")
            .and_then(|mut st| st.execute(params![v.0, s]))
            .map_err(self.err("pruning blocks"))?;
        Ok((
            n as u64,
            max.map(|m| to_u64(&self.path, m).map(Slot)).transpose()?,
        ))
    }

    fn attestation_for_target(
        &mut self,
        v: ValidatorId,
        target: Epoch,
    ) -> Result<Option<SignedAttestation>, DbError> {
        let t = to_i64("target epoch", target.0)?;
        self.att_query(
            "SELECT source_epoch, target_epoch, signing_root FROM signed_attestations
             WHERE validator_id = ?1 AND target_epoch = ?2",
            params![v.0, t],
        )
    }

    fn attestation_surrounded_by(
        &mut self,
        v: ValidatorId,
        source: Epoch,
        target: Epoch,
    ) -> Result<Option<SignedAttestation>, DbError> {
        // An ordinary record (source <= target) that the new vote surrounds has
        // its target inside (source, target): a short index range. Imported
        // records with source > target are checked through their own index.
        let found = self.att_query(
            "SELECT source_epoch, target_epoch, signing_root FROM signed_attestations
             WHERE validator_id = ?1 AND target_epoch > ?2 AND target_epoch < ?3 AND source_epoch > ?2
             LIMIT 1",
            params![v.0, to_i64("source epoch", source.0)?, to_i64("target epoch", target.0)?],
        )?;
        if found.is_some() {
            return Ok(found);
        }
        self.att_query(
            // Without INDEXED BY the planner walks the primary key over every
            // target below ?3, which is the whole history.
            "SELECT source_epoch, target_epoch, signing_root FROM signed_attestations
             INDEXED BY signed_attestations_inverted
             WHERE validator_id = ?1 AND source_epoch > target_epoch AND source_epoch > ?2 AND target_epoch < ?3
             LIMIT 1",
            params![v.0, to_i64("source epoch", source.0)?, to_i64("target epoch", target.0)?],
        )
    }

    fn attestation_surrounding(
        &mut self,
        v: ValidatorId,
        source: Epoch,
        target: Epoch,
    ) -> Result<Option<SignedAttestation>, DbError> {
        self.att_query(
            "SELECT source_epoch, target_epoch, signing_root FROM signed_attestations
             WHERE validator_id = ?1 AND target_epoch > ?3 AND source_epoch < ?2
             LIMIT 1",
            params![
                v.0,
                to_i64("source epoch", source.0)?,
                to_i64("target epoch", target.0)?
            ],
        )
    }

    fn max_target_epoch(&mut self, v: ValidatorId) -> Result<Option<Epoch>, DbError> {
        let hi = self.one(
            "reading attestations",
            "SELECT max(target_epoch) FROM signed_attestations WHERE validator_id = +?1",
            v,
        )?;
        hi.map(|x| to_u64(&self.path, x).map(Epoch)).transpose()
    }

    fn recount_minimums(&mut self, v: ValidatorId) -> Result<(), DbError> {
        self.conn
            .prepare_cached(
                "UPDATE validators SET
                   min_slot = (SELECT min(slot) FROM signed_blocks WHERE validator_id = ?1),
                   min_source_epoch = (SELECT min(source_epoch) FROM signed_attestations WHERE validator_id = ?1),
                   min_target_epoch = (SELECT min(target_epoch) FROM signed_attestations WHERE validator_id = ?1)
                 WHERE id = ?1",
            )
            .and_then(|mut st| st.execute([v.0]))
            .map_err(self.err("recounting low watermarks"))?;
        Ok(())
    }

    fn insert_attestation(&mut self, v: ValidatorId, a: &SignedAttestation) -> Result<(), DbError> {
        let s = to_i64("source epoch", a.source.0)?;
        let t = to_i64("target epoch", a.target.0)?;
        self.conn
            .prepare_cached(
                "INSERT INTO signed_attestations (validator_id, source_epoch, target_epoch, signing_root) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut st| st.execute(params![v.0, s, t, root_param(a.signing_root.as_ref())]))
            .map_err(self.err("recording attestation"))?;
        Ok(())
    }

    fn merge_attestation(&mut self, v: ValidatorId, a: &SignedAttestation) -> Result<(), DbError> {
        let s = to_i64("source epoch", a.source.0)?;
        let t = to_i64("target epoch", a.target.0)?;
        self.conn
            .prepare_cached(
                "INSERT INTO signed_attestations (validator_id, source_epoch, target_epoch, signing_root) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (validator_id, target_epoch) DO UPDATE SET
                   signing_root = CASE WHEN signing_root = excluded.signing_root
                                        AND source_epoch = excluded.source_epoch
                                       THEN signing_root ELSE NULL END,
                   source_epoch = max(source_epoch, excluded.source_epoch)",
            )
            .and_then(|mut st| st.execute(params![v.0, s, t, root_param(a.signing_root.as_ref())]))
            .map_err(self.err("importing attestation"))?;
        Ok(())
    }

    fn attestations(&mut self, v: ValidatorId) -> Result<Vec<SignedAttestation>, DbError> {
        let rows: Vec<RawAtt> = self
            .conn
            .prepare_cached(
                "SELECT source_epoch, target_epoch, signing_root FROM signed_attestations WHERE validator_id = ?1 ORDER BY target_epoch",
            )
            .and_then(|mut st| st.query_map([v.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
            .map_err(self.err("reading attestations"))?;
        rows.into_iter()
            .map(|raw| att_row(&self.path, raw))
            .collect()
    }

    fn delete_attestations_below(
        &mut self,
        v: ValidatorId,
        target: Epoch,
    ) -> Result<(u64, Option<(Epoch, Epoch)>), DbError> {
        let t = to_i64("target epoch", target.0)?;
        let raw: (Option<i64>, Option<i64>) = self
            .conn
            .prepare_cached(
                "SELECT max(source_epoch), max(target_epoch) FROM signed_attestations WHERE validator_id = ?1 AND target_epoch < ?2",
            )
            .and_then(|mut st| st.query_row(params![v.0, t], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(self.err("pruning attestations"))?;
        let n = self
            .conn
            .prepare_cached(
                "DELETE FROM signed_attestations WHERE validator_id = ?1 AND target_epoch < ?2",
            )
            .and_then(|mut st| st.execute(params![v.0, t]))
            .map_err(self.err("pruning attestations"))?;
        let p = &self.path;
        let max = match raw {
            (Some(s), Some(t)) => Some((Epoch(to_u64(p, s)?), Epoch(to_u64(p, t)?))),
            _ => None,
        };
        Ok((n as u64, max))
    }

    fn message_last(
        &mut self,
        v: ValidatorId,
        lane: Lane,
    ) -> Result<Option<SignedMessage>, DbError> {
        let raw: Option<(i64, Vec<u8>)> = self
            .conn
            .prepare_cached(
                "SELECT slot, signing_root FROM signed_messages WHERE validator_id = ?1 AND lane = ?2",
            )
            .and_then(|mut st| {
                st.query_row(params![v.0, lane.code()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(self.err("reading Gloas messages"))?;
        raw.map(|(slot, root)| {
            Ok(SignedMessage {
                slot: Slot(to_u64(&self.path, slot)?),
                signing_root: to_root(&self.path, Some(root))?
                    .ok_or_else(|| corrupt(&self.path, "Gloas message without a root"))?,
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
        let s = to_i64("slot", m.slot.0)?;
        self.conn
            .prepare_cached(
                "INSERT INTO signed_messages (validator_id, lane, slot, signing_root) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (validator_id, lane) DO UPDATE SET
                   slot = excluded.slot, signing_root = excluded.signing_root",
            )
            .and_then(|mut st| st.execute(params![v.0, lane.code(), s, m.signing_root.as_bytes()]))
            .map_err(self.err("recording a Gloas message"))?;
        Ok(())
    }

    fn messages_all(&mut self) -> Result<Vec<(BlsPublicKey, Lane, SignedMessage)>, DbError> {
        type Raw = (Vec<u8>, i64, i64, Vec<u8>);
        let raw: Vec<Raw> = self
            .conn
            .prepare_cached(
                "SELECT v.pubkey, m.lane, m.slot, m.signing_root FROM signed_messages m
                 JOIN validators v ON v.id = m.validator_id ORDER BY v.pubkey, m.lane",
            )
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.err("reading Gloas messages"))?;
        raw.into_iter()
            .map(|(pk, lane, slot, root)| {
                Ok((
                    BlsPublicKey::from_slice(&pk)
                        .ok_or_else(|| corrupt(&self.path, "public key of wrong length"))?,
                    Lane::from_code(lane)
                        .ok_or_else(|| corrupt(&self.path, format!("unknown lane {lane}")))?,
                    SignedMessage {
                        slot: Slot(to_u64(&self.path, slot)?),
                        signing_root: to_root(&self.path, Some(root))?
                            .ok_or_else(|| corrupt(&self.path, "Gloas message without a root"))?,
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
        type Raw = (i64, i64, i64, Vec<u8>, Option<Vec<u8>>);
        let raw: Option<Raw> = self
            .conn
            .prepare_cached(
                "SELECT height, round, step, sign_bytes, signature FROM cometbft_state WHERE consensus_key = ?1 AND chain_id = ?2",
            )
            .and_then(|mut st| {
                st.query_row(params![key.as_bytes(), chain.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()
            })
            .map_err(self.err("reading CometBFT state"))?;
        raw.map(|raw| comet_record(&self.path, raw)).transpose()
    }

    fn cometbft_store(
        &mut self,
        key: &ConsensusKey,
        chain: &ChainId,
        r: &CometRecord,
    ) -> Result<(), DbError> {
        let h = to_i64("height", r.hrs.height.0)?;
        self.conn
            .prepare_cached(
                "INSERT INTO cometbft_state (consensus_key, chain_id, height, round, step, sign_bytes, signature)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (consensus_key, chain_id) DO UPDATE SET
                   height = excluded.height, round = excluded.round, step = excluded.step,
                   sign_bytes = excluded.sign_bytes, signature = excluded.signature",
            )
            .and_then(|mut st| {
                st.execute(params![
                    key.as_bytes(),
                    chain.as_str(),
                    h,
                    i64::from(r.hrs.round),
                    r.hrs.step.as_i64(),
                    r.sign_bytes,
                    r.signature
                ])
            })
            .map_err(self.err("recording CometBFT state"))?;
        Ok(())
    }

    fn cometbft_all(&mut self) -> Result<Vec<(ConsensusKey, ChainId, CometRecord)>, DbError> {
        type Raw = (Vec<u8>, String, i64, i64, i64, Vec<u8>, Option<Vec<u8>>);
        let rows: Vec<Raw> = self
            .conn
            .prepare_cached(
                "SELECT consensus_key, chain_id, height, round, step, sign_bytes, signature FROM cometbft_state ORDER BY consensus_key, chain_id",
            )
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))?
                    .collect()
            })
            .map_err(self.err("reading CometBFT state"))?;
        rows.into_iter()
            .map(|(k, c, h, r, s, b, sig)| {
                let key =
                    ConsensusKey::new(k).ok_or_else(|| corrupt(&self.path, "bad consensus key"))?;
                let chain = ChainId::new(c).ok_or_else(|| corrupt(&self.path, "bad chain id"))?;
                Ok((key, chain, comet_record(&self.path, (h, r, s, b, sig))?))
            })
            .collect()
    }
}

fn comet_record(
    path: &Path,
    (h, r, s, b, sig): (i64, i64, i64, Vec<u8>, Option<Vec<u8>>),
) -> Result<CometRecord, DbError> {
    Ok(CometRecord {
        hrs: Hrs {
            height: Height(to_u64(path, h)?),
            round: u32::try_from(r).map_err(|_| corrupt(path, "round out of range"))?,
            step: Step::from_i64(s).ok_or_else(|| corrupt(path, "unknown step"))?,
        },
        sign_bytes: b,
        signature: sig,
    })
}
