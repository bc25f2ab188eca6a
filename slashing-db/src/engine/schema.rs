//! Versioned schema. `PRAGMA user_version` holds the version; each migration
//! moves the database one version up inside the opening transaction. A file
//! of a newer version is refused, never "best-effort" read.
//!
//! The constraints are the last line of defence behind the rules: one block per
//! validator and slot, one attestation per validator and target, a known root
//! never silently replaced by another, and CometBFT positions that never go
//! back. A bug in the rules then surfaces as an error, not as a double sign.

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 2;

/// Migration `i` takes a database from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[V1, V2];

const V1: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) STRICT;

CREATE TABLE validators (
    id               INTEGER PRIMARY KEY,
    pubkey           BLOB NOT NULL UNIQUE CHECK (length(pubkey) = 48),
    -- Lowest recorded slot, source and target: the complete strategy's low
    -- watermarks. Kept by the triggers below (and by pruning, the only
    -- delete), so a decision reads one row instead of probing three indexes.
    min_slot         INTEGER CHECK (min_slot >= 0),
    min_source_epoch INTEGER CHECK (min_source_epoch >= 0),
    min_target_epoch INTEGER CHECK (min_target_epoch >= 0),
    -- Explicit watermarks raised by pruning; never lowered.
    slot_wm          INTEGER CHECK (slot_wm >= 0),
    source_epoch_wm  INTEGER CHECK (source_epoch_wm >= 0),
    target_epoch_wm  INTEGER CHECK (target_epoch_wm >= 0)
) STRICT;

CREATE TABLE signed_blocks (
    validator_id INTEGER NOT NULL REFERENCES validators (id),
    slot         INTEGER NOT NULL CHECK (slot >= 0),
    signing_root BLOB CHECK (signing_root IS NULL OR length(signing_root) = 32),
    PRIMARY KEY (validator_id, slot)
) STRICT, WITHOUT ROWID;

CREATE TABLE signed_attestations (
    validator_id INTEGER NOT NULL REFERENCES validators (id),
    source_epoch INTEGER NOT NULL CHECK (source_epoch >= 0),
    target_epoch INTEGER NOT NULL CHECK (target_epoch >= 0),
    signing_root BLOB CHECK (signing_root IS NULL OR length(signing_root) = 32),
    PRIMARY KEY (validator_id, target_epoch)
) STRICT, WITHOUT ROWID;

-- The rare imported records whose source is after their target: only those
-- can be surrounded from outside the (source, target) window that the
-- primary key scans. Partial, so an ordinary decision writes no page here.
CREATE INDEX signed_attestations_inverted ON signed_attestations (validator_id, source_epoch)
    WHERE source_epoch > target_epoch;

-- Keep the minimums. Each UPDATE matches (and so writes) only when a minimum moves.
CREATE TRIGGER signed_blocks_min AFTER INSERT ON signed_blocks BEGIN
    UPDATE validators SET min_slot = NEW.slot
        WHERE id = NEW.validator_id AND (min_slot IS NULL OR min_slot > NEW.slot);
END;
CREATE TRIGGER signed_attestations_min AFTER INSERT ON signed_attestations BEGIN
    UPDATE validators SET min_source_epoch = NEW.source_epoch
        WHERE id = NEW.validator_id AND (min_source_epoch IS NULL OR min_source_epoch > NEW.source_epoch);
    UPDATE validators SET min_target_epoch = NEW.target_epoch
        WHERE id = NEW.validator_id AND (min_target_epoch IS NULL OR min_target_epoch > NEW.target_epoch);
END;
-- An import may raise a record's source (two sources for one target): recount.
CREATE TRIGGER signed_attestations_source_moved AFTER UPDATE OF source_epoch ON signed_attestations
    WHEN NEW.source_epoch IS NOT OLD.source_epoch BEGIN
    UPDATE validators SET min_source_epoch =
        (SELECT min(source_epoch) FROM signed_attestations WHERE validator_id = NEW.validator_id)
        WHERE id = NEW.validator_id;
END;

-- A recorded root may become unknown (NULL, after conflicting imports) but is
-- never replaced by another root.
CREATE TRIGGER signed_blocks_root_fixed BEFORE UPDATE OF signing_root ON signed_blocks
    WHEN NEW.signing_root IS NOT NULL AND NEW.signing_root IS NOT OLD.signing_root
    BEGIN SELECT RAISE(ABORT, 'slashing protection: block signing root may not change'); END;
CREATE TRIGGER signed_attestations_root_fixed BEFORE UPDATE OF signing_root ON signed_attestations
    WHEN NEW.signing_root IS NOT NULL AND NEW.signing_root IS NOT OLD.signing_root
    BEGIN SELECT RAISE(ABORT, 'slashing protection: attestation signing root may not change'); END;

CREATE TABLE cometbft_state (
    consensus_key BLOB NOT NULL,
    chain_id      TEXT NOT NULL,
    height        INTEGER NOT NULL CHECK (height >= 0),
    round         INTEGER NOT NULL CHECK (round >= 0),
    step          INTEGER NOT NULL CHECK (step IN (1, 2, 3)),
    sign_bytes    BLOB NOT NULL,
    signature     BLOB,
    PRIMARY KEY (consensus_key, chain_id)
) STRICT, WITHOUT ROWID;

-- Height/round/step never go back, and one position holds one message.
CREATE TRIGGER cometbft_state_monotonic BEFORE UPDATE ON cometbft_state
    WHEN (NEW.height, NEW.round, NEW.step) < (OLD.height, OLD.round, OLD.step)
      OR ((NEW.height, NEW.round, NEW.step) = (OLD.height, OLD.round, OLD.step)
          AND NEW.sign_bytes IS NOT OLD.sign_bytes)
    BEGIN SELECT RAISE(ABORT, 'slashing protection: CometBFT height/round/step may not go back'); END;
";

/// Version 2: the last Gloas message per validator and lane (payload
/// attestations, payload envelopes): one row each, its slot never going
/// back and one slot holding one message.
const V2: &str = "
CREATE TABLE signed_messages (
    validator_id INTEGER NOT NULL REFERENCES validators (id),
    lane         INTEGER NOT NULL CHECK (lane IN (1, 2)),
    slot         INTEGER NOT NULL CHECK (slot >= 0),
    signing_root BLOB NOT NULL CHECK (length(signing_root) = 32),
    PRIMARY KEY (validator_id, lane)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER signed_messages_monotonic BEFORE UPDATE ON signed_messages
    WHEN NEW.slot < OLD.slot OR (NEW.slot = OLD.slot AND NEW.signing_root IS NOT OLD.signing_root)
    BEGIN SELECT RAISE(ABORT, 'slashing protection: a Gloas message slot may not go back'); END;
";
