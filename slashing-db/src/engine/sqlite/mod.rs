//! The embedded engine: one SQLite file (bundled SQLite), owned exclusively by
//! one process.
//!
//! Durability settings, each checked after it is set:
//! - `journal_mode=WAL` and `synchronous=FULL`: every commit fsyncs the WAL
//!   before `COMMIT` returns (under `NORMAL`, WAL commits are not synced).
//! - `locking_mode=EXCLUSIVE`: the first transaction takes the file lock and
//!   keeps it until the connection closes, so a second signer (or an offline
//!   CLI command) cannot open the database while a daemon runs. No `-shm` file
//!   is used.
//! - `foreign_keys=ON`, `trusted_schema=OFF`, `busy_timeout=0` (fail at once).
//! - The file is created with mode 0600 before SQLite opens it, and the
//!   directory is fsynced so the new entry survives a power cut. SQLite gives
//!   the `-wal` file the same mode.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::schema::{MIGRATIONS, SCHEMA_VERSION};
use super::{Engine, ValidatorId};
use crate::error::DbError;
use crate::types::{GenesisRoot, SigningRoot};

mod history;

/// How to open the SQLite engine.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Run `PRAGMA quick_check` at open (reads the whole file once: about a
    /// second per few hundred MB). On by default: a damaged file must be found
    /// before anything is signed against it, not in the middle of a burst.
    pub integrity_check: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            integrity_check: true,
        }
    }
}

/// The SQLite [`Engine`].
#[derive(Debug)]
pub struct SqliteEngine {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    /// The pinned network once read; it never changes after a commit, so it
    /// is read once. Cleared on rollback (the pin may have been undone).
    pub(super) genesis: Option<GenesisRoot>,
}

impl SqliteEngine {
    /// Opens (creating if missing) the database at `path`, migrating it to
    /// [`SCHEMA_VERSION`].
    pub fn open(path: &Path, opts: &SqliteOptions) -> Result<Self, DbError> {
        create_private(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| map(path, "opening", e))?;
        let mut engine = Self {
            conn,
            path: path.to_owned(),
            genesis: None,
        };
        engine.configure()?;
        engine.begin()?;
        match engine.check_and_migrate(opts) {
            Ok(()) => engine.commit()?,
            Err(e) => {
                let _ = engine.rollback();
                return Err(e);
            }
        }
        Ok(engine)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&mut self) -> Result<(), DbError> {
        let p = self.path.clone();
        let c = &self.conn;
        c.busy_timeout(std::time::Duration::ZERO)
            .map_err(|e| map(&p, "configuring", e))?;
        c.set_prepared_statement_cache_capacity(64);
        c.execute_batch("PRAGMA locking_mode = EXCLUSIVE; PRAGMA trusted_schema = OFF; PRAGMA foreign_keys = ON;")
            .map_err(|e| map(&p, "configuring", e))?;
        let mode: String = c
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| map(&p, "enabling WAL", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError::Corrupt {
                path: p,
                detail: format!("could not enable WAL journal mode (got {mode:?})"),
            });
        }
        c.execute_batch("PRAGMA synchronous = FULL;")
            .map_err(|e| map(&p, "configuring", e))?;
        let sync: i64 = c
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(|e| map(&p, "configuring", e))?;
        let fk: i64 = c
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .map_err(|e| map(&p, "configuring", e))?;
        if sync != 2 || fk != 1 {
            return Err(DbError::Corrupt {
                path: p,
                detail: format!(
                    "durability settings did not take (synchronous={sync}, foreign_keys={fk})"
                ),
            });
        }
        Ok(())
    }

    fn check_and_migrate(&mut self, opts: &SqliteOptions) -> Result<(), DbError> {
        let p = self.path.clone();
        if opts.integrity_check {
            let verdict: String = self
                .conn
                .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
                .map_err(|e| map(&p, "checking integrity", e))?;
            if verdict != "ok" {
                return Err(DbError::Corrupt {
                    path: p,
                    detail: verdict,
                });
            }
        }
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| map(&p, "reading schema version", e))?;
        if version > SCHEMA_VERSION {
            return Err(DbError::SchemaTooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version == 0 {
            let tables: i64 = self
                .conn
                .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
                .map_err(|e| map(&p, "reading schema", e))?;
            if tables != 0 {
                return Err(DbError::Corrupt {
                    path: p,
                    detail: "an SQLite database, but not a slashing-protection database".into(),
                });
            }
        }
        let start = usize::try_from(version).unwrap_or(usize::MAX);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(start) {
            self.conn
                .execute_batch(sql)
                .map_err(|e| map(&p, "migrating schema", e))?;
            let next = i64::try_from(i + 1).unwrap_or(i64::MAX);
            self.conn
                .pragma_update(None, "user_version", next)
                .map_err(|e| map(&p, "migrating schema", e))?;
            tracing::info!(path = %p.display(), from = i, to = next, "slashing database schema migrated");
        }
        Ok(())
    }

    /// Runs one statement, prepared once and cached: transaction control runs
    /// four times per group commit and twice per caller in it.
    pub(super) fn exec(&self, context: &'static str, sql: &str) -> Result<(), DbError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut st| st.execute([]))
            .map(|_| ())
            .map_err(|e| map(&self.path, context, e))
    }

    /// One nullable integer from a single-row query on one validator.
    ///
    /// The min()/max() queries write `validator_id = +?1`. With a bare `?1`
    /// this SQLite build (rusqlite's bundled one, STAT4 enabled) re-prepares a
    /// min()/max() or ORDER BY … LIMIT statement every time the parameter
    /// changes (measured: 60% of a decision's CPU time when the bounds were
    /// read that way). The unary plus keeps the index (EXPLAIN QUERY PLAN) and
    /// stops the re-prepare.
    pub(super) fn one(
        &self,
        context: &'static str,
        sql: &str,
        v: ValidatorId,
    ) -> Result<Option<i64>, DbError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut st| {
                st.query_row([v.0], |r| r.get::<_, Option<i64>>(0))
                    .optional()
            })
            .map(Option::flatten)
            .map_err(|e| map(&self.path, context, e))
    }

    pub(super) fn err(&self, context: &'static str) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        move |e| map(&self.path, context, e)
    }
}

/// Creates the file with mode 0600 if it does not exist, and syncs its directory.
fn create_private(path: &Path) -> Result<(), DbError> {
    let io_err = |context, source| DbError::Io {
        context,
        path: path.to_owned(),
        source,
    };
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => {
            f.sync_all()
                .map_err(|e| io_err("syncing new database file", e))?;
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err("syncing database directory", e))?;
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", meta.permissions().mode() & 0o777),
                    "slashing database is readable by other users; chmod 600 it"
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::ReadOnlyFilesystem => Err(DbError::ReadOnly),
        Err(e) => Err(io_err("creating database file", e)),
    }
}

/// Maps an SQLite error to the typed error callers act on.
pub(super) fn map(path: &Path, context: &'static str, e: rusqlite::Error) -> DbError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => DbError::DiskFull,
        Some(ErrorCode::ReadOnly) => DbError::ReadOnly,
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DbError::InUse {
            path: path.to_owned(),
        },
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => DbError::Corrupt {
            path: path.to_owned(),
            detail: e.to_string(),
        },
        Some(ErrorCode::SystemIoFailure) => {
            // A write that failed because the file system went read-only is
            // reported as such; any other I/O failure leaves state uncertain.
            if fs::OpenOptions::new()
                .append(true)
                .open(path)
                .is_err_and(|oe| oe.kind() == io::ErrorKind::ReadOnlyFilesystem)
            {
                DbError::ReadOnly
            } else {
                DbError::EngineIo {
                    context,
                    source: Box::new(e),
                }
            }
        }
        _ => DbError::Engine {
            context,
            source: Box::new(e),
        },
    }
}

pub(super) fn to_i64(what: &'static str, v: u64) -> Result<i64, DbError> {
    i64::try_from(v).map_err(|_| DbError::OutOfRange { what, value: v })
}

pub(super) fn corrupt(path: &Path, detail: impl Into<String>) -> DbError {
    DbError::Corrupt {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

pub(super) fn to_u64(path: &Path, v: i64) -> Result<u64, DbError> {
    u64::try_from(v).map_err(|_| corrupt(path, format!("negative value {v} stored")))
}

pub(super) fn to_root(path: &Path, b: Option<Vec<u8>>) -> Result<Option<SigningRoot>, DbError> {
    b.map(|b| {
        SigningRoot::from_slice(&b).ok_or_else(|| corrupt(path, "signing root of wrong length"))
    })
    .transpose()
}

pub(super) fn root_param(r: Option<&SigningRoot>) -> Option<&[u8]> {
    r.map(|r| r.as_bytes())
}
