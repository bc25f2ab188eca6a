//! Helpers shared by the slashing-db integration tests.
#![allow(dead_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use slashing_db::*;

/// The project's copy of the public vectors.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors")
}

pub const GENESIS: GenesisRoot = GenesisRoot([0x42; 32]);

pub fn pk(n: u8) -> BlsPublicKey {
    let mut b = [0xa0; 48];
    b[47] = n;
    BlsPublicKey(b)
}

pub fn root(n: u8) -> SigningRoot {
    SigningRoot([n; 32])
}

pub mod pg;

use std::sync::{Arc, Mutex, Weak};

/// Which engine a [`TempDb`] runs on.
#[derive(Clone)]
pub enum Backend {
    Sqlite,
    /// A schema of its own on a shared test cluster.
    Postgres(Arc<pg::PgCluster>, String),
}

/// The test cluster of this process, started on first use and stopped when
/// the last database using it is dropped.
pub fn cluster() -> Arc<pg::PgCluster> {
    static CLUSTER: Mutex<Weak<pg::PgCluster>> = Mutex::new(Weak::new());
    let mut slot = CLUSTER.lock().unwrap();
    if let Some(c) = slot.upgrade() {
        return c;
    }
    let c = Arc::new(pg::PgCluster::start(""));
    *slot = Arc::downgrade(&c);
    c
}

/// Options for a PostgreSQL engine on `schema` of `cluster`.
pub fn pg_options(cluster: &pg::PgCluster, schema: &str) -> PostgresOptions {
    PostgresOptions::new(cluster.config(schema))
}

/// A fresh database: SQLite in its own temporary directory, or PostgreSQL in
/// a fresh schema.
pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub db: SlashingDb,
    pub backend: Backend,
}

impl TempDb {
    pub fn new(genesis: Option<GenesisRoot>) -> Self {
        Self::on(&Backend::Sqlite, genesis)
    }

    /// A fresh PostgreSQL-backed database.
    pub fn postgres(genesis: Option<GenesisRoot>) -> Self {
        let c = cluster();
        let schema = c.new_schema();
        Self::on(&Backend::Postgres(c, schema), genesis)
    }

    /// A fresh database of the named engine (`sqlite` or `postgres`).
    pub fn of(engine: &str, genesis: Option<GenesisRoot>) -> Self {
        match engine {
            "sqlite" => Self::new(genesis),
            "postgres" => Self::postgres(genesis),
            other => panic!("unknown engine {other}"),
        }
    }

    fn on(backend: &Backend, genesis: Option<GenesisRoot>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            genesis_root: genesis,
            ..Config::default()
        };
        let db = open_backend(backend, dir.path(), config).unwrap();
        Self {
            dir,
            db,
            backend: backend.clone(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("slashing.sqlite")
    }

    /// Closes and reopens the same database (as after a restart).
    pub fn reopen(self) -> Self {
        let Self { dir, db, backend } = self;
        db.close();
        let db = open_backend(&backend, dir.path(), Config::default()).unwrap();
        Self { dir, db, backend }
    }

    /// Another handle on the same database (another signer instance). Only
    /// PostgreSQL allows it; SQLite is exclusive.
    pub fn another(&self, config: Config) -> Result<SlashingDb, DbError> {
        open_backend(&self.backend, self.dir.path(), config)
    }
}

/// The engines every rule suite runs on.
pub const ENGINES: [&str; 2] = ["sqlite", "postgres"];

fn open_backend(backend: &Backend, dir: &Path, config: Config) -> Result<SlashingDb, DbError> {
    match backend {
        Backend::Sqlite => SlashingDb::open(&dir.join("slashing.sqlite"), config),
        Backend::Postgres(c, schema) => SlashingDb::open_postgres(&pg_options(c, schema), config),
    }
}

/// Opens the database at `path` pinned to [`GENESIS`].
pub fn open_pinned(path: &Path) -> Result<SlashingDb, DbError> {
    SlashingDb::open(
        path,
        Config {
            genesis_root: Some(GENESIS),
            ..Config::default()
        },
    )
}

pub fn block(pubkey: BlsPublicKey, slot: u64, r: SigningRoot) -> Proposal {
    Proposal::Block(BlockProposal {
        pubkey,
        genesis_root: GENESIS,
        slot: Slot(slot),
        signing_root: r,
    })
}

pub fn message(pubkey: BlsPublicKey, lane: Lane, slot: u64, r: SigningRoot) -> Proposal {
    Proposal::Message(MessageProposal {
        pubkey,
        genesis_root: GENESIS,
        lane,
        slot: Slot(slot),
        signing_root: r,
    })
}

pub fn att(pubkey: BlsPublicKey, source: u64, target: u64, r: SigningRoot) -> Proposal {
    Proposal::Attestation(AttestationProposal {
        pubkey,
        genesis_root: GENESIS,
        source: Epoch(source),
        target: Epoch(target),
        signing_root: r,
    })
}

/// Canonical vote sign bytes, encoded here from the field table in
/// `rules::sign_bytes` (an encoder independent of the parser under test).
pub fn vote_bytes(
    kind: u8,
    height: i64,
    round: i64,
    block_hash: &[u8],
    ts_secs: u64,
    chain: &str,
) -> Vec<u8> {
    let mut m = Vec::new();
    if kind != 0 {
        m.extend_from_slice(&[0x08, kind]);
    }
    if height != 0 {
        m.push(0x11);
        m.extend_from_slice(&height.to_le_bytes());
    }
    if round != 0 {
        m.push(0x19);
        m.extend_from_slice(&round.to_le_bytes());
    }
    if !block_hash.is_empty() {
        let mut bid = vec![0x0a, block_hash.len() as u8];
        bid.extend_from_slice(block_hash);
        m.push(0x22);
        m.push(bid.len() as u8);
        m.extend_from_slice(&bid);
    }
    let ts = varint_field(1, ts_secs);
    m.push(0x2a);
    m.push(ts.len() as u8);
    m.extend_from_slice(&ts);
    if !chain.is_empty() {
        m.push(0x32);
        m.push(chain.len() as u8);
        m.extend_from_slice(chain.as_bytes());
    }
    let mut out = Vec::new();
    put_uvarint(&mut out, m.len() as u64);
    out.extend_from_slice(&m);
    out
}

/// Canonical proposal sign bytes (type 32, pol_round -1).
pub fn proposal_bytes(
    height: i64,
    round: i64,
    block_hash: &[u8],
    ts_secs: u64,
    chain: &str,
) -> Vec<u8> {
    let mut m = vec![0x08, 0x20];
    m.push(0x11);
    m.extend_from_slice(&height.to_le_bytes());
    if round != 0 {
        m.push(0x19);
        m.extend_from_slice(&round.to_le_bytes());
    }
    m.push(0x20);
    put_uvarint(&mut m, u64::MAX); // pol_round = -1
    let mut bid = vec![0x0a, block_hash.len() as u8];
    bid.extend_from_slice(block_hash);
    m.push(0x2a);
    m.push(bid.len() as u8);
    m.extend_from_slice(&bid);
    let ts = varint_field(1, ts_secs);
    m.push(0x32);
    m.push(ts.len() as u8);
    m.extend_from_slice(&ts);
    m.push(0x3a);
    m.push(chain.len() as u8);
    m.extend_from_slice(chain.as_bytes());
    let mut out = Vec::new();
    put_uvarint(&mut out, m.len() as u64);
    out.extend_from_slice(&m);
    out
}

fn varint_field(field: u8, v: u64) -> Vec<u8> {
    let mut out = vec![field << 3];
    put_uvarint(&mut out, v);
    out
}

pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn comet_key(n: u8) -> ConsensusKey {
    ConsensusKey::new(vec![n; 32]).unwrap()
}

pub fn chain(s: &str) -> ChainId {
    ChainId::new(s).unwrap()
}

pub fn comet(key: u8, chain_id: &str, bytes: Vec<u8>) -> Proposal {
    Proposal::CometBft(
        CometProposal::from_sign_bytes(comet_key(key), chain(chain_id), bytes).unwrap(),
    )
}

/// Opens the closed database file directly and checks that it is consistent:
/// SQLite's integrity check, foreign keys, and the per-validator minimums
/// (kept by triggers and pruning) equal to the real minimums of the history.
pub fn assert_consistent(path: &Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    let integrity: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok", "{}", path.display());
    let orphans: i64 = c
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(orphans, 0, "foreign key violations in {}", path.display());
    let stale: Vec<i64> = c
        .prepare(
            "SELECT id FROM validators v WHERE
               min_slot IS NOT (SELECT min(slot) FROM signed_blocks WHERE validator_id = v.id)
            OR min_source_epoch IS NOT (SELECT min(source_epoch) FROM signed_attestations WHERE validator_id = v.id)
            OR min_target_epoch IS NOT (SELECT min(target_epoch) FROM signed_attestations WHERE validator_id = v.id)",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        stale.is_empty(),
        "validators {stale:?} have stale minimums in {}",
        path.display()
    );
}

impl TempDb {
    /// Closes the database and checks it: the SQLite file with
    /// [`assert_consistent`], a PostgreSQL schema with [`assert_consistent_pg`].
    pub fn close_and_check(self) {
        let path = self.path();
        let Self { dir, db, backend } = self;
        db.close();
        match backend {
            Backend::Sqlite => assert_consistent(&path),
            Backend::Postgres(c, schema) => assert_consistent_pg(&c, &schema),
        }
        drop(dir);
    }
}

/// The PostgreSQL form of [`assert_consistent`]: every row's references
/// exist, and the stored minimums equal the real minimums of the history.
pub fn assert_consistent_pg(c: &pg::PgCluster, schema: &str) {
    let stale = c.psql_in(
        "slashing",
        &format!(
            "SET search_path = {schema};
             SELECT string_agg(id::text, ',') FROM validators v WHERE
                min_slot IS DISTINCT FROM (SELECT min(slot) FROM signed_blocks WHERE validator_id = v.id)
             OR min_source_epoch IS DISTINCT FROM (SELECT min(source_epoch) FROM signed_attestations WHERE validator_id = v.id)
             OR min_target_epoch IS DISTINCT FROM (SELECT min(target_epoch) FROM signed_attestations WHERE validator_id = v.id)"
        ),
    );
    assert!(
        stale.is_empty(),
        "validators {stale} have stale minimums in schema {schema}"
    );
}
