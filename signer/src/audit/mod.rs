//! The audit log: one JSON line per decision (client, key, request type,
//! slot/height, outcome), append-only, each line carrying `prev`, the SHA-256
//! of the previous line's bytes, and `seq`. Editing, removing, reordering or
//! inserting a line breaks the chain at that line; `verify` finds it.
//!
//! A chain alone cannot pin its newest line, nor notice that its last lines
//! were removed or the whole file replaced by a fresh chain. The slashing
//! database therefore holds an *anchor* per log (records, head hash; see
//! [`slashing_db::anchor`]), which the daemon moves forward about once a
//! second to what is durably written, and exactly at a clean stop;
//! [`check_anchor`] compares a log with it (`signer audit verify --config`,
//! and the daemon at start). Decision 0008.
//!
//! A crash can leave a torn last line. `verify` reports it as such (not as
//! tampering), and [`AuditLog::open`] cuts it off before appending, so the
//! chain continues from the last complete record.
//!
//! Durability: each record is written with one `write` and the file is
//! `fdatasync`ed by [`AuditLog::sync`] (the daemon calls it per batch). The
//! slashing database, not this log, is what protects against double signing.

mod sink;

pub(crate) use sink::AuditSink;
pub use sink::{DEFAULT_FLUSH_INTERVAL, SinkError};

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev` of the first record.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One decision, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Position in the log, from 0.
    pub seq: u64,
    /// UTC time, RFC 3339 with milliseconds.
    pub time: String,
    /// The client's policy name.
    pub client: String,
    /// How it reached the signer (`grpc`, `http`, `privval`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend: Option<String>,
    /// The key, hex.
    pub key: String,
    /// Request type (`eth2.attestation`, `cometbft.vote`, …).
    pub request: String,
    /// Slot (Ethereum) or height (CometBFT), when the request has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// `signed`, or `refused:<reason>`.
    pub outcome: String,
    /// SHA-256 (hex) of the previous line, without its newline.
    pub prev: String,
    /// Free text: for events that are not requests (an acknowledged loss),
    /// and why the policy refused a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What the caller fills in; `seq`, `time` and `prev` are the log's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The client's policy name.
    pub client: String,
    /// How it reached the signer.
    pub frontend: Option<String>,
    /// The key, hex.
    pub key: String,
    /// Request type.
    pub request: String,
    /// Slot or height.
    pub position: Option<u64>,
    /// `signed` or `refused:<reason>`.
    pub outcome: String,
    /// Free text, for events that are not requests.
    pub note: Option<String>,
}

/// Audit log errors.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// File system.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Another process has the log open for appending (a running signer).
    #[error("{}: in use by another process (a signer running on this log; two writers would break the chain)", path.display())]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// The existing log does not verify: appending would hide the break.
    #[error("{}: the existing log does not verify ({problem}); keep it as evidence and start a new file", path.display())]
    Broken {
        /// The file.
        path: PathBuf,
        /// The first problem.
        #[source]
        problem: Problem,
    },
}

/// The first problem `verify` finds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A line that is not a record.
    #[error("line {line}: not an audit record")]
    Malformed {
        /// 1-based line number.
        line: usize,
    },
    /// `seq` out of order (a line removed, inserted or moved).
    #[error("line {line}: sequence {found}, expected {expected}")]
    Sequence {
        /// 1-based line number.
        line: usize,
        /// `seq` found.
        found: u64,
        /// `seq` expected.
        expected: u64,
    },
    /// `prev` is not the hash of the line before (that line was altered).
    #[error("line {line}: hash chain broken (line {} was altered, or lines are missing)", line - 1)]
    Chain {
        /// 1-based line number of the record whose `prev` does not match.
        line: usize,
    },
}

/// Result of verifying a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Complete records in the chain.
    pub records: u64,
    /// A torn last line (a crash mid-write), not part of the chain.
    pub torn_tail: bool,
    /// Hash of the last complete record (`prev` of the next one).
    pub head: String,
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Checks the chain of `path`. `Ok` with the number of records, or the first problem.
pub fn verify(path: &Path) -> Result<Result<Verified, Problem>, AuditError> {
    Ok(verify_at(path, None)?.map(|(v, _)| v))
}

/// [`verify`], also returning the head after the first `at` records (the
/// `prev` the record `at` must carry), when the chain reaches that far.
fn verify_at(
    path: &Path,
    at: Option<u64>,
) -> Result<Result<(Verified, Option<String>), Problem>, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut expected_prev = GENESIS_PREV.to_owned();
    let mut seq = 0u64;
    let mut line_no = 0usize;
    let mut buf = Vec::new();
    let mut head_at = None;
    loop {
        if Some(seq) == at {
            head_at = Some(expected_prev.clone());
        }
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
        // No newline at the end: the last write did not finish (torn).
        let torn = n != 0 && !buf.ends_with(b"\n");
        if n == 0 || torn {
            let v = Verified {
                records: seq,
                torn_tail: torn,
                head: expected_prev,
            };
            return Ok(Ok((v, head_at)));
        }
        line_no += 1;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let Ok(record) = serde_json::from_slice::<Record>(line) else {
            return Ok(Err(Problem::Malformed { line: line_no }));
        };
        if record.seq != seq {
            return Ok(Err(Problem::Sequence {
                line: line_no,
                found: record.seq,
                expected: seq,
            }));
        }
        if record.prev != expected_prev {
            return Ok(Err(Problem::Chain { line: line_no }));
        }
        expected_prev = sha256_hex(line);
        seq += 1;
    }
}

/// How an audit log stands against its anchor in the slashing database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorCheck {
    /// The database has no anchor for this log yet (first start, or a
    /// database from before anchors).
    Unanchored(Verified),
    /// The log holds the anchored records unchanged, and perhaps more
    /// (written after the last anchor).
    Matches(Verified),
    /// There is no log file, but the anchor says records were written.
    Missing {
        /// Records anchored.
        anchored: u64,
    },
    /// The log ends before the anchored position: records were removed
    /// from its end, or it was replaced by a shorter chain.
    Truncated {
        /// What the log holds.
        log: Verified,
        /// Records anchored.
        anchored: u64,
    },
    /// The record at the anchored position is not the anchored one: the
    /// file was replaced (a new chain) or rewritten.
    Replaced {
        /// What the log holds.
        log: Verified,
        /// Records anchored.
        anchored: u64,
    },
    /// The chain itself is broken.
    Broken(Problem),
}

impl AnchorCheck {
    /// Whether the daemon may append to this log.
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Unanchored(_) | Self::Matches(_))
    }
}

impl std::fmt::Display for AnchorCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unanchored(v) => write!(
                f,
                "{} records, chain intact; no anchor in the slashing database yet (the signer sets one when it runs)",
                v.records
            ),
            Self::Matches(v) => write!(
                f,
                "{} records, chain intact, matches the slashing database's anchor",
                v.records
            ),
            Self::Missing { anchored } => write!(
                f,
                "the log does not exist, but the slashing database anchors {anchored} records of it: it was deleted or moved"
            ),
            Self::Truncated { log, anchored } => write!(
                f,
                "the log has {} records but the slashing database anchors {anchored}: {} records were removed from its end, or the file was replaced",
                log.records,
                anchored - log.records
            ),
            Self::Replaced { anchored, .. } => write!(
                f,
                "record {} is not the one the slashing database anchors: the log was replaced or rewritten",
                anchored.saturating_sub(1)
            ),
            Self::Broken(p) => write!(f, "{p}"),
        }
    }
}

/// Compares the log at `path` with its anchor.
pub fn check_anchor(
    path: &Path,
    anchor: Option<&slashing_db::AuditAnchor>,
) -> Result<AnchorCheck, AuditError> {
    let Some(anchor) = anchor.filter(|a| a.records > 0) else {
        if !path.exists() {
            return Ok(AnchorCheck::Unanchored(Verified {
                records: 0,
                torn_tail: false,
                head: GENESIS_PREV.to_owned(),
            }));
        }
        return Ok(match verify(path)? {
            Ok(v) if anchor.is_some() => AnchorCheck::Matches(v),
            Ok(v) => AnchorCheck::Unanchored(v),
            Err(p) => AnchorCheck::Broken(p),
        });
    };
    let anchored = anchor.records;
    if !path.exists() {
        return Ok(AnchorCheck::Missing { anchored });
    }
    Ok(match verify_at(path, Some(anchored))? {
        Err(p) => AnchorCheck::Broken(p),
        Ok((log, None)) => AnchorCheck::Truncated { log, anchored },
        Ok((log, Some(head))) if head == hex::encode(anchor.head) => AnchorCheck::Matches(log),
        Ok((log, Some(_))) => AnchorCheck::Replaced { log, anchored },
    })
}

/// The anchor for a log's current head.
pub fn anchor_of(records: u64, head: &str) -> slashing_db::AuditAnchor {
    let mut h = [0u8; 32];
    // Heads are our own sha256 hex; a malformed one anchors zeros, which
    // then fails to match loudly rather than silently.
    let _ = hex::decode_to_slice(head, &mut h);
    slashing_db::AuditAnchor { records, head: h }
}

/// Now, as audit records write it.
pub fn now() -> String {
    rfc3339(SystemTime::now())
}

/// RFC 3339 UTC with milliseconds for a time since the Unix epoch.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // civil_from_days (Howard Hinnant), for days since 1970-01-01.
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// An open audit log, appending.
#[derive(Debug)]
pub struct AuditLog {
    file: File,
    path: PathBuf,
    seq: u64,
    prev: String,
    /// Bytes of complete records: where the next one starts.
    len: u64,
    /// Set when a failed write could not be cut off: the file may end in a
    /// partial record, and appending after it would break the chain.
    broken: Option<String>,
}

impl AuditLog {
    /// Opens (creating, mode 0600) the log at `path`, locked against other
    /// writers (`flock`, held while this value lives). An existing log must
    /// verify; a torn last line is cut off first.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(AuditError::InUse {
                    path: path.to_owned(),
                });
            }
            Err(e) => return Err(io(e.into())),
        }
        let v = verify(path)?.map_err(|p| AuditError::Broken {
            path: path.to_owned(),
            problem: p,
        })?;
        if v.torn_tail {
            // Keep exactly the complete records.
            let mut reader = BufReader::new(File::open(path).map_err(io)?);
            let mut keep = 0u64;
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
                if n == 0 || !buf.ends_with(b"\n") {
                    break;
                }
                keep += n as u64;
            }
            file.set_len(keep).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let mut file = file;
        let len = file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok(Self {
            file,
            path: path.to_owned(),
            seq: v.records,
            prev: v.head,
            len,
            broken: None,
        })
    }

    /// Appends one record (one `write` call, so a crash tears at most this line).
    ///
    /// A write that fails part way (a full disk) is cut off at once: the file
    /// goes back to its last complete record, and the record's sequence
    /// number and hash are not used, so the next append — when space is back
    /// — continues the chain as if the failed one had never been tried. If
    /// even the cut fails, the log refuses every append until the daemon is
    /// restarted (opening cuts a torn last line).
    pub fn append(&mut self, e: Entry) -> Result<Record, AuditError> {
        if let Some(why) = &self.broken {
            return Err(AuditError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(format!(
                    "a failed write could not be cut off ({why}); restart the signer to repair the log"
                )),
            });
        }
        let record = Record {
            seq: self.seq,
            time: rfc3339(SystemTime::now()),
            client: e.client,
            frontend: e.frontend,
            key: e.key,
            request: e.request,
            position: e.position,
            outcome: e.outcome,
            prev: self.prev.clone(),
            note: e.note,
        };
        let mut line = serde_json::to_vec(&record).map_err(|e| AuditError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        let hash = sha256_hex(&line);
        line.push(b'\n');
        if let Err(source) = self.file.write_all(&line) {
            if let Err(cut) = self.file.set_len(self.len) {
                self.broken = Some(cut.to_string());
            }
            return Err(AuditError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.len += line.len() as u64;
        self.seq += 1;
        self.prev = hash;
        Ok(record)
    }

    /// Records in the log (the next record's `seq`).
    pub fn records(&self) -> u64 {
        self.seq
    }

    /// Hash of the last record (`prev` of the next one).
    pub fn head(&self) -> &str {
        &self.prev
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of complete records.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// A second handle on the file, to make appended records durable
    /// without holding the log (several appenders then share one fsync).
    pub fn sync_handle(&self) -> Result<File, AuditError> {
        self.file.try_clone().map_err(|source| AuditError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Makes everything appended so far durable.
    pub fn sync(&self) -> Result<(), AuditError> {
        self.file.sync_data().map_err(|source| AuditError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        let at =
            |s: u64, ms: u64| rfc3339(UNIX_EPOCH + std::time::Duration::from_millis(s * 1000 + ms));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_570_983_284, 5), "2019-10-13T16:14:44.005Z");
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
    }
}
