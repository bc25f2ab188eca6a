//! The daemon before it serves. Keys load last (after configuration, TLS
//! material, policy, the slashing database and the audit log, which are
//! cheap to check), and with thousands of scrypt keystores loading takes
//! minutes: [`KeyLoad`] counts it, the log shows it every few seconds, the
//! metrics listener answers `/status` and `/readyz` with it, and systemd's
//! `STATUS=` line carries it.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::KeySource;

/// How far key loading has come (shared by the loader and whoever reports it).
#[derive(Debug)]
pub struct KeyLoad {
    started: Instant,
    total: usize,
    loaded: AtomicUsize,
    failed: AtomicUsize,
    /// Keystores the parallel KDF pass opened / could not open (before the
    /// keys are put together, which then goes fast).
    opened: AtomicUsize,
    unopened: AtomicUsize,
}

/// One reading of a [`KeyLoad`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Keys loaded.
    pub loaded: usize,
    /// Keys (or key files) that failed.
    pub failed: usize,
    /// What is expected in all (at least `loaded + failed`).
    pub total: usize,
    /// Since loading began.
    pub elapsed: Duration,
    /// What is left, at the rate so far (none before the first key).
    pub left: Option<Duration>,
}

impl KeyLoad {
    /// Starts counting towards the keys `sources` name.
    pub fn new(sources: &[KeySource]) -> Self {
        Self {
            started: Instant::now(),
            total: expected(sources),
            loaded: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            opened: AtomicUsize::new(0),
            unopened: AtomicUsize::new(0),
        }
    }

    /// One keystore through the KDF (`ok`: it opened).
    pub fn decrypted(&self, ok: bool) {
        let n = if ok { &self.opened } else { &self.unopened };
        n.fetch_add(1, Ordering::Relaxed);
    }

    /// One more key loaded.
    pub fn loaded(&self) {
        self.loaded.fetch_add(1, Ordering::Relaxed);
    }

    /// One more key (or key file) failed.
    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Where loading stands now.
    pub fn progress(&self) -> Progress {
        // The KDF pass runs first and counts keystores; the keys are then
        // put together quickly and counted again: show the further of the two.
        let loaded = self
            .loaded
            .load(Ordering::Relaxed)
            .max(self.opened.load(Ordering::Relaxed));
        let failed = self
            .failed
            .load(Ordering::Relaxed)
            .max(self.unopened.load(Ordering::Relaxed));
        let seen = loaded + failed;
        let total = self.total.max(seen);
        let elapsed = self.started.elapsed();
        let left = time_left(elapsed, seen, total);
        Progress {
            loaded,
            failed,
            total,
            elapsed,
            left,
        }
    }
}

/// Keys the sources should yield: one per entry, one per key file in a
/// Web3Signer directory (a file may hold more; the total then grows).
fn expected(sources: &[KeySource]) -> usize {
    sources
        .iter()
        .map(|s| match s {
            KeySource::Web3signerDir { path } => yaml_files(path),
            _ => 1,
        })
        .sum()
}

fn yaml_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.path()
                    .extension()
                    .is_some_and(|x| x == "yaml" || x == "yml")
            })
            .count()
    })
}

/// What is left of `total` items at the rate of the `done` so far (none
/// before the first).
pub fn time_left(elapsed: Duration, done: usize, total: usize) -> Option<Duration> {
    let done_n = u32::try_from(done).ok().filter(|&n| n > 0)?;
    let rest = u32::try_from(total.saturating_sub(done)).ok()?;
    (elapsed / done_n).checked_mul(rest)
}

/// `1h02m`, `3m05s`, `12s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

impl Progress {
    /// `120 of 10000 keys loaded (1%), 0 failed, 1m05s so far, about 3h10m left`.
    pub fn line(&self) -> String {
        let mut s = format!("{} of {} keys loaded", self.loaded, self.total);
        if let Some(pct) = (self.loaded * 100).checked_div(self.total) {
            let _ = write!(s, " ({pct}%)");
        }
        let _ = write!(
            s,
            ", {} failed, {} so far",
            self.failed,
            human(self.elapsed)
        );
        if let Some(left) = self.left {
            let _ = write!(s, ", about {} left", human(left));
        }
        s
    }

    /// The `starting.keys` object of `/status`.
    pub fn json(&self) -> Value {
        json!({
            "loaded": self.loaded,
            "failed": self.failed,
            "total": self.total,
            "elapsed_seconds": self.elapsed.as_secs(),
            "left_seconds": self.left.map(|d| d.as_secs()),
        })
    }
}
