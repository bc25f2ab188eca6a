//! [`SlashingDb`]: the handle the signer holds. Share it (`Arc`) and call it
//! from any number of threads; every call blocks until its decision is durable
//! (group commit, see [`crate::writer`]). Call it from worker threads, not from
//! an async runtime's threads.

use std::path::Path;
use std::sync::atomic::Ordering;

use crate::anchor::{self, AuditAnchor};
use crate::engine::Engine;
use crate::engine::postgres::{PostgresEngine, PostgresOptions};
use crate::engine::sqlite::{SqliteEngine, SqliteOptions};
use crate::error::DbError;
use crate::interchange::{self, ImportSummary, Interchange, InterchangeError};
use crate::key_state::{self, KeyState, KeyStateError};
use crate::prune::{self, PruneConfig, PruneSummary};
use crate::record::{CometRecord, Decision, Lane, Proposal, SignedMessage};
use crate::types::{BlsPublicKey, ChainId, ConsensusKey, GenesisRoot};
use crate::writer::{AsDbError, GroupCommit};

/// Settings of a [`SlashingDb`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The network this database protects. When set, a database pinned to
    /// another network is refused at open, and an empty one is pinned to it.
    /// When `None`, the first request or import that names a network pins it.
    pub genesis_root: Option<GenesisRoot>,
    /// The most proposals decided in one group commit.
    pub max_batch: usize,
    /// SQLite settings.
    pub sqlite: SqliteOptions,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            genesis_root: None,
            max_batch: 4096,
            sqlite: SqliteOptions::default(),
        }
    }
}

/// Counters since open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Transactions of the history committed (each writing one is one
    /// fsync); the signer's bookkeeping (audit anchor, key states,
    /// readiness probes) is not
    /// counted.
    pub commits: u64,
    /// Proposals decided.
    pub decisions: u64,
}

/// The slashing-protection database. See the crate documentation.
#[derive(Debug)]
pub struct SlashingDb {
    group: GroupCommit,
}

impl SlashingDb {
    /// Opens (or creates) the SQLite database at `path`.
    pub fn open(path: &Path, config: Config) -> Result<Self, DbError> {
        let engine = SqliteEngine::open(path, &config.sqlite)?;
        Self::with_engine(Box::new(engine), &config)
    }

    /// Connects to the shared PostgreSQL database (creating or migrating
    /// its schema), for several signer instances on the same keys.
    pub fn open_postgres(opts: &PostgresOptions, config: Config) -> Result<Self, DbError> {
        let engine = PostgresEngine::open(opts)?;
        Self::with_engine(Box::new(engine), &config)
    }

    /// Serves an already opened engine.
    pub fn with_engine(mut engine: Box<dyn Engine>, config: &Config) -> Result<Self, DbError> {
        if let Some(configured) = config.genesis_root {
            engine.begin()?;
            let pinned = match engine.genesis_root() {
                Ok(Some(stored)) if stored != configured => {
                    Err(DbError::GenesisRootMismatch { stored, configured })
                }
                Ok(Some(_)) => Ok(()),
                Ok(None) => engine.set_genesis_root(&configured),
                Err(e) => Err(e),
            };
            match pinned {
                Ok(()) => engine.commit()?,
                Err(e) => {
                    let _ = engine.rollback();
                    return Err(e);
                }
            }
        }
        Ok(Self {
            group: GroupCommit::new(engine, config.max_batch),
        })
    }

    /// Checks one proposal and, when it is safe, records it durably before
    /// returning. Sign only on `Ok(Ok(_))`.
    pub fn check_and_record(&self, proposal: Proposal) -> Result<Decision, DbError> {
        let mut decisions = self.check_and_record_batch(vec![proposal])?;
        decisions.pop().ok_or_else(|| DbError::Engine {
            context: "deciding",
            source: "the engine answered no decision".into(),
        })
    }

    /// Checks and records many proposals in one transaction, in order; the
    /// answer has one decision per proposal. Either all are recorded or
    /// (`Err`) none.
    pub fn check_and_record_batch(
        &self,
        proposals: Vec<Proposal>,
    ) -> Result<Vec<Decision>, DbError> {
        if proposals.is_empty() {
            return Ok(Vec::new());
        }
        self.group.submit(proposals)
    }

    fn exclusive<T, E>(&self, f: impl FnOnce(&mut dyn Engine) -> Result<T, E>) -> Result<T, E>
    where
        E: From<DbError> + AsDbError,
    {
        self.group.exclusive(f)
    }

    /// Merges an EIP-3076 interchange into the history, atomically.
    pub fn import_interchange(&self, file: Interchange) -> Result<ImportSummary, InterchangeError> {
        self.exclusive(move |e| interchange::import(e, &file))
    }

    /// Exports the complete history as an EIP-3076 interchange.
    pub fn export_interchange(&self) -> Result<Interchange, DbError> {
        self.exclusive(interchange::export)
    }

    /// Counts the Ethereum history as stored (`signer slashing inspect`).
    pub fn history_summary(&self) -> Result<interchange::HistorySummary, DbError> {
        self.exclusive(interchange::summary)
    }

    /// Deletes old history, raising watermarks so nothing becomes signable.
    pub fn prune(&self, config: PruneConfig) -> Result<PruneSummary, DbError> {
        self.prune_with_progress(config, |_, _| {})
    }

    /// [`SlashingDb::prune`] in small transactions (a few dozen validators
    /// each, signing goes on in between), calling `progress(done, total)`
    /// after each. Stopping half way is safe: every committed part is
    /// complete, the rest is pruned by the next run.
    pub fn prune_with_progress(
        &self,
        config: PruneConfig,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<PruneSummary, DbError> {
        let validators: Vec<_> = self
            .exclusive(|e| e.validators())?
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        let mut summary = PruneSummary::default();
        let mut done = 0;
        for part in validators.chunks(prune::VALIDATORS_PER_TRANSACTION) {
            let s = self.exclusive(|e| prune::prune(e, part, config))?;
            summary.blocks += s.blocks;
            summary.attestations += s.attestations;
            done += part.len();
            progress(done, validators.len());
        }
        Ok(summary)
    }

    /// Raises the CometBFT record of (key, chain) to `record` — migration
    /// from another signer's state (CometBFT's `priv_validator_state.json`,
    /// tmkms's state file). A stored record at or above `record`'s position
    /// is kept: importing never lowers protection. Returns whether it raised.
    /// `record.sign_bytes` may be empty when the old state did not keep
    /// them: every request at exactly that position is then refused.
    pub fn import_cometbft_state(
        &self,
        key: ConsensusKey,
        chain: ChainId,
        record: CometRecord,
    ) -> Result<bool, DbError> {
        // `exclusive` runs this in one transaction of its own.
        self.exclusive(move |e| {
            let last = e.cometbft_last(&key, &chain)?;
            if last.as_ref().is_some_and(|l| l.hrs >= record.hrs) {
                return Ok(false);
            }
            e.cometbft_store(&key, &chain, &record).map(|()| true)
        })
    }

    /// The last CometBFT record of every (key, chain).
    pub fn cometbft_states(&self) -> Result<Vec<(ConsensusKey, ChainId, CometRecord)>, DbError> {
        self.exclusive(|e| e.cometbft_all())
    }

    /// The last Gloas message of `lane` recorded for `pubkey`, if any.
    pub fn last_message(
        &self,
        pubkey: &BlsPublicKey,
        lane: Lane,
    ) -> Result<Option<SignedMessage>, DbError> {
        let pubkey = *pubkey;
        self.exclusive(move |e| match e.validator(&pubkey)? {
            Some(v) => e.message_last(v, lane),
            None => Ok(None),
        })
    }

    /// The last Gloas message of every key and lane (for `slashing
    /// migrate`: these are not in interchange files).
    pub fn gloas_messages(&self) -> Result<Vec<(BlsPublicKey, Lane, SignedMessage)>, DbError> {
        self.exclusive(|e| e.messages_all())
    }

    /// Records `m` as the last message of `lane` for `pubkey` unless one at
    /// the same or a later slot is already there (the existing one is
    /// kept: importing never lowers protection). Returns whether it wrote.
    pub fn import_gloas_message(
        &self,
        pubkey: BlsPublicKey,
        lane: Lane,
        m: SignedMessage,
    ) -> Result<bool, DbError> {
        self.exclusive(move |e| {
            let v = crate::decide::validator_or_insert(e, &pubkey)?;
            if e.message_last(v, lane)?.is_some_and(|l| l.slot >= m.slot) {
                return Ok(false);
            }
            e.message_store(v, lane, &m).map(|()| true)
        })
    }

    /// The anchor of the audit log named `log`, if it has one.
    pub fn audit_anchor(&self, log: &str) -> Result<Option<AuditAnchor>, DbError> {
        self.group.bookkeeping(|e| anchor::get(e, log))
    }

    /// Every audit log anchor, by log name.
    pub fn audit_anchors(&self) -> Result<Vec<(String, AuditAnchor)>, DbError> {
        self.group.bookkeeping(anchor::all)
    }

    /// Moves the anchor of `log` to `new`, durably, if it is still
    /// `expected` (`None`: it has none); `Ok(false)` and nothing written
    /// when it is not — another process moved it.
    pub fn set_audit_anchor(
        &self,
        log: &str,
        expected: Option<&AuditAnchor>,
        new: &AuditAnchor,
    ) -> Result<bool, DbError> {
        self.group
            .bookkeeping(|e| anchor::compare_and_set(e, log, expected, new))
    }

    /// Every key whose state an operator set (disabled, retired, or enabled
    /// again), by public key.
    pub fn key_states(&self) -> Result<Vec<(Vec<u8>, KeyState)>, DbError> {
        self.group.bookkeeping(key_state::all)
    }

    /// Sets a key's state durably (out of service, or back into it); a
    /// retired key cannot change. Returns the state before.
    pub fn set_key_state(
        &self,
        public_key: &[u8],
        new: &KeyState,
    ) -> Result<Result<Option<KeyState>, KeyStateError>, DbError> {
        self.group
            .bookkeeping(|e| key_state::set(e, public_key, new))
    }

    /// The network this database is pinned to, if any.
    pub fn genesis_root(&self) -> Result<Option<GenesisRoot>, DbError> {
        self.exclusive(|e| e.genesis_root())
    }

    /// The durability a shared (PostgreSQL) database gives, read from the
    /// server now and checked against what was required at open
    /// (readiness asks this); `None` for SQLite (every commit fsyncs the
    /// local file).
    pub fn durability(&self) -> Result<Option<crate::Durability>, DbError> {
        self.group.bookkeeping(|e| e.durability())
    }

    /// Counters since open.
    pub fn stats(&self) -> Stats {
        Stats {
            commits: self.group.counters.commits.load(Ordering::Relaxed),
            decisions: self.group.counters.decisions.load(Ordering::Relaxed),
        }
    }

    /// Closes the database (as dropping it does), checkpointing the WAL.
    pub fn close(self) {}
}
