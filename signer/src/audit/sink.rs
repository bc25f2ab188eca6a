//! The audit log as the signing workers share it.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use slashing_db::{AuditAnchor, SlashingDb};

use super::{AuditError, AuditLog, Entry, anchor_of};

/// Why an audit record could not be written (cheap to clone: one failure
/// answers every request of a batch).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// A flush failed; every request since is refused (decision 0004).
    #[error("fsync failed: {0}")]
    Fsync(Arc<std::io::Error>),
    /// Appending the record failed.
    #[error("{0}")]
    Append(Arc<AuditError>),
    /// A writer panicked while holding the log.
    #[error("lock poisoned")]
    Poisoned,
    /// The log was deleted, replaced or truncated under the daemon, or its
    /// anchor moved by someone else; refused until a restart.
    #[error("{0}")]
    Tampered(Arc<str>),
}

/// How long readiness stays red after a record could not be written.
const AUDIT_RETRY_AFTER: Duration = Duration::from_secs(10);

/// How often appended audit records are made durable, unless configured
/// (`[audit] flush_interval_ms`).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(5);

/// How long the flusher sleeps when nothing is pending, unless a record
/// wakes it first (a bound, in case a wake were ever missed).
const FLUSHER_IDLE: Duration = Duration::from_secs(1);

/// How often the anchor in the slashing database moves to the durable head,
/// and the file is checked for having been deleted, replaced or truncated
/// (decision 0008).
const ANCHOR_INTERVAL: Duration = Duration::from_secs(1);

/// The audit log, shared by the workers. Records are appended (one
/// `write(2)` each) before a request is answered, so a process crash loses
/// none; a flusher thread makes them durable with one `fdatasync` every
/// [`DEFAULT_FLUSH_INTERVAL`], off the signing path. Only a power loss can
/// lose the last few milliseconds of records — never a slashing decision,
/// which the database made durable before signing. See
/// `docs/decisions/0004-audit-fsync-off-the-signing-path.md`.
#[derive(Debug)]
pub(crate) struct AuditSink {
    log: Mutex<AuditLog>,
    /// Why and when the last write failed, until one succeeds.
    trouble: Mutex<Option<(String, std::time::Instant)>>,
    flush: Arc<AuditFlush>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
    anchorer: Mutex<Option<(Arc<Anchorer>, std::thread::JoinHandle<()>)>>,
}

/// A position in the log: records, head hash, bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    records: u64,
    hash: String,
    len: u64,
}

impl Head {
    fn of(log: &AuditLog) -> Self {
        Self {
            records: log.records(),
            hash: log.head().to_owned(),
            len: log.len(),
        }
    }
}

#[derive(Debug)]
struct Heads {
    /// Written (in the page cache).
    appended: Head,
    /// Made durable by the flusher.
    durable: Head,
}

#[derive(Debug)]
struct AuditFlush {
    file: File,
    path: PathBuf,
    heads: Mutex<Heads>,
    stop: AtomicBool,
    /// The first fsync error; after one, every request is refused.
    failed: Mutex<Option<SinkError>>,
    /// Set once the log was found deleted, replaced or truncated under the
    /// daemon (or its anchor moved by another process): every request is
    /// refused until a restart, which checks the log against its anchor.
    tampered: Mutex<Option<Arc<str>>>,
    /// The anchorer waits on this condvar (and the flusher's `work`, below,
    /// with the same mutex).
    wake: (Mutex<()>, Condvar),
    /// Wakes the flusher: a record written into a clean log, a new
    /// interval, the stop.
    work: Condvar,
    /// The flush interval in microseconds (read by the flusher each round).
    interval_us: AtomicU64,
    /// Rounds the flusher has made (how often it woke).
    #[cfg(test)]
    rounds: AtomicU64,
}

impl AuditFlush {
    fn interval(&self) -> Duration {
        Duration::from_micros(self.interval_us.load(Ordering::Relaxed))
    }

    /// Records written and not yet durable.
    fn pending(&self) -> bool {
        self.heads
            .lock()
            .is_ok_and(|h| h.durable.records < h.appended.records)
    }

    /// The flusher: while nothing is pending it sleeps until a record is
    /// written (or [`FLUSHER_IDLE`]); then it waits the interval, so that
    /// the records of that interval share one `fdatasync`, and syncs. An
    /// idle daemon's flusher used to wake every interval (200 times a
    /// second by default) to find nothing to do.
    fn run_flusher(&self) {
        while !self.stop.load(Ordering::Acquire) {
            #[cfg(test)]
            self.rounds.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut g) = self.wake.0.lock() {
                if !self.pending() && !self.stop.load(Ordering::Acquire) {
                    g = match self.work.wait_timeout(g, FLUSHER_IDLE) {
                        Ok((g, _)) => g,
                        Err(_) => return,
                    };
                }
                if !self.stop.load(Ordering::Acquire) {
                    let _ = self.work.wait_timeout(g, self.interval());
                }
            }
            self.sync();
        }
    }

    /// Wakes the flusher (under the mutex it checks and waits with, so the
    /// wake cannot fall between its check and its wait).
    fn wake_flusher(&self) {
        let _g = self.wake.0.lock();
        self.work.notify_all();
    }

    fn sync(&self) {
        let Some(target) = self
            .heads
            .lock()
            .ok()
            .and_then(|h| (h.durable.records < h.appended.records).then(|| h.appended.clone()))
        else {
            return;
        };
        match self.file.sync_data() {
            Ok(()) => {
                if let Ok(mut h) = self.heads.lock()
                    && h.durable.records < target.records
                {
                    h.durable = target;
                }
            }
            Err(e) => {
                if let Ok(mut f) = self.failed.lock() {
                    f.get_or_insert_with(|| SinkError::Fsync(Arc::new(e)));
                }
            }
        }
    }

    fn tampered(&self) -> Option<Arc<str>> {
        self.tampered.lock().ok().and_then(|t| t.clone())
    }

    fn set_tampered(&self, why: String) {
        if let Ok(mut t) = self.tampered.lock()
            && t.is_none()
        {
            tracing::error!(log = %self.path.display(), "audit log: {why}; every request is refused until the signer is restarted");
            *t = Some(why.into());
        }
    }

    /// Whether the file at `path` is still the one the daemon appends to,
    /// whole; why not if it is not.
    fn watch(&self) -> Option<String> {
        use std::os::fd::AsRawFd;
        // What was written first, then the file: an append between the two
        // reads only makes the file longer. (The other order took a log
        // that grew in between for a truncated one, and stopped signing.)
        let written = self.heads.lock().ok()?.appended.len;
        let open = self.file.metadata().ok()?;
        let keep = || {
            format!(
                "its records are still in the signer's open file: copy them with `cp /proc/{}/fd/{} <somewhere>` before stopping the signer; \
             at the next start the signer compares the log with its anchor in the slashing database and says how to acknowledge the loss",
                std::process::id(),
                self.file.as_raw_fd()
            )
        };
        match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(if open.nlink() == 0 {
                format!("the file was deleted under the running signer; {}", keep())
            } else {
                format!(
                    "the file was moved away under the running signer (rotating the audit log is not supported: it is one chain); {}",
                    keep()
                )
            }),
            Ok(m) if (m.dev(), m.ino()) != (open.dev(), open.ino()) => Some(format!(
                "another file was put in its place under the running signer; {}",
                keep()
            )),
            _ if open.len() < written => Some(format!(
                "the file was truncated under the running signer ({} bytes left of {written} written)",
                open.len()
            )),
            _ => None,
        }
    }
}

/// Keeps the log's anchor in the slashing database (decision 0008).
#[derive(Debug)]
struct Anchorer {
    db: Arc<SlashingDb>,
    name: String,
    /// The anchor as last stored (or found at start).
    anchored: Mutex<Option<AuditAnchor>>,
    /// A database error is logged once per outage.
    failing: AtomicBool,
    /// When the last store failed: the next try waits [`ANCHOR_RETRY`], so
    /// a stalled database does not have signing batches queue behind the
    /// anchor every second.
    failed_at: Mutex<Option<std::time::Instant>>,
}

/// After a failed store, how long until the next try.
const ANCHOR_RETRY: Duration = Duration::from_secs(10);

impl Anchorer {
    /// Moves the anchor to the durable head if it changed.
    fn step(&self, flush: &AuditFlush) {
        if flush.tampered().is_some() {
            return;
        }
        if self
            .failed_at
            .lock()
            .ok()
            .and_then(|f| *f)
            .is_some_and(|at| at.elapsed() < ANCHOR_RETRY)
        {
            return;
        }
        let Some(durable) = flush.heads.lock().ok().map(|h| h.durable.clone()) else {
            return;
        };
        let new = anchor_of(durable.records, &durable.hash);
        let Ok(mut anchored) = self.anchored.lock() else {
            return;
        };
        if anchored.as_ref() == Some(&new) {
            return;
        }
        match self.db.set_audit_anchor(&self.name, anchored.as_ref(), &new) {
            Ok(true) => {
                *anchored = Some(new);
                if let Ok(mut f) = self.failed_at.lock() {
                    *f = None;
                }
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(log = %self.name, "audit log: anchored in the slashing database again");
                }
            }
            Ok(false) => flush.set_tampered(format!(
                "its anchor in the slashing database (name {:?}) was moved by another process: \
                 two instances use one [audit] name, or `signer audit acknowledge` ran while the signer was serving",
                self.name
            )),
            Err(e) => {
                if let Ok(mut f) = self.failed_at.lock() {
                    *f = Some(std::time::Instant::now());
                }
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(log = %self.name, error = %e, "audit log: the anchor could not be stored; retrying every 10 s (signing goes on: the records are written)");
                }
            }
        }
    }
}

impl AuditSink {
    pub(crate) fn new(log: AuditLog) -> Result<Self, AuditError> {
        Self::with_flush_interval(log, DEFAULT_FLUSH_INTERVAL)
    }

    /// A sink whose flusher makes records durable every `interval`.
    pub(crate) fn with_flush_interval(
        log: AuditLog,
        interval: Duration,
    ) -> Result<Self, AuditError> {
        // What is in the file is durable from here (a crash before this
        // start may have left it in the page cache only).
        log.sync()?;
        let head = Head::of(&log);
        let flush = Arc::new(AuditFlush {
            file: log.sync_handle()?,
            path: log.path().to_owned(),
            heads: Mutex::new(Heads {
                appended: head.clone(),
                durable: head,
            }),
            stop: AtomicBool::new(false),
            failed: Mutex::new(None),
            tampered: Mutex::new(None),
            wake: (Mutex::new(()), Condvar::new()),
            work: Condvar::new(),
            interval_us: AtomicU64::new(micros(interval)),
            #[cfg(test)]
            rounds: AtomicU64::new(0),
        });
        let f = flush.clone();
        let flusher = std::thread::Builder::new()
            .name("signer-audit-flush".into())
            .spawn(move || f.run_flusher())
            .map_err(|e| AuditError::Io {
                path: "audit flusher thread".into(),
                source: e,
            })?;
        Ok(Self {
            log: Mutex::new(log),
            trouble: Mutex::new(None),
            flush,
            flusher: Mutex::new(Some(flusher)),
            anchorer: Mutex::new(None),
        })
    }

    /// Makes written records durable every `interval` from the flusher's
    /// next round on (default [`DEFAULT_FLUSH_INTERVAL`]).
    pub(crate) fn set_flush_interval(&self, interval: Duration) {
        self.flush
            .interval_us
            .store(micros(interval), Ordering::Relaxed);
        // The flusher waits anew, with this interval.
        self.flush.wake_flusher();
    }

    /// Starts keeping the log's anchor in `db` under `name`, from
    /// `anchored` (what [`super::check_anchor`] accepted at start): once a
    /// second, and at drop. Also starts watching the file.
    pub(crate) fn anchor(
        &self,
        db: Arc<SlashingDb>,
        name: String,
        anchored: Option<AuditAnchor>,
    ) -> Result<(), AuditError> {
        let a = Arc::new(Anchorer {
            db,
            name,
            anchored: Mutex::new(anchored),
            failing: AtomicBool::new(false),
            failed_at: Mutex::new(None),
        });
        let (anchorer, flush) = (a.clone(), self.flush.clone());
        let thread = std::thread::Builder::new()
            .name("signer-audit-anchor".into())
            .spawn(move || {
                loop {
                    if let Ok(g) = flush.wake.0.lock() {
                        let _ = flush.wake.1.wait_timeout(g, ANCHOR_INTERVAL);
                    }
                    if flush.stop.load(Ordering::Acquire) {
                        break;
                    }
                    if let Some(why) = flush.watch() {
                        flush.set_tampered(why);
                    }
                    anchorer.step(&flush);
                }
            })
            .map_err(|e| AuditError::Io {
                path: "audit anchor thread".into(),
                source: e,
            })?;
        if let Ok(mut slot) = self.anchorer.lock() {
            *slot = Some((a, thread));
        }
        Ok(())
    }

    pub(crate) fn write(&self, entries: Vec<Entry>) -> Result<(), SinkError> {
        if let Some(e) = self.flush.failed.lock().ok().and_then(|f| f.clone()) {
            return Err(e);
        }
        if let Some(why) = self.flush.tampered() {
            return Err(SinkError::Tampered(why));
        }
        let mut log = self.log.lock().map_err(|_| SinkError::Poisoned)?;
        let mut written = Ok(());
        for e in entries {
            if let Err(e) = log.append(e) {
                written = Err(SinkError::Append(Arc::new(e)));
                break;
            }
        }
        let mut was_clean = false;
        if let Ok(mut h) = self.flush.heads.lock()
            && h.appended.records != log.records()
        {
            was_clean = h.durable.records == h.appended.records;
            h.appended = Head::of(&log);
        }
        drop(log);
        if was_clean {
            // The first record since the last flush: the flusher may be
            // asleep with nothing to do.
            self.flush.wake_flusher();
        }
        if let Ok(mut trouble) = self.trouble.lock() {
            match (&written, trouble.is_some()) {
                (Err(e), false) => {
                    tracing::error!(error = %e, "audit log: a record could not be written; every request is refused until one can be (the audit record is part of the answer)");
                    *trouble = Some((e.to_string(), std::time::Instant::now()));
                }
                (Err(e), true) => *trouble = Some((e.to_string(), std::time::Instant::now())),
                (Ok(()), true) => {
                    tracing::warn!("audit log: records are written again; signing resumes");
                    *trouble = None;
                }
                (Ok(()), false) => {}
            }
        }
        written
    }

    /// Records written, and records anchored in the slashing database
    /// (`None` before the first anchor, or without anchoring).
    pub(crate) fn positions(&self) -> (u64, Option<u64>) {
        let written = self.flush.heads.lock().map_or(0, |h| h.appended.records);
        let anchored = self.anchorer.lock().ok().and_then(|a| {
            a.as_ref().and_then(|(a, _)| {
                a.anchored
                    .lock()
                    .ok()
                    .and_then(|x| x.as_ref().map(|x| x.records))
            })
        });
        (written, anchored)
    }

    /// `Err` while the log cannot take records (the last write failed, or a
    /// flush did), with why.
    pub(crate) fn health(&self) -> Result<(), String> {
        if let Some(e) = self.flush.failed.lock().ok().and_then(|f| f.clone()) {
            return Err(format!("{e}; restart the signer once the disk is healthy"));
        }
        if let Some(why) = self.flush.tampered() {
            return Err(why.to_string());
        }
        // Red for a while after a failure, then green again so that traffic
        // returns and the next request finds out whether the disk has room:
        // the log cannot test itself without writing a record.
        match self.trouble.lock().ok().and_then(|t| t.clone()) {
            Some((why, at)) if at.elapsed() < AUDIT_RETRY_AFTER => {
                Err(format!("last record not written: {why}"))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for AuditSink {
    fn drop(&mut self) {
        self.flush.stop.store(true, Ordering::Release);
        // The flusher and the anchorer, under the mutex they wait with.
        if let Ok(_g) = self.flush.wake.0.lock() {
            self.flush.work.notify_all();
            self.flush.wake.1.notify_all();
        }
        if let Some(t) = self.flusher.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
        let anchorer = self.anchorer.lock().ok().and_then(|mut a| a.take());
        if let Some((a, t)) = anchorer {
            let _ = t.join();
            // Whatever the flusher had not reached, then the exact anchor:
            // after a clean stop, even the last record is pinned.
            self.flush.sync();
            if let Some(why) = self.flush.watch() {
                self.flush.set_tampered(why);
            }
            a.step(&self.flush);
        } else {
            self.flush.sync();
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> Entry {
        Entry {
            client: "test".into(),
            frontend: None,
            key: "00".into(),
            request: "test".into(),
            position: Some(n),
            outcome: "signed".into(),
            note: None,
        }
    }

    fn heads(sink: &AuditSink) -> (u64, u64) {
        let h = sink.flush.heads.lock().unwrap();
        (h.appended.records, h.durable.records)
    }

    /// Waits until the flusher has made all `n` written records durable.
    /// A liveness bound (30 s), not a timing figure.
    fn wait_durable(sink: &AuditSink, n: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while heads(sink).1 < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the flusher never made the records durable: {:?}",
                heads(sink)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(heads(sink), (n, n));
    }

    /// Written records wait for the flusher's interval; a shorter interval
    /// set later wakes it, and it makes them durable.
    #[test]
    fn records_are_flushed_on_the_configured_interval() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        let sink = AuditSink::with_flush_interval(log, Duration::from_secs(3600)).unwrap();
        sink.write((1..=3).map(entry).collect()).unwrap();
        assert_eq!(
            heads(&sink),
            (3, 0),
            "nothing is flushed before the interval"
        );
        sink.set_flush_interval(Duration::from_millis(1));
        wait_durable(&sink, 3);
    }

    /// An idle sink's flusher sleeps (it used to wake every interval, 200
    /// times a second, to find nothing to do); the first record wakes it
    /// and is made durable.
    #[test]
    fn an_idle_flusher_sleeps_until_a_record_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        let sink = AuditSink::with_flush_interval(log, Duration::from_millis(1)).unwrap();
        let before = sink.flush.rounds.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
        let idle = sink.flush.rounds.load(Ordering::Relaxed) - before;
        assert!(
            idle <= 2,
            "the flusher woke {idle} times in 300 ms with nothing to do (1 ms interval)"
        );
        sink.write(vec![entry(1)]).unwrap();
        wait_durable(&sink, 1);
    }

    /// The tamper watch runs while records are appended: a log that only
    /// grows is never taken for a truncated one (it was, when the watch
    /// read the file's length before the written length: an append in
    /// between made the file look shorter than what was written, and
    /// signing stopped until a restart).
    #[test]
    fn a_growing_log_is_never_taken_for_a_truncated_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        let sink =
            Arc::new(AuditSink::with_flush_interval(log, Duration::from_secs(3600)).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (sink, stop) = (sink.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    sink.write(vec![entry(n)]).unwrap();
                    n += 1;
                }
                n
            })
        };
        let mut checks = 0;
        while checks < 20_000 {
            if let Some(why) = sink.flush.watch() {
                stop.store(true, Ordering::Relaxed);
                panic!("check {checks}: the growing log was found tampered: {why}");
            }
            checks += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let written = writer.join().unwrap();
        assert!(
            written > 100,
            "the writer barely ran ({written} records): the test proved nothing"
        );
        println!("{checks} checks while {written} records were appended");
    }
}
