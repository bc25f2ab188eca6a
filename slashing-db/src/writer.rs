//! Group commit: one thread owns the engine. Callers queue work; the thread
//! takes everything queued, runs it in one exclusive transaction (each caller's
//! work under its own savepoint, in arrival order), commits once (one fsync),
//! and only then answers. A later item in a batch sees the earlier ones, so two
//! conflicting messages in one batch still yield at most one `Safe`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};

use crate::decide::decide;
use crate::engine::Engine;
use crate::error::DbError;
use crate::record::{CometRecord, Decision, Proposal};
use crate::types::{ChainId, ConsensusKey};

/// Counters kept by the writer thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub commits: AtomicU64,
    pub decisions: AtomicU64,
}

/// Work that can share a transaction with other callers' work.
pub(crate) enum Work {
    Decide(Vec<Proposal>),
    /// Attach the signature to the CometBFT record it was made for (no-op if
    /// the record has moved on or already has one).
    StoreSignature {
        key: ConsensusKey,
        chain: ChainId,
        sign_bytes: Vec<u8>,
        signature: Vec<u8>,
    },
}

pub(crate) type Reply = SyncSender<Result<Vec<Decision>, DbError>>;

/// A transaction of its own (import, export, prune, inspection).
pub(crate) type Exclusive = Box<dyn FnOnce(&mut Writer) + Send>;

pub(crate) enum Job {
    Batched(Work, Option<Reply>),
    Exclusive(Exclusive),
}

pub(crate) struct Writer {
    engine: Box<dyn Engine>,
    poisoned: Option<String>,
    counters: Arc<Counters>,
    max_batch: usize,
}

impl Writer {
    pub(crate) fn new(engine: Box<dyn Engine>, counters: Arc<Counters>, max_batch: usize) -> Self {
        Self {
            engine,
            poisoned: None,
            counters,
            max_batch: max_batch.max(1),
        }
    }

    pub(crate) fn run(mut self, rx: Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut batch = Vec::new();
            let mut then = None;
            match first {
                Job::Exclusive(f) => then = Some(f),
                Job::Batched(w, r) => batch.push((w, r)),
            }
            while then.is_none() && batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(Job::Batched(w, r)) => batch.push((w, r)),
                    Ok(Job::Exclusive(f)) => then = Some(f),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.run_batch(batch);
            }
            if let Some(f) = then {
                f(&mut self);
            }
        }
        tracing::debug!("slashing database writer stopped");
    }

    /// Remembers an I/O failure: from now on every request is refused.
    fn note(&mut self, e: &DbError) {
        if e.is_io_failure() && self.poisoned.is_none() {
            tracing::error!(error = %e, "slashing database I/O failure: refusing all requests until restart");
            self.poisoned = Some(e.to_string());
        }
    }

    fn refuse_if_poisoned(&self) -> Result<(), DbError> {
        match &self.poisoned {
            Some(why) => Err(DbError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    fn run_batch(&mut self, batch: Vec<(Work, Option<Reply>)>) {
        let answers = match self.try_batch(&batch) {
            Ok(answers) => answers,
            Err(e) => {
                self.note(&e);
                let _ = self.engine.rollback();
                batch.iter().map(|_| Err(e.duplicate())).collect()
            }
        };
        for ((_, reply), answer) in batch.into_iter().zip(answers) {
            if let Some(reply) = reply {
                let _ = reply.send(answer); // a caller that gave up is not an error
            }
        }
    }

    /// Runs a whole batch; `Err` means nothing of it was committed.
    fn try_batch(
        &mut self,
        batch: &[(Work, Option<Reply>)],
    ) -> Result<Vec<Result<Vec<Decision>, DbError>>, DbError> {
        self.refuse_if_poisoned()?;
        self.engine.begin()?;
        // A caller's failure must not undo the others' work: with several
        // callers, each runs under its own savepoint. Alone, it needs none.
        let nested = batch.len() > 1;
        let mut answers = Vec::with_capacity(batch.len());
        for (work, _) in batch {
            if nested {
                self.engine.savepoint()?;
            }
            match self.apply(work) {
                Ok(decisions) => {
                    if nested {
                        self.engine.release_savepoint()?;
                    }
                    answers.push(Ok(decisions));
                }
                Err(e) => {
                    self.note(&e);
                    if !nested || !self.engine.in_transaction() {
                        // Alone, or the engine abandoned the whole transaction
                        // (disk full, I/O error): nothing here is committed.
                        return Err(e);
                    }
                    self.engine.rollback_to_savepoint()?;
                    answers.push(Err(e));
                }
            }
        }
        self.engine.commit()?;
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        let n: usize = answers.iter().map(|a| a.as_ref().map_or(0, Vec::len)).sum();
        self.counters
            .decisions
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(answers)
    }

    fn apply(&mut self, work: &Work) -> Result<Vec<Decision>, DbError> {
        match work {
            Work::Decide(proposals) => proposals
                .iter()
                .map(|p| decide(self.engine.as_mut(), p))
                .collect(),
            Work::StoreSignature {
                key,
                chain,
                sign_bytes,
                signature,
            } => {
                if let Some(last) = self.engine.cometbft_last(key, chain)?
                    && last.sign_bytes == *sign_bytes
                    && last.signature.is_none()
                {
                    let r = CometRecord {
                        signature: Some(signature.clone()),
                        ..last
                    };
                    self.engine.cometbft_store(key, chain, &r)?;
                }
                Ok(Vec::new())
            }
        }
    }

    /// Runs `f` in a transaction of its own, committing on `Ok`.
    pub(crate) fn transaction<T, E>(
        &mut self,
        f: impl FnOnce(&mut dyn Engine) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<DbError> + AsDbError,
    {
        self.refuse_if_poisoned()?;
        if let Err(e) = self.engine.begin() {
            self.note(&e);
            return Err(e.into());
        }
        let result = f(self.engine.as_mut()).and_then(|v| match self.engine.commit() {
            Ok(()) => {
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                Ok(v)
            }
            Err(e) => Err(e.into()),
        });
        if let Err(e) = &result {
            if let Some(db) = e.as_db_error() {
                self.note(db);
            }
            let _ = self.engine.rollback();
        }
        result
    }
}

/// Errors that may wrap a [`DbError`] (so an I/O failure inside them poisons).
pub(crate) trait AsDbError {
    fn as_db_error(&self) -> Option<&DbError>;
}

impl AsDbError for DbError {
    fn as_db_error(&self) -> Option<&DbError> {
        Some(self)
    }
}
