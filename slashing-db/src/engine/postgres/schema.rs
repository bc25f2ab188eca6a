//! The PostgreSQL schema: the same tables, constraints and last-line-of-defence
//! triggers as the SQLite schema (`engine/schema.rs`), in PostgreSQL's
//! dialect. The version lives in `signer_schema`; each migration moves it one
//! step inside one transaction that holds an advisory lock, so instances that
//! start at the same moment migrate once and the others wait, then find the
//! schema current. A database of a newer version is left untouched.

use super::{PostgresEngine, lock_key};
use crate::error::DbError;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 3;

/// Migration `i` takes a database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[V1, V2, V3];

const V1: &str = r#"
CREATE TABLE signer_schema (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version  bigint NOT NULL
);
INSERT INTO signer_schema (version) VALUES (0);

CREATE TABLE meta (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE validators (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pubkey           bytea NOT NULL UNIQUE CHECK (length(pubkey) = 48),
    min_slot         bigint CHECK (min_slot >= 0),
    min_source_epoch bigint CHECK (min_source_epoch >= 0),
    min_target_epoch bigint CHECK (min_target_epoch >= 0),
    slot_wm          bigint CHECK (slot_wm >= 0),
    source_epoch_wm  bigint CHECK (source_epoch_wm >= 0),
    target_epoch_wm  bigint CHECK (target_epoch_wm >= 0)
);

CREATE TABLE signed_blocks (
    validator_id bigint NOT NULL REFERENCES validators (id),
    slot         bigint NOT NULL CHECK (slot >= 0),
    signing_root bytea CHECK (signing_root IS NULL OR length(signing_root) = 32),
    PRIMARY KEY (validator_id, slot)
);

CREATE TABLE signed_attestations (
    validator_id bigint NOT NULL REFERENCES validators (id),
    source_epoch bigint NOT NULL CHECK (source_epoch >= 0),
    target_epoch bigint NOT NULL CHECK (target_epoch >= 0),
    signing_root bytea CHECK (signing_root IS NULL OR length(signing_root) = 32),
    PRIMARY KEY (validator_id, target_epoch)
);
CREATE INDEX signed_attestations_inverted ON signed_attestations (validator_id, source_epoch)
    WHERE source_epoch > target_epoch;

CREATE FUNCTION signed_blocks_min() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE validators SET min_slot = NEW.slot
        WHERE id = NEW.validator_id AND (min_slot IS NULL OR min_slot > NEW.slot);
    RETURN NULL;
END $$;
CREATE TRIGGER signed_blocks_min AFTER INSERT ON signed_blocks
    FOR EACH ROW EXECUTE FUNCTION signed_blocks_min();

CREATE FUNCTION signed_attestations_min() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE validators SET min_source_epoch = NEW.source_epoch
        WHERE id = NEW.validator_id AND (min_source_epoch IS NULL OR min_source_epoch > NEW.source_epoch);
    UPDATE validators SET min_target_epoch = NEW.target_epoch
        WHERE id = NEW.validator_id AND (min_target_epoch IS NULL OR min_target_epoch > NEW.target_epoch);
    RETURN NULL;
END $$;
CREATE TRIGGER signed_attestations_min AFTER INSERT ON signed_attestations
    FOR EACH ROW EXECUTE FUNCTION signed_attestations_min();

CREATE FUNCTION signed_attestations_source_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE validators SET min_source_epoch =
        (SELECT min(source_epoch) FROM signed_attestations WHERE validator_id = NEW.validator_id)
        WHERE id = NEW.validator_id;
    RETURN NULL;
END $$;
CREATE TRIGGER signed_attestations_source_moved AFTER UPDATE OF source_epoch ON signed_attestations
    FOR EACH ROW WHEN (NEW.source_epoch IS DISTINCT FROM OLD.source_epoch)
    EXECUTE FUNCTION signed_attestations_source_moved();

-- A recorded root may become unknown (NULL) but is never replaced by another.
CREATE FUNCTION signing_root_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'slashing protection: % signing root may not change', TG_ARGV[0];
END $$;
CREATE TRIGGER signed_blocks_root_fixed BEFORE UPDATE OF signing_root ON signed_blocks
    FOR EACH ROW WHEN (NEW.signing_root IS NOT NULL AND NEW.signing_root IS DISTINCT FROM OLD.signing_root)
    EXECUTE FUNCTION signing_root_fixed('block');
CREATE TRIGGER signed_attestations_root_fixed BEFORE UPDATE OF signing_root ON signed_attestations
    FOR EACH ROW WHEN (NEW.signing_root IS NOT NULL AND NEW.signing_root IS DISTINCT FROM OLD.signing_root)
    EXECUTE FUNCTION signing_root_fixed('attestation');

CREATE TABLE cometbft_state (
    consensus_key bytea NOT NULL,
    chain_id      text NOT NULL,
    height        bigint NOT NULL CHECK (height >= 0),
    round         bigint NOT NULL CHECK (round >= 0),
    step          smallint NOT NULL CHECK (step IN (1, 2, 3)),
    sign_bytes    bytea NOT NULL,
    signature     bytea,
    PRIMARY KEY (consensus_key, chain_id)
);

-- Height/round/step never go back, and one position holds one message.
CREATE FUNCTION cometbft_state_monotonic() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'slashing protection: CometBFT height/round/step may not go back';
END $$;
CREATE TRIGGER cometbft_state_monotonic BEFORE UPDATE ON cometbft_state
    FOR EACH ROW WHEN ((NEW.height, NEW.round, NEW.step) < (OLD.height, OLD.round, OLD.step)
        OR ((NEW.height, NEW.round, NEW.step) = (OLD.height, OLD.round, OLD.step)
            AND NEW.sign_bytes IS DISTINCT FROM OLD.sign_bytes))
    EXECUTE FUNCTION cometbft_state_monotonic();
"#;

/// The SQLSTATE `signer_expect` raises (schema version 2).
pub(super) const ASSUMPTION_FAILED: &str = "SG001";

/// Version 2: the check behind the one-round-trip decision path
/// (`ahead.rs`): a write that assumed facts raises when they do not hold,
/// aborting its transaction; and the attestation minimum kept by one UPDATE
/// per row instead of two. Only functions change: instances of version 1
/// keep working beside it during a rolling upgrade.
const V2: &str = r#"
CREATE OR REPLACE FUNCTION signed_attestations_min() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE validators SET
        min_source_epoch = LEAST(min_source_epoch, NEW.source_epoch),
        min_target_epoch = LEAST(min_target_epoch, NEW.target_epoch)
        WHERE id = NEW.validator_id
          AND (min_source_epoch IS NULL OR min_source_epoch > NEW.source_epoch
               OR min_target_epoch IS NULL OR min_target_epoch > NEW.target_epoch);
    RETURN NULL;
END $$;

CREATE FUNCTION signer_expect(ok boolean, what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF ok IS TRUE THEN
        RETURN true;
    END IF;
    RAISE EXCEPTION 'slashing protection: the % history changed since it was assumed', what
        USING ERRCODE = 'SG001';
END $$;
"#;

/// Version 3: the last Gloas message per validator and lane (as SQLite's
/// version 2). A new table only: instances of version 2 keep working beside
/// it during a rolling upgrade (they refuse Gloas messages, which they do
/// not know).
const V3: &str = r#"
CREATE TABLE signed_messages (
    validator_id bigint NOT NULL REFERENCES validators (id),
    lane         smallint NOT NULL CHECK (lane IN (1, 2)),
    slot         bigint NOT NULL CHECK (slot >= 0),
    signing_root bytea NOT NULL CHECK (length(signing_root) = 32),
    PRIMARY KEY (validator_id, lane)
);

CREATE FUNCTION signed_messages_monotonic() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'slashing protection: a Gloas message slot may not go back';
END $$;
CREATE TRIGGER signed_messages_monotonic BEFORE UPDATE ON signed_messages
    FOR EACH ROW WHEN (NEW.slot < OLD.slot
        OR (NEW.slot = OLD.slot AND NEW.signing_root IS DISTINCT FROM OLD.signing_root))
    EXECUTE FUNCTION signed_messages_monotonic();
"#;

/// Tables of ours: if any exists without `signer_schema`, the database holds
/// something else and is not touched.
const OURS: &str = "SELECT count(*) FROM pg_catalog.pg_tables
    WHERE schemaname = current_schema()
      AND tablename IN ('signer_schema', 'meta', 'validators', 'signed_blocks', 'signed_attestations', 'cometbft_state', 'signed_messages')";

/// Creates or migrates the schema, once, whoever else starts at the same time.
pub(super) fn migrate(e: &mut PostgresEngine) -> Result<(), DbError> {
    e.batch("beginning schema check", "BEGIN")?;
    match migrate_in_transaction(e) {
        Ok(()) => e.batch("committing schema", "COMMIT"),
        Err(err) => {
            let _ = e.batch("rolling back schema check", "ROLLBACK");
            Err(err)
        }
    }
}

fn migrate_in_transaction(e: &mut PostgresEngine) -> Result<(), DbError> {
    let key = lock_key(b"signer-schema", &[]);
    e.query(
        "locking the schema",
        "SELECT pg_advisory_xact_lock($1)",
        &[&key],
    )?;
    let present: bool = get(
        e.query_one_raw(
            "reading schema version",
            "SELECT to_regclass('signer_schema') IS NOT NULL",
        )?,
        0,
    )?;
    let version: i64 = if present {
        get(
            e.query_one_raw(
                "reading schema version",
                "SELECT version FROM signer_schema",
            )?,
            0,
        )?
    } else {
        let ours: i64 = get(e.query_one_raw("reading schema", OURS)?, 0)?;
        if ours != 0 {
            return Err(DbError::Corrupt {
                path: e.target().into(),
                detail: "tables named like a slashing-protection database exist, but without \
                         its schema version: not a database this signer created"
                    .into(),
            });
        }
        0
    };
    if version > SCHEMA_VERSION {
        return Err(DbError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    let start = usize::try_from(version).unwrap_or(usize::MAX);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        e.batch("migrating schema", sql)?;
        let next = i64::try_from(i + 1).unwrap_or(i64::MAX);
        e.execute(
            "migrating schema",
            "UPDATE signer_schema SET version = $1",
            &[&next],
        )?;
        tracing::info!(target_db = %e.target(), from = i, to = next, "slashing database schema migrated");
    }
    Ok(())
}

fn get<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    row: tokio_postgres::Row,
    i: usize,
) -> Result<T, DbError> {
    row.try_get(i).map_err(|e| DbError::Engine {
        context: "reading schema",
        source: Box::new(e),
    })
}
