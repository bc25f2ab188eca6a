//! The shared engine: PostgreSQL, for several signer instances in front of the
//! same keys (high availability). Same rules, same [`Engine`] seam as SQLite;
//! what differs is how concurrency and failure are settled.
//!
//! - **Between instances: locks, in READ COMMITTED.** Every decision first
//!   locks what it is about — the validator's row (`SELECT … FOR UPDATE`)
//!   for Ethereum, a transaction-scoped advisory lock on (key, chain) for
//!   CometBFT (the row may not exist yet) — and only then reads history.
//!   A second instance deciding for the same key waits for the first one's
//!   COMMIT and then reads what it wrote (each READ COMMITTED statement takes
//!   a new snapshot). Unique constraints and triggers stay as a second net.
//!   Deadlocks (40P01) and serialisation failures (40001) roll the whole
//!   batch back as [`DbError::Contended`]; the writer retries it.
//! - **Durability is checked, not assumed.** At connect the session sets
//!   `synchronous_commit = on` (a server default of `off` would acknowledge
//!   commits that a crash loses), and [`PostgresEngine::durability`] reads
//!   `fsync`, `synchronous_standby_names` and the replication state:
//!   `fsync = off` is refused always, a missing synchronous standby when
//!   [`PostgresOptions::require_synchronous_replication`] is set.
//! - **A lost connection is a refusal, never a guess.** Every round trip has
//!   a deadline; a connection that fails or stalls is dropped and the next
//!   transaction reconnects (any host of a multi-host URL, read-write only).
//!   A COMMIT whose answer never came is [`DbError::CommitOutcomeUnknown`]:
//!   refused, and the next attempt decides again from what the database holds.
//!
//! - **Few round trips.** A group-commit batch is decided in one round trip
//!   when the facts it assumes hold (checked by the server inside the
//!   writes), in two otherwise (`batch.rs`); import, export and pruning ask
//!   question by question (`history.rs`). `BEGIN` always rides with the first
//!   statement.
//!
//! The engine is synchronous like the writer that drives it: each engine owns
//! a current-thread tokio runtime and blocks on it (call it from worker
//! threads, never from inside another runtime).
//!
//! This file is the connection and its failure handling (connect, deadlines,
//! error mapping, durability checks): one concept that every query of the
//! engine goes through, hence its length; the queries live in the
//! submodules.

mod ahead;
mod batch;
mod history;
mod pipeline;
mod schema;
mod tls;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

pub use schema::SCHEMA_VERSION as PG_SCHEMA_VERSION;

use crate::error::DbError;
use crate::types::GenesisRoot;

/// How to reach and use the shared database.
#[derive(Clone)]
pub struct PostgresOptions {
    /// Hosts, port(s), database, user and password (parsed from a
    /// `postgresql://` URL or a `key=value` string by the caller, the
    /// password set from a file or the environment). Several hosts with
    /// `target_session_attrs=read-write` reach whichever is the primary.
    pub config: tokio_postgres::Config,
    /// TLS to the server (rustls, verifying the server's certificate and
    /// name). `None` is plain TCP or a Unix socket.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The longest one round trip (statement, COMMIT) may take before the
    /// connection is dropped and the call refused.
    pub statement_timeout: Duration,
    /// The longest connecting (TCP, TLS, authentication, settings) may take.
    pub connect_timeout: Duration,
    /// Refuse to serve unless a synchronous standby acknowledges commits.
    pub require_synchronous_replication: bool,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("PostgresOptions")
            .field("target", &describe(&self.config))
            .field("tls", &self.tls.is_some())
            .field("statement_timeout", &self.statement_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field(
                "require_synchronous_replication",
                &self.require_synchronous_replication,
            )
            .finish()
    }
}

impl PostgresOptions {
    /// Options from a `postgresql://` URL or a `key=value` connection
    /// string (several hosts, `target_session_attrs=read-write`, timeouts as
    /// tokio-postgres reads them). Refused: a password in the string (give
    /// it with [`PostgresOptions::set_password`] from a file or the
    /// environment), and libpq's `ssl*` options (TLS is configured with
    /// [`PostgresOptions::tls`], always verifying the server's name).
    pub fn from_url(url: &str) -> Result<Self, String> {
        for libpq_only in ["sslmode", "sslrootcert", "sslcert", "sslkey", "passfile"] {
            if url.contains(libpq_only) {
                return Err(format!(
                    "`{libpq_only}` in the connection string: TLS and credentials are set with \
                     [slashing.postgres] tls, ca_file and password_file / password_env"
                ));
            }
        }
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("not a PostgreSQL connection string: {e}"))?;
        if config.get_password().is_some() {
            return Err(
                "the connection string carries a password: remove it and give the password \
                 with password_file or password_env"
                    .into(),
            );
        }
        if config.get_hosts().is_empty() {
            return Err("the connection string names no host".into());
        }
        if config.get_user().is_none() {
            return Err("the connection string names no user (postgresql://USER@host/db)".into());
        }
        Ok(Self::new(config))
    }

    /// Sets the password (read by the caller from a file or the environment).
    pub fn set_password(&mut self, password: &[u8]) {
        self.config.password(password);
    }

    /// `host[,host…]:port/dbname`, for messages (never the password).
    pub fn target(&self) -> String {
        describe(&self.config)
    }

    /// True when every host is a Unix socket or a loopback address — the
    /// only places a connection without TLS is allowed to go.
    pub fn only_local_hosts(&self) -> bool {
        use tokio_postgres::config::Host;
        self.config.get_hosts().iter().all(|h| match h {
            Host::Unix(_) => true,
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        })
    }

    /// Options with default timeouts (5 s per statement, 10 s to connect)
    /// and no TLS.
    pub fn new(config: tokio_postgres::Config) -> Self {
        Self {
            config,
            tls: None,
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            require_synchronous_replication: false,
        }
    }
}

/// How durable a commit acknowledged by the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// `fsync` is on (required).
    pub fsync: bool,
    /// The server's default `synchronous_commit` (our sessions always set `on`).
    pub server_synchronous_commit: String,
    /// `synchronous_standby_names`, empty when none is configured.
    pub synchronous_standby_names: String,
    /// Standbys currently acknowledging commits synchronously (`sync` or `quorum`).
    pub synchronous_standbys: u32,
    /// The server we talk to is a primary (not in recovery).
    pub primary: bool,
    /// Our role may read `pg_stat_replication`'s state columns
    /// (`pg_read_all_stats`); without it every standby looks asynchronous.
    pub can_read_replication: bool,
}

impl Durability {
    /// `synchronous` (a standby acknowledges every commit before it returns)
    /// or `local` (the primary's disk only: a failover may lose the last
    /// acknowledged decisions).
    pub fn level(&self) -> &'static str {
        if self.synchronous_standbys > 0 && !self.synchronous_standby_names.trim().is_empty() {
            "synchronous"
        } else {
            "local"
        }
    }
}

/// The PostgreSQL [`Engine`](crate::Engine).
pub struct PostgresEngine {
    rt: tokio::runtime::Runtime,
    opts: PostgresOptions,
    target: String,
    client: Option<Client>,
    statements: HashMap<&'static str, Statement>,
    in_tx: bool,
    /// The pinned network once read (it never changes after a commit).
    genesis: Option<GenesisRoot>,
    /// Validators whose row this transaction has locked.
    locked: HashSet<i64>,
    /// CometBFT (key, chain) advisory locks this transaction holds.
    locked_comet: HashSet<i64>,
    /// `begin` was called but `BEGIN` not sent yet: it goes out in the same
    /// round trip as the transaction's first statement.
    begin_pending: bool,
    /// The batch read ahead under its locks, and its writes so far.
    ahead: Option<ahead::Ahead>,
    /// Validator ids by key (rows are never deleted, ids never change).
    ids: HashMap<crate::types::BlsPublicKey, i64>,
    /// The last batch's assumed facts did not hold: read the next one.
    read_next: bool,
    /// When this connection's server last passed the durability check.
    durable_at: Option<std::time::Instant>,
}

/// How often a serving connection re-reads the server's durability before a
/// transaction. A failover, or an operator who turns synchronous replication
/// off, changes it under a live connection; readiness alone would keep
/// signing meanwhile.
const DURABILITY_RECHECK: Duration = Duration::from_secs(1);

impl std::fmt::Debug for PostgresEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEngine")
            .field("target", &self.target)
            .field("connected", &self.client.is_some())
            .field("in_transaction", &self.in_tx)
            .finish_non_exhaustive()
    }
}

/// `host[,host…]:port/dbname` for messages (never the password).
pub fn describe(c: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = c
                .get_ports()
                .get(i)
                .or_else(|| c.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match h {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    format!(
        "postgres://{}/{}",
        hosts.join(","),
        c.get_dbname().unwrap_or("(default)")
    )
}

impl PostgresEngine {
    /// Connects, checks durability, and creates or migrates the schema
    /// (under an advisory lock, so instances starting together do it once).
    pub fn open(opts: &PostgresOptions) -> Result<Self, DbError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DbError::Engine {
                context: "starting the PostgreSQL client runtime",
                source: Box::new(e),
            })?;
        let mut engine = Self {
            rt,
            target: describe(&opts.config),
            opts: opts.clone(),
            client: None,
            statements: HashMap::new(),
            in_tx: false,
            genesis: None,
            locked: HashSet::new(),
            locked_comet: HashSet::new(),
            begin_pending: false,
            ahead: None,
            ids: HashMap::new(),
            read_next: false,
            durable_at: None,
        };
        engine.connect()?;
        let d = engine.durability()?;
        engine.check_durability(&d)?;
        schema::migrate(&mut engine)?;
        Ok(engine)
    }

    /// The server(s) and database, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Reads the server's durability settings.
    pub fn durability(&mut self) -> Result<Durability, DbError> {
        let row = self.query_one_raw(
            "reading durability settings",
            "SELECT current_setting('fsync'), current_setting('synchronous_commit'),
                    current_setting('synchronous_standby_names'),
                    (SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')),
                    NOT pg_is_in_recovery(), pg_has_role('pg_read_all_stats', 'USAGE')",
        )?;
        let bad = |e: tokio_postgres::Error| DbError::Engine {
            context: "reading durability settings",
            source: Box::new(e),
        };
        let get = |i: usize| row.try_get::<_, String>(i).map_err(bad);
        let standbys: i64 = row.try_get(3).map_err(bad)?;
        Ok(Durability {
            fsync: get(0)? == "on",
            server_synchronous_commit: get(1)?,
            synchronous_standby_names: get(2)?,
            synchronous_standbys: u32::try_from(standbys).unwrap_or(0),
            primary: row.try_get(4).map_err(bad)?,
            can_read_replication: row.try_get(5).map_err(bad)?,
        })
    }

    /// Refuses settings under which an acknowledged decision can be lost.
    pub fn check_durability(&self, d: &Durability) -> Result<(), DbError> {
        let refuse = |detail: String| DbError::NotDurable {
            target: self.target.clone(),
            detail,
        };
        if !d.fsync {
            return Err(refuse(
                "fsync = off: a crash of the server loses committed decisions; set fsync = on"
                    .into(),
            ));
        }
        if !d.primary {
            return Err(refuse(
                "the server is a standby (in recovery): connect to the primary (target_session_attrs=read-write)".into(),
            ));
        }
        if self.opts.require_synchronous_replication
            && d.level() != "synchronous"
            && !d.can_read_replication
        {
            return Err(refuse(
                "require_synchronous_replication is set, but this role cannot read the replication \
                 state (pg_stat_replication shows it only to members of pg_read_all_stats): \
                 GRANT pg_read_all_stats TO <the signer's role>"
                    .into(),
            ));
        }
        if self.opts.require_synchronous_replication && d.level() != "synchronous" {
            return Err(refuse(format!(
                "require_synchronous_replication is set, but no synchronous standby acknowledges commits \
                 (synchronous_standby_names = {:?}, {} synchronous standby(s) streaming); configure \
                 synchronous replication or unset require_synchronous_replication",
                d.synchronous_standby_names, d.synchronous_standbys
            )));
        }
        Ok(())
    }

    /// Opens a connection if there is none (after a failure, or at start).
    fn connect(&mut self) -> Result<(), DbError> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        self.client = None;
        self.statements.clear();
        self.durable_at = None;
        let mut config = self.opts.config.clone();
        // Sessions always commit synchronously whatever the server default is;
        // a statement that runs longer than the deadline is cancelled by the
        // server too. Keepalives find a dead peer in an idle pool.
        let ms = self.opts.statement_timeout.as_millis();
        let ours = format!(
            "-c synchronous_commit=on -c plan_cache_mode=force_generic_plan -c statement_timeout={ms} -c lock_timeout={ms} \
             -c idle_in_transaction_session_timeout={}",
            ms.saturating_mul(4)
        );
        let options = match config.get_options() {
            Some(theirs) if !theirs.trim().is_empty() => format!("{theirs} {ours}"),
            _ => ours,
        };
        if self.opts.tls.is_some() {
            // Never fall back to plaintext when TLS is configured.
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        config
            .options(options)
            .application_name("signer")
            .connect_timeout(self.opts.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .tcp_user_timeout(self.opts.statement_timeout.saturating_mul(2));
        let target = self.target.clone();
        let deadline = self.opts.connect_timeout;
        let tls = self.opts.tls.clone();
        let connected = block(&self.rt, async move {
            let attempt = async {
                match tls {
                    Some(tls) => {
                        let (client, conn) = config.connect(tls::MakeRustls::new(tls)).await?;
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::warn!(error = %e, "slashing database connection closed");
                            }
                        });
                        Ok::<_, tokio_postgres::Error>(client)
                    }
                    None => {
                        let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::warn!(error = %e, "slashing database connection closed");
                            }
                        });
                        Ok(client)
                    }
                }
            };
            tokio::time::timeout(deadline, attempt).await
        });
        match connected {
            Ok(Ok(client)) => {
                self.client = Some(client);
                Ok(())
            }
            Ok(Err(e)) => Err(connect_error(&target, &e)),
            Err(_) => Err(DbError::Unavailable {
                context: "connecting",
                detail: format!("no answer from {target} within {deadline:?}"),
            }),
        }
    }

    /// Runs `f` against the connection with the statement deadline. A lost
    /// or stalled connection is dropped (the next transaction reconnects).
    fn run<T>(
        &mut self,
        context: &'static str,
        f: impl AsyncFnOnce(&Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, DbError> {
        let Some(client) = self.client.as_ref() else {
            return Err(DbError::Unavailable {
                context,
                detail: "not connected (the connection was lost earlier in this transaction)"
                    .into(),
            });
        };
        let deadline = self.opts.statement_timeout;
        let begin = std::mem::take(&mut self.begin_pending);
        let out = block(&self.rt, async {
            tokio::time::timeout(deadline, async {
                if !begin {
                    return f(client).await;
                }
                // BEGIN rides in front of the first statement: queued first
                // (sent on its first poll), then both answers awaited.
                let mut b = std::pin::pin!(client.batch_execute(pipeline::BEGIN));
                let first =
                    std::future::poll_fn(|cx| std::task::Poll::Ready(b.as_mut().poll(cx))).await;
                let work = f(client).await;
                match first {
                    std::task::Poll::Ready(r) => r?,
                    std::task::Poll::Pending => b.await?,
                }
                work
            })
            .await
        });
        match out {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.fail(context, &e)),
            Err(_) => {
                self.drop_connection();
                Err(DbError::Unavailable {
                    context,
                    detail: format!("no answer within {deadline:?}"),
                })
            }
        }
    }

    /// Runs `steps` as one pipeline (one round trip) with the statement
    /// deadline; every answer must be a success. Sends no pending `BEGIN`
    /// (the caller puts it in `steps` when it wants one).
    fn run_steps(
        &mut self,
        context: &'static str,
        steps: &[pipeline::Step],
    ) -> Result<Vec<Vec<Row>>, DbError> {
        let answers = self
            .without_begin(|e| e.run(context, async |c| Ok(pipeline::pipeline(c, steps).await)))?;
        let mut rows = Vec::with_capacity(answers.len());
        for a in answers {
            match a {
                Ok(r) => rows.push(r),
                Err(e) => return Err(self.fail(context, &e)),
            }
        }
        Ok(rows)
    }

    /// Runs `f` without sending a pending `BEGIN` first: its statements run
    /// outside the transaction about to start (preparing, registering keys,
    /// reading the pinned network), which stays pending.
    fn without_begin<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let pending = std::mem::take(&mut self.begin_pending);
        let out = f(self);
        self.begin_pending = pending && self.in_tx;
        out
    }

    /// Re-reads and checks the server's durability when the connection is
    /// new or the last check is older than [`DURABILITY_RECHECK`].
    fn recheck_durability(&mut self) -> Result<(), DbError> {
        if self
            .durable_at
            .is_some_and(|t| t.elapsed() < DURABILITY_RECHECK)
        {
            return Ok(());
        }
        let d = self.durability()?;
        self.check_durability(&d)?;
        self.durable_at = Some(std::time::Instant::now());
        Ok(())
    }

    fn drop_connection(&mut self) {
        self.durable_at = None;
        self.begin_pending = false;
        self.ahead = None;
        self.client = None;
        self.statements.clear();
        self.in_tx = false;
        self.genesis = None;
        self.locked.clear();
        self.locked_comet.clear();
    }

    /// Maps a driver error; drops the connection when it is unusable.
    fn fail(&mut self, context: &'static str, e: &tokio_postgres::Error) -> DbError {
        let mapped = map(context, e);
        let lost = matches!(mapped, DbError::Unavailable { .. })
            || self.client.as_ref().is_none_or(Client::is_closed);
        if lost {
            self.drop_connection();
        }
        mapped
    }

    /// A prepared statement for `sql`, prepared once per connection.
    fn statement(&mut self, sql: &'static str) -> Result<Statement, DbError> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st =
            self.without_begin(|e| e.run("preparing a statement", async |c| c.prepare(sql).await))?;
        self.statements.insert(sql, st.clone());
        Ok(st)
    }

    /// Rows of a prepared statement.
    fn query(
        &mut self,
        context: &'static str,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        let st = self.statement(sql)?;
        self.run(context, async |c| c.query(&st, params).await)
    }

    /// At most one row of a prepared statement.
    fn query_opt(
        &mut self,
        context: &'static str,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, DbError> {
        Ok(self.query(context, sql, params)?.into_iter().next())
    }

    /// Rows affected by a prepared statement.
    fn execute(
        &mut self,
        context: &'static str,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, DbError> {
        let st = self.statement(sql)?;
        self.run(context, async |c| c.execute(&st, params).await)
    }

    /// One row of an unprepared query without parameters.
    fn query_one_raw(&mut self, context: &'static str, sql: &'static str) -> Result<Row, DbError> {
        self.run(context, async |c| c.query_one(sql, &[]).await)
    }

    /// Statements without parameters or results (transaction control, DDL).
    fn batch(&mut self, context: &'static str, sql: &'static str) -> Result<(), DbError> {
        self.run(context, async |c| c.batch_execute(sql).await)
    }
}

/// Runs `fut` on the engine's own runtime. Worker threads (the signing
/// path) call in directly; a caller already inside a multi-thread tokio
/// runtime (start-up, readiness probes) first leaves it with
/// `block_in_place`, since one runtime may not block inside another.
fn block<F: std::future::Future>(rt: &tokio::runtime::Runtime, fut: F) -> F::Output {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| rt.block_on(fut))
        }
        // A current-thread runtime cannot lend its thread: the caller must
        // use a worker thread (documented on `SlashingDb`).
        _ => rt.block_on(fut),
    }
}

/// A driver error → the typed error callers act on.
fn map(context: &'static str, e: &tokio_postgres::Error) -> DbError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let detail = format!("{} ({})", db.message(), code.code());
        if *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || code.code() == schema::ASSUMPTION_FAILED
            || *code == SqlState::LOCK_NOT_AVAILABLE
        {
            return DbError::Contended { context, detail };
        }
        if *code == SqlState::QUERY_CANCELED
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
            || *code == SqlState::READ_ONLY_SQL_TRANSACTION
            || code.code().starts_with("08")
            || code.code().starts_with("53")
        {
            // 08: connection exception; 53: insufficient resources (disk full,
            // too many connections). The server is there but cannot decide.
            return DbError::Unavailable { context, detail };
        }
        return DbError::Engine {
            context,
            source: detail.into(),
        };
    }
    if e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()) {
        return DbError::Unavailable {
            context,
            detail: e.to_string(),
        };
    }
    DbError::Unavailable {
        context,
        detail: e.to_string(),
    }
}

/// A failed connect: a server that said no (authentication, unknown
/// database, TLS) is a configuration error; one that did not answer is
/// unavailable (the caller may retry).
fn connect_error(target: &str, e: &tokio_postgres::Error) -> DbError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    // rustls names the failure; say what to check.
    if detail.contains("UnknownIssuer") {
        detail.push_str(
            " (the server's certificate does not chain to a root in slashing.postgres.ca_file)",
        );
    } else if detail.contains("not valid for name") {
        detail.push_str(" (the server's certificate must name the host written in the URL)");
    } else if detail.contains("Expired") {
        detail.push_str(" (the server's certificate has expired)");
    }
    let refused_by_server = e.as_db_error().is_some()
        || detail.contains("certificate")
        || detail.contains("TLS")
        || detail.contains("tls")
        || detail.contains("password")
        || detail.contains("server does not support TLS");
    if refused_by_server {
        DbError::Connect {
            target: target.to_owned(),
            detail,
        }
    } else {
        DbError::Unavailable {
            context: "connecting",
            detail: format!("{target}: {detail}"),
        }
    }
}

/// A stable 63-bit key for a transaction-scoped advisory lock (FNV-1a over a
/// domain-separated name). Stable across builds and versions: instances of
/// different versions running side by side during an upgrade must lock the
/// same key for the same (consensus key, chain) — never change it.
/// The advisory lock of a CometBFT (key, chain).
pub(crate) fn comet_lock_key(
    key: &crate::types::ConsensusKey,
    chain: &crate::types::ChainId,
) -> i64 {
    lock_key(b"cometbft", &[key.as_bytes(), chain.as_str().as_bytes()])
}

pub(crate) fn lock_key(domain: &[u8], parts: &[&[u8]]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    for b in domain {
        eat(*b);
    }
    for p in parts {
        for b in (p.len() as u64).to_be_bytes() {
            eat(b);
        }
        for b in *p {
            eat(*b);
        }
    }
    // Clear the sign bit: a non-negative key reads better in pg_locks.
    i64::try_from(h >> 1).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_domain_separated() {
        // Pinned: changing the function breaks mutual exclusion between
        // instances of different versions.
        assert_eq!(lock_key(b"", &[]), (0xcbf2_9ce4_8422_2325_u64 >> 1) as i64);
        let a = lock_key(b"cometbft", &[b"key", b"chain"]);
        assert_eq!(a, lock_key(b"cometbft", &[b"key", b"chain"]));
        assert_ne!(a, lock_key(b"cometbft", &[b"keyc", b"hain"]));
        assert_ne!(a, lock_key(b"other", &[b"key", b"chain"]));
        assert!(a >= 0);
    }
}
