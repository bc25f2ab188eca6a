//! The audit log as the signing workers share it.

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{AuditError, AuditLog, Entry};

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
}

/// How long readiness stays red after a record could not be written.
const AUDIT_RETRY_AFTER: Duration = Duration::from_secs(10);

/// How often appended audit records are made durable.
const AUDIT_FLUSH_INTERVAL: Duration = Duration::from_millis(5);

/// The audit log, shared by the workers. Records are appended (one
/// `write(2)` each) before a request is answered, so a process crash loses
/// none; a flusher thread makes them durable with one `fdatasync` every
/// [`AUDIT_FLUSH_INTERVAL`], off the signing path. Only a power loss can
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
}

#[derive(Debug)]
struct AuditFlush {
    file: File,
    appended: AtomicU64,
    synced: AtomicU64,
    stop: AtomicBool,
    /// The first fsync error; after one, every request is refused.
    failed: Mutex<Option<SinkError>>,
    wake: (Mutex<()>, Condvar),
}

impl AuditFlush {
    fn sync(&self) {
        let target = self.appended.load(Ordering::Acquire);
        if self.synced.load(Ordering::Acquire) >= target {
            return;
        }
        match self.file.sync_data() {
            Ok(()) => self.synced.store(target, Ordering::Release),
            Err(e) => {
                if let Ok(mut f) = self.failed.lock() {
                    f.get_or_insert_with(|| SinkError::Fsync(Arc::new(e)));
                }
            }
        }
    }
}

impl AuditSink {
    pub(crate) fn new(log: AuditLog) -> Result<Self, AuditError> {
        let n = log.records();
        let flush = Arc::new(AuditFlush {
            file: log.sync_handle()?,
            appended: AtomicU64::new(n),
            synced: AtomicU64::new(n),
            stop: AtomicBool::new(false),
            failed: Mutex::new(None),
            wake: (Mutex::new(()), Condvar::new()),
        });
        let f = flush.clone();
        let flusher = std::thread::Builder::new()
            .name("signer-audit-flush".into())
            .spawn(move || {
                while !f.stop.load(Ordering::Acquire) {
                    if let Ok(g) = f.wake.0.lock() {
                        let _ = f.wake.1.wait_timeout(g, AUDIT_FLUSH_INTERVAL);
                    }
                    f.sync();
                }
            })
            .map_err(|e| AuditError::Io {
                path: "audit flusher thread".into(),
                source: e,
            })?;
        Ok(Self {
            log: Mutex::new(log),
            trouble: Mutex::new(None),
            flush,
            flusher: Mutex::new(Some(flusher)),
        })
    }

    pub(crate) fn write(&self, entries: Vec<Entry>) -> Result<(), SinkError> {
        if let Some(e) = self.flush.failed.lock().ok().and_then(|f| f.clone()) {
            return Err(e);
        }
        let mut log = self.log.lock().map_err(|_| SinkError::Poisoned)?;
        let mut written = Ok(());
        for e in entries {
            if let Err(e) = log.append(e) {
                written = Err(SinkError::Append(Arc::new(e)));
                break;
            }
        }
        self.flush.appended.store(log.records(), Ordering::Release);
        drop(log);
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

    /// `Err` while the log cannot take records (the last write failed, or a
    /// flush did), with why.
    pub(crate) fn health(&self) -> Result<(), String> {
        if let Some(e) = self.flush.failed.lock().ok().and_then(|f| f.clone()) {
            return Err(format!("{e}; restart the signer once the disk is healthy"));
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
        self.flush.wake.1.notify_all();
        if let Some(t) = self.flusher.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
        // Whatever the flusher had not reached.
        self.flush.sync();
    }
}
