//! Deciding a group-commit batch in one or two round trips.
//!
//! Asked one question at a time, a decision over the network costs a round
//! trip per question (begin, lock, bounds, same target, surrounded,
//! surrounding, insert, commit: eight). Two paths replace that:
//!
//! - **Assumed (one round trip), the common case.** A batch is decided
//!   against assumed facts — for Ethereum nothing recorded in the way and
//!   bounds below, for CometBFT nothing stored at or above the new position
//!   — which is what a validator signing forward meets. The commit sends, in
//!   one pipeline, `BEGIN`, the row locks of the batch's validators (`FOR
//!   UPDATE`, in id order, so instances never deadlock on each other), the
//!   CometBFT advisory locks (in key order), one multi-row insert per table
//!   (one upsert per CometBFT key) whose every row checks (`signer_expect`,
//!   schema v2) that the assumed facts hold in the database, and `COMMIT`. If any does not, the server aborts the whole
//!   transaction, the writer decides the batch again, and the next attempt
//!   reads. A batch in which an assumed fact led to a refusal or a repeat is
//!   not sent at all: it is decided again from what was read.
//! - **Read (two round trips).** After an assumption failed, the next batch
//!   reads: [`PostgresEngine::read_ahead_batch`] sends,
//!   in one pipeline, `BEGIN`, the validator row locks, the CometBFT advisory
//!   locks (in key order), and one set-valued query per kind of fact the
//!   rules will ask for. Statements run in order, each with a fresh READ
//!   COMMITTED snapshot, so every fact is read after its lock is held. The
//!   commit sends the writes and `COMMIT` in a second pipeline.
//!
//! Either way the rules run unchanged against [`Ahead`], and the commit
//! checks every answer before reporting success.
//!
//! One file because it is one concept, the batch's one or two round trips:
//! the SQL of each step and the code that builds and reads it are kept
//! side by side so that the assumed facts (the `EXPECT_*` statements) can be
//! read against the questions they replace.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use super::PostgresEngine;
use super::ahead::{Ahead, Surrounds, Write, not_read};
use super::pipeline::{BEGIN, Step, boxed};
use crate::engine::{Bounds, Watermarks};
use crate::error::DbError;
use crate::record::{CometRecord, Proposal, SignedBlock};
use crate::types::{BlsPublicKey, ChainId, ConsensusKey, Epoch, GenesisRoot, Slot};

const REGISTER: &str =
    "INSERT INTO validators (pubkey) SELECT p FROM unnest($1::bytea[]) AS p ORDER BY p
     ON CONFLICT (pubkey) DO NOTHING";
const IDS: &str = "SELECT id, pubkey FROM validators WHERE pubkey = ANY($1::bytea[])";
const LOCK: &str = "SELECT id, min_slot, min_source_epoch, min_target_epoch, slot_wm, source_epoch_wm, target_epoch_wm
     FROM validators WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE";
/// Lateral subqueries with `LIMIT` (here and below) keep every probe an index
/// lookup per requested row: a plain join may be planned as a hash join over
/// the whole table.
const BLOCKS: &str = "SELECT q.v, q.s, b.signing_root
     FROM unnest($1::bigint[], $2::bigint[]) AS q(v, s)
     CROSS JOIN LATERAL (SELECT signing_root FROM signed_blocks
                         WHERE validator_id = q.v AND slot = q.s LIMIT 1) AS b";
const TARGETS: &str = "SELECT q.v, a.source_epoch, a.target_epoch, a.signing_root
     FROM unnest($1::bigint[], $2::bigint[]) AS q(v, t)
     CROSS JOIN LATERAL (SELECT source_epoch, target_epoch, signing_root FROM signed_attestations
                         WHERE validator_id = q.v AND target_epoch = q.t LIMIT 1) AS a";
/// Kind 1: a record the new attestation surrounds (ordinary records by the
/// primary key, inverted imported ones by their partial index); kind 2: a
/// record that surrounds it. One witness of each is enough.
const SURROUNDS: &str = "SELECT q.v, q.s, q.t, w.kind, w.source_epoch, w.target_epoch, w.signing_root
     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS q(v, s, t)
     CROSS JOIN LATERAL (
       (SELECT 1 AS kind, source_epoch, target_epoch, signing_root FROM signed_attestations
        WHERE validator_id = q.v AND target_epoch > q.s AND target_epoch < q.t AND source_epoch > q.s LIMIT 1)
       UNION ALL
       (SELECT 1, source_epoch, target_epoch, signing_root FROM signed_attestations
        WHERE validator_id = q.v AND source_epoch > target_epoch AND source_epoch > q.s AND target_epoch < q.t
        LIMIT 1)
       UNION ALL
       (SELECT 2, source_epoch, target_epoch, signing_root FROM signed_attestations
        WHERE validator_id = q.v AND target_epoch > q.t AND source_epoch < q.s LIMIT 1)
     ) AS w";
/// Rows come out of `unnest` in array order, so the locks are taken in the
/// (sorted) order of the array.
const COMET_LOCK: &str = "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k";
const COMET_STATE: &str = "SELECT q.k, q.c, s.height, s.round, s.step, s.sign_bytes, s.signature
     FROM unnest($1::bytea[], $2::text[]) AS q(k, c)
     CROSS JOIN LATERAL (SELECT height, round, step, sign_bytes, signature FROM cometbft_state
                         WHERE consensus_key = q.k AND chain_id = q.c LIMIT 1) AS s";
/// The assumed path's writes: each row is written only if the facts the
/// rules were given (nothing at this slot, bounds below it) hold, read in
/// this statement's snapshot, after the batch's locks; otherwise
/// `signer_expect` raises and the whole transaction aborts. Each check is a
/// scalar subquery, not `NOT EXISTS`: the planner may turn `NOT EXISTS` into
/// a hashed subplan that reads the whole table (seen here with fresh
/// statistics: every batch scanned every attestation). Rows written
/// earlier in the same statement are not seen (statement snapshot): the rules
/// already weighed the batch's own messages against each other.
const EXPECT_BLOCKS: &str = "INSERT INTO signed_blocks (validator_id, slot, signing_root)
     SELECT q.v, q.s, q.r FROM unnest($1::bigint[], $2::bigint[], $3::bytea[]) AS q(v, s, r)
     WHERE signer_expect(
       (SELECT coalesce(w.slot_wm, -1) < q.s AND coalesce(w.min_slot, -1) < q.s
        FROM validators w WHERE w.id = q.v)
       AND (SELECT 1 FROM signed_blocks b WHERE b.validator_id = q.v AND b.slot = q.s) IS NULL,
       'block')";
/// The facts of [`TARGETS`] and [`SURROUNDS`] all empty, and the bounds
/// below the new attestation, as `check_attestation` reads them.
const EXPECT_ATTESTATIONS: &str =
    "INSERT INTO signed_attestations (validator_id, source_epoch, target_epoch, signing_root)
     SELECT q.v, q.s, q.t, q.r FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[]) AS q(v, s, t, r)
     WHERE signer_expect(
       (SELECT coalesce(w.source_epoch_wm, 0) <= q.s AND coalesce(w.min_source_epoch, 0) <= q.s
           AND coalesce(w.target_epoch_wm, -1) < q.t AND coalesce(w.min_target_epoch, -1) < q.t
        FROM validators w WHERE w.id = q.v)
       AND (SELECT 1 FROM signed_attestations a
            WHERE a.validator_id = q.v AND a.target_epoch = q.t) IS NULL
       AND (SELECT 1 FROM signed_attestations a
            WHERE a.validator_id = q.v AND a.target_epoch > q.s AND a.target_epoch < q.t
              AND a.source_epoch > q.s LIMIT 1) IS NULL
       AND (SELECT 1 FROM signed_attestations a
            WHERE a.validator_id = q.v AND a.source_epoch > a.target_epoch
              AND a.source_epoch > q.s AND a.target_epoch < q.t LIMIT 1) IS NULL
       AND (SELECT 1 FROM signed_attestations a
            WHERE a.validator_id = q.v AND a.target_epoch > q.t AND a.source_epoch < q.s LIMIT 1) IS NULL,
       'attestation')";
/// The CometBFT record of a key, written only if nothing is stored at or
/// above the position the batch's first record for that key assumed free
/// ($8, $9, $10): the rules were told there was no record.
const EXPECT_COMET: &str = "INSERT INTO cometbft_state AS s (consensus_key, chain_id, height, round, step, sign_bytes, signature)
     SELECT $1::bytea, $2::text, $3::bigint, $4::bigint, $5::smallint, $6::bytea, $7::bytea
     WHERE signer_expect(
       (SELECT 1 FROM cometbft_state o WHERE o.consensus_key = $1::bytea AND o.chain_id = $2::text
          AND (o.height, o.round, o.step) >= ($8::bigint, $9::bigint, $10::smallint)) IS NULL,
       'CometBFT')
     ON CONFLICT (consensus_key, chain_id) DO UPDATE SET
       height = excluded.height, round = excluded.round, step = excluded.step,
       sign_bytes = excluded.sign_bytes, signature = excluded.signature";
const INSERT_BLOCKS: &str = "INSERT INTO signed_blocks (validator_id, slot, signing_root)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])";
const INSERT_ATTESTATIONS: &str =
    "INSERT INTO signed_attestations (validator_id, source_epoch, target_epoch, signing_root)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[])";

fn i64_of(what: &'static str, v: u64) -> Result<i64, DbError> {
    i64::try_from(v).map_err(|_| DbError::OutOfRange { what, value: v })
}

impl PostgresEngine {
    /// Before the network is pinned a batch is decided question by question,
    /// and that path takes its locks in the order the requests ask: two
    /// instances deciding their first batches at once took a validator row
    /// and a CometBFT key crosswise and deadlocked (seen in the three-instance
    /// race test). So such a batch first takes an advisory lock that only
    /// these batches take (which serialises them), then its CometBFT locks in
    /// key order — the order of every other batch — and reads the pin again,
    /// all in one round trip. Still unpinned: no batch that needs the pin can
    /// be running elsewhere, and the rules run under those locks. Pinned
    /// meanwhile (the pinner committed): the transaction is left, releasing
    /// the locks, and the batch takes the ordinary path — which registers
    /// new validators in statements that commit on their own, since their
    /// ids are cached for good (registered inside a transaction that a crash
    /// then aborted, they were cached but gone: "a registered validator
    /// vanished" on every batch until restart). Answers the pinned root.
    fn serialise_unpinned(&mut self, batch: &[&Proposal]) -> Result<Option<GenesisRoot>, DbError> {
        let mut locks: Vec<i64> = batch
            .iter()
            .filter_map(|p| match p {
                Proposal::CometBft(c) => Some(super::comet_lock_key(c.key(), c.chain_id())),
                _ => None,
            })
            .collect();
        locks.sort_unstable();
        locks.dedup();
        let mut steps = Vec::new();
        if std::mem::take(&mut self.begin_pending) {
            steps.push(Step::Control(BEGIN));
        }
        let pin = super::lock_key(b"pinning the network", &[]);
        steps.push(Step::Prepared(
            self.statement(COMET_LOCK)?,
            vec![boxed(vec![pin])],
        ));
        if !locks.is_empty() {
            steps.push(Step::Prepared(
                self.statement(COMET_LOCK)?,
                vec![boxed(locks.clone())],
            ));
        }
        steps.push(Step::Prepared(
            self.statement(super::history::GENESIS)?,
            vec![boxed(super::history::GENESIS_KEY)],
        ));
        let answers = self.run_steps("waiting to pin the network", &steps)?;
        match answers.last().and_then(|rows| rows.first()) {
            None => {
                self.locked_comet.extend(locks);
                Ok(None)
            }
            Some(row) => {
                let root = self.genesis_of(row)?;
                self.genesis = Some(root);
                self.batch("leaving the pin lock", "ROLLBACK")?;
                self.begin_pending = true;
                Ok(Some(root))
            }
        }
    }

    /// See the module documentation. Declines (leaving the batch to the
    /// question-by-question path) only when an Ethereum request arrives
    /// before the network is pinned: pinning is a write the rules make.
    pub(super) fn read_ahead_batch(&mut self, batch: &[&Proposal]) -> Result<(), DbError> {
        self.ahead = None;
        let has_eth = batch.iter().any(|p| !matches!(p, Proposal::CometBft(_)));
        let genesis = if has_eth {
            // Read outside the batch's transaction (BEGIN not sent yet), so
            // the transaction's first statements are its locks.
            match self.without_begin(crate::engine::Engine::genesis_root)? {
                Some(g) => Some(g),
                None => match self.serialise_unpinned(batch)? {
                    Some(g) => Some(g),
                    None => return Ok(()),
                },
            }
        } else {
            None
        };
        let on_network = |g: &GenesisRoot| Some(*g) == genesis;
        let mut pubkeys: Vec<BlsPublicKey> = batch
            .iter()
            .filter_map(|p| match p {
                Proposal::Block(b) if on_network(&b.genesis_root) => Some(b.pubkey),
                Proposal::Attestation(a) if on_network(&a.genesis_root) => Some(a.pubkey),
                Proposal::Message(m) if on_network(&m.genesis_root) => Some(m.pubkey),
                _ => None,
            })
            .collect();
        pubkeys.sort_unstable();
        pubkeys.dedup();
        self.register(&pubkeys)?;
        if batch.iter().any(|p| matches!(p, Proposal::Message(_))) {
            return self.lock_for_questions(&pubkeys, batch);
        }

        let mut ahead = Ahead::default();
        for pk in &pubkeys {
            let id = *self
                .ids
                .get(pk)
                .ok_or_else(|| not_read("a registered validator"))?;
            ahead.ids.insert(*pk, id);
        }
        let mut ids: Vec<i64> = ahead.ids.values().copied().collect();
        ids.sort_unstable();

        // What the rules will ask about: one entry per question, the answer
        // not yet known (`None`: nothing recorded, unless read otherwise).
        let mut comet_keys: Vec<(ConsensusKey, ChainId)> = Vec::new();
        for p in batch {
            match p {
                Proposal::Block(b) => {
                    if let Some(&v) = ahead.ids.get(&b.pubkey) {
                        ahead.blocks.insert((v, b.slot.0), None);
                        ahead.proposals += 1;
                    }
                }
                Proposal::Attestation(a) => {
                    if let Some(&v) = ahead.ids.get(&a.pubkey) {
                        ahead.targets.insert((v, a.target.0), None);
                        ahead
                            .surrounds
                            .insert((v, a.source.0, a.target.0), Surrounds::default());
                        ahead.proposals += 1;
                    }
                }
                Proposal::CometBft(c) => {
                    comet_keys.push((c.key().clone(), c.chain_id().clone()));
                    ahead.proposals += 1;
                }
                // Batches with these returned above.
                Proposal::Message(_) => {}
            }
        }
        if !std::mem::take(&mut self.read_next) {
            // The common case: nothing recorded in the way (for CometBFT:
            // nothing at or above the new position). Assume it (no round
            // trip here); the writes check it under the locks.
            for v in &ids {
                ahead.bounds.insert(*v, Bounds::default());
            }
            for key in comet_keys {
                ahead.comet.insert(key, None);
            }
            ahead.assumed = true;
            self.ahead = Some(ahead);
            return Ok(());
        }
        // The questions as arrays, one per query.
        let (mut bv, mut bs) = (Vec::new(), Vec::new());
        for &(v, slot) in ahead.blocks.keys() {
            bv.push(v);
            bs.push(i64_of("slot", slot)?);
        }
        let (mut tv, mut tt) = (Vec::new(), Vec::new());
        for &(v, target) in ahead.targets.keys() {
            tv.push(v);
            tt.push(i64_of("target epoch", target)?);
        }
        let (mut sv, mut ss, mut st) = (Vec::new(), Vec::new(), Vec::new());
        for &(v, source, target) in ahead.surrounds.keys() {
            sv.push(v);
            ss.push(i64_of("source epoch", source)?);
            st.push(i64_of("target epoch", target)?);
        }
        let mut locks: Vec<i64> = comet_keys
            .iter()
            .map(|(k, c)| super::comet_lock_key(k, c))
            .collect();
        locks.sort_unstable();
        locks.dedup();
        comet_keys.sort_unstable();
        comet_keys.dedup();

        // Statement order is lock order: validators (by id), then CometBFT
        // keys (by lock key), each before the facts it guards.
        let mut steps = Vec::new();
        let mut slots = [None; 6];
        let mut add = |slot: usize,
                       steps: &mut Vec<Step>,
                       st: Statement,
                       params: Vec<Box<dyn ToSql + Sync>>| {
            if let Some(s) = slots.get_mut(slot) {
                *s = Some(steps.len());
            }
            steps.push(Step::Prepared(st, params));
        };
        if self.begin_pending {
            steps.push(Step::Control(BEGIN));
        }
        if !ids.is_empty() {
            add(0, &mut steps, self.statement(LOCK)?, vec![boxed(ids)]);
        }
        if !bv.is_empty() {
            add(
                1,
                &mut steps,
                self.statement(BLOCKS)?,
                vec![boxed(bv), boxed(bs)],
            );
        }
        if !tv.is_empty() {
            add(
                2,
                &mut steps,
                self.statement(TARGETS)?,
                vec![boxed(tv), boxed(tt)],
            );
            add(
                3,
                &mut steps,
                self.statement(SURROUNDS)?,
                vec![boxed(sv), boxed(ss), boxed(st)],
            );
        }
        if !locks.is_empty() {
            add(
                4,
                &mut steps,
                self.statement(COMET_LOCK)?,
                vec![boxed(locks)],
            );
            let keys: Vec<Vec<u8>> = comet_keys
                .iter()
                .map(|(k, _)| k.as_bytes().to_vec())
                .collect();
            let chains: Vec<String> = comet_keys
                .iter()
                .map(|(_, c)| c.as_str().to_owned())
                .collect();
            add(
                5,
                &mut steps,
                self.statement(COMET_STATE)?,
                vec![boxed(keys), boxed(chains)],
            );
        }
        for key in comet_keys {
            ahead.comet.insert(key, None);
        }
        if steps.is_empty() {
            self.ahead = Some(ahead);
            return Ok(());
        }
        self.begin_pending = false;
        let mut answers = self.run_steps("reading history ahead", &steps)?;
        let mut take = |slot: usize| -> Vec<Row> {
            slots
                .get(slot)
                .copied()
                .flatten()
                .and_then(|i| answers.get_mut(i))
                .map(std::mem::take)
                .unwrap_or_default()
        };
        let (locked, blocks, targets, surrounds, comet) =
            (take(0), take(1), take(2), take(3), take(5));

        for row in &locked {
            let v: i64 = self.col(row, 0)?;
            ahead.bounds.insert(
                v,
                Bounds {
                    min_slot: self.opt_u64(row, 1)?.map(Slot),
                    min_source: self.opt_u64(row, 2)?.map(Epoch),
                    min_target: self.opt_u64(row, 3)?.map(Epoch),
                    watermarks: Watermarks {
                        block_slot: self.opt_u64(row, 4)?.map(Slot),
                        source_epoch: self.opt_u64(row, 5)?.map(Epoch),
                        target_epoch: self.opt_u64(row, 6)?.map(Epoch),
                    },
                },
            );
        }
        if ahead.bounds.len() != ahead.ids.len() {
            return Err(self.corrupt("a registered validator vanished"));
        }
        for row in &blocks {
            let v: i64 = self.col(row, 0)?;
            let slot = Slot(self.u64_of(self.col(row, 1)?)?);
            let signing_root = self.root_of(self.col(row, 2)?)?;
            ahead
                .blocks
                .insert((v, slot.0), Some(SignedBlock { slot, signing_root }));
        }
        for row in &targets {
            let v: i64 = self.col(row, 0)?;
            let a = self.att_at(row, 1)?;
            ahead.targets.insert((v, a.target.0), Some(a));
        }
        for row in &surrounds {
            let v: i64 = self.col(row, 0)?;
            let s = self.u64_of(self.col(row, 1)?)?;
            let t = self.u64_of(self.col(row, 2)?)?;
            let kind: i32 = self.col(row, 3)?;
            let a = self.att_at(row, 4)?;
            let facts = ahead.surrounds.entry((v, s, t)).or_default();
            let slot = if kind == 1 {
                &mut facts.surrounded_by_new
            } else {
                &mut facts.surrounding_new
            };
            if slot.is_none() {
                *slot = Some(a);
            }
        }
        for row in &comet {
            let k: Vec<u8> = self.col(row, 0)?;
            let c: String = self.col(row, 1)?;
            let key = ConsensusKey::new(k).ok_or_else(|| self.corrupt("bad consensus key"))?;
            let chain = ChainId::new(c).ok_or_else(|| self.corrupt("bad chain id"))?;
            let r = self.comet_of(row, 2)?;
            ahead.comet.insert((key, chain), Some(r));
        }
        self.ahead = Some(ahead);
        Ok(())
    }

    /// Makes sure every key in `pubkeys` (sorted) has a validator row, and
    /// learns the ids. New keys are registered in a transaction of their own
    /// before the batch's (an empty row protects nothing and refuses
    /// nothing), so the batch's locks are only ever taken in id order.
    /// A batch with Gloas messages is decided question by question: they are
    /// rare (a validator sits on a payload-timeliness committee about once
    /// in 2,000 slots) and the read-ahead path does not serve them. Its
    /// validator rows and CometBFT keys are locked first, in the order every
    /// batch takes them (ids, then keys, each sorted), so that the questions'
    /// own locks find them held and two instances cannot deadlock.
    fn lock_for_questions(
        &mut self,
        pubkeys: &[BlsPublicKey],
        batch: &[&Proposal],
    ) -> Result<(), DbError> {
        let mut ids = pubkeys
            .iter()
            .map(|pk| {
                self.ids
                    .get(pk)
                    .copied()
                    .ok_or_else(|| not_read("a registered validator"))
            })
            .collect::<Result<Vec<i64>, DbError>>()?;
        ids.sort_unstable();
        let mut comet: Vec<i64> = batch
            .iter()
            .filter_map(|p| match p {
                Proposal::CometBft(c) => Some(super::comet_lock_key(c.key(), c.chain_id())),
                _ => None,
            })
            .collect();
        comet.sort_unstable();
        comet.dedup();
        let mut steps = Vec::new();
        if std::mem::take(&mut self.begin_pending) {
            steps.push(Step::Control(BEGIN));
        }
        steps.push(Step::Prepared(
            self.statement(LOCK)?,
            vec![boxed(ids.clone())],
        ));
        if !comet.is_empty() {
            steps.push(Step::Prepared(
                self.statement(COMET_LOCK)?,
                vec![boxed(comet.clone())],
            ));
        }
        self.run_steps("locking a batch with Gloas messages", &steps)?;
        self.locked.extend(ids);
        self.locked_comet.extend(comet);
        Ok(())
    }

    fn register(&mut self, pubkeys: &[BlsPublicKey]) -> Result<(), DbError> {
        let unknown: Vec<Vec<u8>> = pubkeys
            .iter()
            .filter(|pk| !self.ids.contains_key(*pk))
            .map(|pk| pk.as_bytes().to_vec())
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        if self.in_tx && !self.begin_pending {
            // The ids are cached for good: rows written in a transaction
            // that may still abort must never be.
            return Err(DbError::Engine {
                context: "registering validators",
                source: "inside an open transaction (a bug: registration must commit on its own)"
                    .into(),
            });
        }
        let steps = vec![
            Step::Prepared(self.statement(REGISTER)?, vec![boxed(unknown.clone())]),
            Step::Prepared(self.statement(IDS)?, vec![boxed(unknown)]),
        ];
        let answers = self.run_steps("registering validators", &steps)?;
        for row in answers.last().map(Vec::as_slice).unwrap_or_default() {
            let id: i64 = self.col(row, 0)?;
            let pk: Vec<u8> = self.col(row, 1)?;
            let pk = BlsPublicKey::from_slice(&pk)
                .ok_or_else(|| self.corrupt("public key of wrong length"))?;
            self.ids.insert(pk, id);
        }
        Ok(())
    }

    /// The statements that write what the batch decided, in order: one
    /// multi-row insert per table, then the CometBFT records.
    pub(super) fn write_steps(&mut self, ahead: &Ahead) -> Result<Vec<Step>, DbError> {
        let mut steps = Vec::new();
        if ahead.assumed {
            if ahead.writes.len() != ahead.proposals {
                // A refusal, or a repeat, was decided from assumed facts:
                // decide again from the facts themselves.
                self.read_next = true;
                return Err(DbError::Contended {
                    context: "deciding a batch",
                    detail: "a refusal from assumed facts is decided again from the history".into(),
                });
            }
            let mut ids: Vec<i64> = ahead.ids.values().copied().collect();
            ids.sort_unstable();
            if !ids.is_empty() {
                steps.push(Step::Prepared(self.statement(LOCK)?, vec![boxed(ids)]));
            }
            let mut locks: Vec<i64> = ahead
                .comet
                .keys()
                .map(|(k, c)| super::comet_lock_key(k, c))
                .collect();
            locks.sort_unstable();
            locks.dedup();
            if !locks.is_empty() {
                steps.push(Step::Prepared(
                    self.statement(COMET_LOCK)?,
                    vec![boxed(locks)],
                ));
            }
        }
        let (insert_blocks, insert_attestations) = if ahead.assumed {
            (EXPECT_BLOCKS, EXPECT_ATTESTATIONS)
        } else {
            (INSERT_BLOCKS, INSERT_ATTESTATIONS)
        };
        let (mut bv, mut bs, mut br) = (Vec::new(), Vec::new(), Vec::new());
        let (mut av, mut asrc, mut at, mut ar) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut comet_written: Vec<(ConsensusKey, ChainId)> = Vec::new();
        for w in &ahead.writes {
            match w {
                Write::Block(v, b) => {
                    bv.push(*v);
                    bs.push(i64_of("slot", b.slot.0)?);
                    br.push(b.signing_root.map(|r| r.as_bytes().to_vec()));
                }
                Write::Attestation(v, a) => {
                    av.push(*v);
                    asrc.push(i64_of("source epoch", a.source.0)?);
                    at.push(i64_of("target epoch", a.target.0)?);
                    ar.push(a.signing_root.map(|r| r.as_bytes().to_vec()));
                }
                Write::Comet(k, c, _) => {
                    let key = (k.clone(), c.clone());
                    if !comet_written.contains(&key) {
                        comet_written.push(key);
                    }
                }
            }
        }
        if !bv.is_empty() {
            steps.push(Step::Prepared(
                self.statement(insert_blocks)?,
                vec![boxed(bv), boxed(bs), boxed(br)],
            ));
        }
        if !av.is_empty() {
            steps.push(Step::Prepared(
                self.statement(insert_attestations)?,
                vec![boxed(av), boxed(asrc), boxed(at), boxed(ar)],
            ));
        }
        for (k, c) in &comet_written {
            let Some(Some(r)) = ahead.comet_now(k, c) else {
                continue;
            };
            // Assumed: nothing stored at or above the batch's first record
            // for the key (the rules ordered the batch's own records).
            let first = ahead.writes.iter().find_map(|w| match w {
                Write::Comet(wk, wc, first) if wk == k && wc == c => Some(first.hrs),
                _ => None,
            });
            match first {
                Some(first) if ahead.assumed => {
                    let mut step = self.comet_store_step(EXPECT_COMET, k, c, &r)?;
                    if let Step::Prepared(_, params) = &mut step {
                        params.push(boxed(i64_of("height", first.height.0)?));
                        params.push(boxed(i64::from(first.round)));
                        params.push(boxed(
                            i16::try_from(first.step.as_i64()).unwrap_or(i16::MAX),
                        ));
                    }
                    steps.push(step);
                }
                _ => steps.push(self.comet_store_step(super::history::COMET_STORE, k, c, &r)?),
            }
        }
        Ok(steps)
    }

    fn comet_store_step(
        &mut self,
        sql: &'static str,
        key: &ConsensusKey,
        chain: &ChainId,
        r: &CometRecord,
    ) -> Result<Step, DbError> {
        let h = i64_of("height", r.hrs.height.0)?;
        let round = i64::from(r.hrs.round);
        let step = i16::try_from(r.hrs.step.as_i64()).unwrap_or(i16::MAX);
        Ok(Step::Prepared(
            self.statement(sql)?,
            vec![
                boxed(key.as_bytes().to_vec()),
                boxed(chain.as_str().to_owned()),
                boxed(h),
                boxed(round),
                boxed(step),
                boxed(r.sign_bytes.clone()),
                boxed(r.signature.clone()),
            ],
        ))
    }
}
