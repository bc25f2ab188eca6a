//! Group commit, leader/follower style (as LevelDB's writer queue): a caller
//! queues its work; if no commit is under way it becomes the leader, takes
//! everything queued (its own work first), runs it in one exclusive
//! transaction — each caller's work under its own savepoint, in arrival order
//! — commits once (one fsync), hands every caller its answer, and steps down.
//! Callers that arrive meanwhile wait and are served by the next leader.
//!
//! A lone caller thus commits on its own thread, with no hand-off to another
//! thread; concurrent callers share one fsync. A later item in a batch sees
//! the earlier ones, so two conflicting messages in one batch still yield at
//! most one `Safe`. Answers are given only after the commit is durable.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::decide::decide;
use crate::engine::Engine;
use crate::error::DbError;
use crate::record::{Decision, Proposal};

/// Counters kept by the leaders.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub commits: AtomicU64,
    pub decisions: AtomicU64,
}

/// One caller's work: its proposals, decided in order.
pub(crate) type Work = Vec<Proposal>;

type Answer = Result<Vec<Decision>, DbError>;

/// The queue and who is serving it.
#[derive(Default)]
struct Queue {
    /// Queued work, by caller id.
    pending: VecDeque<(u64, Work)>,
    answers: HashMap<u64, Answer>,
    next_id: u64,
    leader: bool,
    /// Callers asleep on `served`: a leader with none (a lone caller, the
    /// common case for sequential votes) skips the wake, a syscall.
    waiting: usize,
}

/// The engine and what the leaders remember between batches.
pub(crate) struct Writer {
    engine: Box<dyn Engine>,
    poisoned: Option<String>,
}

/// Shared by all callers of one database.
pub(crate) struct GroupCommit {
    queue: Mutex<Queue>,
    served: Condvar,
    writer: Mutex<Writer>,
    pub(crate) counters: Counters,
    max_batch: usize,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

fn poisoned_lock() -> DbError {
    DbError::Poisoned("a thread panicked while holding the database".into())
}

impl GroupCommit {
    pub(crate) fn new(engine: Box<dyn Engine>, max_batch: usize) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            served: Condvar::new(),
            writer: Mutex::new(Writer {
                engine,
                poisoned: None,
            }),
            counters: Counters::default(),
            max_batch: max_batch.max(1),
        }
    }

    fn lock_queue(&self) -> Result<MutexGuard<'_, Queue>, DbError> {
        self.queue.lock().map_err(|_| poisoned_lock())
    }

    /// Queues `work` and returns its answer once it is durable.
    pub(crate) fn submit(&self, work: Work) -> Answer {
        let mut q = self.lock_queue()?;
        let id = q.next_id;
        q.next_id += 1;
        q.pending.push_back((id, work));
        loop {
            if let Some(answer) = q.answers.remove(&id) {
                return answer;
            }
            if !q.leader {
                q.leader = true;
                let take = q.pending.len().min(self.max_batch);
                let batch: Vec<(u64, Work)> = q.pending.drain(..take).collect();
                drop(q);
                let ids: Vec<u64> = batch.iter().map(|(id, _)| *id).collect();
                let mut stepping_down = StepDown {
                    group: self,
                    ids: Some(&ids),
                };
                let answers = self.run_batch(&batch);
                q = self.lock_queue()?;
                stepping_down.ids = None;
                q.leader = false;
                for ((id, _), answer) in batch.iter().zip(answers) {
                    q.answers.insert(*id, answer);
                }
                if q.waiting > 0 {
                    self.served.notify_all();
                }
                continue;
            }
            q.waiting += 1;
            let woken = self.served.wait(q);
            q = woken.map_err(|_| poisoned_lock())?;
            q.waiting -= 1;
        }
    }

    /// Runs `f` in a transaction of its own, committing on `Ok`. Waits for any
    /// batch under way; batches queued after it wait for it.
    pub(crate) fn exclusive<T, E>(
        &self,
        f: impl FnOnce(&mut dyn Engine) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<DbError> + AsDbError,
    {
        let result = self.bookkeeping(f);
        if result.is_ok() {
            self.counters.commits.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// [`GroupCommit::exclusive`] for the signer's own bookkeeping (the
    /// audit anchor, key states, about once a second): not counted in
    /// `commits`, which counts the transactions of the history.
    pub(crate) fn bookkeeping<T, E>(
        &self,
        f: impl FnOnce(&mut dyn Engine) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<DbError> + AsDbError,
    {
        let mut w = self.writer.lock().map_err(|_| E::from(poisoned_lock()))?;
        w.transaction(f)
    }

    fn run_batch(&self, batch: &[(u64, Work)]) -> Vec<Answer> {
        let mut w = match self.writer.lock() {
            Ok(w) => w,
            Err(_) => return batch.iter().map(|_| Err(poisoned_lock())).collect(),
        };
        // A deadlock or serialisation failure against another signer
        // instance (PostgreSQL) rolled the whole batch back: decide it again.
        let mut result = w.try_batch(batch);
        for _ in 0..3 {
            match &result {
                Err(DbError::Contended { .. }) => {
                    let _ = w.engine.rollback();
                    result = w.try_batch(batch);
                }
                _ => break,
            }
        }
        match result {
            Ok(answers) => {
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                let n: usize = answers.iter().map(|a| a.as_ref().map_or(0, Vec::len)).sum();
                self.counters
                    .decisions
                    .fetch_add(n as u64, Ordering::Relaxed);
                answers
            }
            Err(e) => {
                w.note(&e);
                let _ = w.engine.rollback();
                batch.iter().map(|_| Err(e.duplicate())).collect()
            }
        }
    }
}

/// If a leader unwinds (a bug; release builds abort instead), its followers
/// must not wait forever: they get an error and another caller may lead.
struct StepDown<'a> {
    group: &'a GroupCommit,
    /// The batch's ids until its answers are stored.
    ids: Option<&'a [u64]>,
}

impl Drop for StepDown<'_> {
    fn drop(&mut self) {
        let Some(ids) = self.ids else { return };
        if let Ok(mut q) = self.group.queue.lock() {
            q.leader = false;
            for id in ids {
                q.answers.insert(*id, Err(poisoned_lock()));
            }
        }
        self.group.served.notify_all();
    }
}

impl Writer {
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

    /// Runs a whole batch; `Err` means nothing of it was committed.
    fn try_batch(&mut self, batch: &[(u64, Work)]) -> Result<Vec<Answer>, DbError> {
        self.refuse_if_poisoned()?;
        self.engine.begin()?;
        let proposals: Vec<&Proposal> = batch.iter().flat_map(|(_, w)| w.iter()).collect();
        self.engine.read_ahead(&proposals)?;
        // A caller's failure must not undo the others' work: with several
        // callers, each runs under its own savepoint. Alone, it needs none.
        let nested = batch.len() > 1;
        let mut answers = Vec::with_capacity(batch.len());
        for (_, work) in batch {
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
        Ok(answers)
    }

    fn apply(&mut self, work: &Work) -> Result<Vec<Decision>, DbError> {
        work.iter()
            .map(|p| decide(self.engine.as_mut(), p))
            .collect()
    }

    /// Runs `f` in a transaction of its own, committing on `Ok`.
    fn transaction<T, E>(&mut self, f: impl FnOnce(&mut dyn Engine) -> Result<T, E>) -> Result<T, E>
    where
        E: From<DbError> + AsDbError,
    {
        self.refuse_if_poisoned()?;
        if let Err(e) = self.engine.begin() {
            self.note(&e);
            return Err(e.into());
        }
        let result =
            f(self.engine.as_mut()).and_then(|v| self.engine.commit().map(|()| v).map_err(E::from));
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
