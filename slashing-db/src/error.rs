//! The two kinds of "no": a message that is not safe to sign ([`NotSafe`], a
//! decision, carrying the stored record that conflicts), and a database that
//! could not decide ([`DbError`], nothing was recorded).

use std::path::PathBuf;

use crate::types::{Epoch, GenesisRoot, Slot};
use crate::{CometRecord, SignedAttestation, SignedBlock};

/// A refusal: signing this message could be slashable, or is outside what this
/// database protects. Each variant carries the stored record (or bound) that
/// caused it, as evidence for logs and for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSafe {
    /// The request names another network than the one this database protects.
    #[error("genesis validators root {got} is not this database's {expected}")]
    WrongGenesisRoot {
        /// The root this database is pinned to.
        expected: GenesisRoot,
        /// The root the request named.
        got: GenesisRoot,
    },
    /// Another block was already signed at this slot.
    #[error("double block proposal: a different block was signed at slot {}", prev.slot)]
    DoubleBlockProposal {
        /// The stored block at the same slot.
        prev: SignedBlock,
    },
    /// The slot is at or below the lowest slot this database can vouch for.
    #[error("block slot {slot} is at or below the low watermark {low_watermark}")]
    BlockBelowLowWatermark {
        /// The requested slot.
        slot: Slot,
        /// The lowest slot history covers (or was pruned up to).
        low_watermark: Slot,
    },
    /// An attestation whose source epoch is after its target epoch.
    #[error("attestation source {source_epoch} is after its target {target}")]
    SourceExceedsTarget {
        /// Requested source epoch.
        source_epoch: Epoch,
        /// Requested target epoch.
        target: Epoch,
    },
    /// Another attestation with the same target was already signed.
    #[error("double vote: a different attestation was signed for target {}", prev.target)]
    DoubleVote {
        /// The stored attestation with the same target.
        prev: SignedAttestation,
    },
    /// The new attestation would surround a stored one.
    #[error("surrounding vote: it surrounds the signed attestation {}→{}", prev.source, prev.target)]
    SurroundingVote {
        /// The stored attestation that the new one surrounds.
        prev: SignedAttestation,
    },
    /// The new attestation would be surrounded by a stored one.
    #[error("surrounded vote: the signed attestation {}→{} surrounds it", prev.source, prev.target)]
    SurroundedVote {
        /// The stored attestation that surrounds the new one.
        prev: SignedAttestation,
    },
    /// The source epoch is below the lowest source history covers.
    #[error("attestation source {source_epoch} is below the low watermark {low_watermark}")]
    SourceBelowLowWatermark {
        /// Requested source epoch.
        source_epoch: Epoch,
        /// Lowest source epoch history covers.
        low_watermark: Epoch,
    },
    /// The target epoch is at or below the lowest target history covers.
    #[error("attestation target {target} is at or below the low watermark {low_watermark}")]
    TargetBelowLowWatermark {
        /// Requested target epoch.
        target: Epoch,
        /// Lowest target epoch history covers.
        low_watermark: Epoch,
    },
    /// CometBFT: the height is below the last signed height.
    #[error("height regression: asked {asked}, last signed {}", prev.hrs)]
    HeightRegression {
        /// The stored last signature position.
        prev: Box<CometRecord>,
        /// What was asked for.
        asked: crate::Hrs,
    },
    /// CometBFT: same height, lower round.
    #[error("round regression: asked {asked}, last signed {}", prev.hrs)]
    RoundRegression {
        /// The stored last signature position.
        prev: Box<CometRecord>,
        /// What was asked for.
        asked: crate::Hrs,
    },
    /// CometBFT: same height and round, earlier step.
    #[error("step regression: asked {asked}, last signed {}", prev.hrs)]
    StepRegression {
        /// The stored last signature position.
        prev: Box<CometRecord>,
        /// What was asked for.
        asked: crate::Hrs,
    },
    /// Gloas: a different message of the lane was signed at this slot.
    #[error("equivocation: a different {} was signed at slot {}", lane.name(), prev.slot)]
    Equivocation {
        /// Which kind of message.
        lane: crate::Lane,
        /// The stored message at the same slot.
        prev: crate::SignedMessage,
    },
    /// Gloas: a message of the lane was signed at a later slot.
    #[error("{} at slot {slot} is older than the one signed at slot {}", lane.name(), prev.slot)]
    StaleMessage {
        /// Which kind of message.
        lane: crate::Lane,
        /// The requested slot.
        slot: Slot,
        /// The stored, later message.
        prev: crate::SignedMessage,
    },
    /// CometBFT: same height/round/step, but a different message (not only
    /// the timestamp differs). Signing it would be a double sign.
    #[error("double sign: different sign bytes at {}", prev.hrs)]
    ConflictingSignBytes {
        /// The stored message at this position.
        prev: Box<CometRecord>,
    },
}

impl NotSafe {
    /// A short stable name for metrics and wire mapping (`double_vote`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::WrongGenesisRoot { .. } => "wrong_genesis_root",
            Self::DoubleBlockProposal { .. } => "double_block_proposal",
            Self::BlockBelowLowWatermark { .. } => "block_below_low_watermark",
            Self::SourceExceedsTarget { .. } => "source_exceeds_target",
            Self::DoubleVote { .. } => "double_vote",
            Self::SurroundingVote { .. } => "surrounding_vote",
            Self::SurroundedVote { .. } => "surrounded_vote",
            Self::SourceBelowLowWatermark { .. } => "source_below_low_watermark",
            Self::TargetBelowLowWatermark { .. } => "target_below_low_watermark",
            Self::HeightRegression { .. } => "height_regression",
            Self::RoundRegression { .. } => "round_regression",
            Self::StepRegression { .. } => "step_regression",
            Self::ConflictingSignBytes { .. } => "double_sign",
            Self::Equivocation { .. } => "equivocation",
            Self::StaleMessage { .. } => "stale_message",
        }
    }
}

/// The database could not answer. Nothing was recorded for the request that got
/// this error, so nothing may be signed for it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// A file-system operation around the database failed.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a database of ours or is damaged (truncated, overwritten).
    #[error("database {} is corrupt or not a slashing database: {detail}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was found wrong.
        detail: String,
    },
    /// The database was written by a newer version of this software.
    #[error(
        "database schema version {found} is newer than this build supports ({supported}); upgrade the signer, do not downgrade it"
    )]
    SchemaTooNew {
        /// Version found in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// Another process (or another handle in this one) holds the database.
    #[error("database {} is in use by another process; stop it first", path.display())]
    InUse {
        /// The database file.
        path: PathBuf,
    },
    /// The configured network is not the one this database was created for.
    #[error("database protects genesis validators root {stored}, but {configured} is configured")]
    GenesisRootMismatch {
        /// Root stored in the database.
        stored: GenesisRoot,
        /// Root in the configuration.
        configured: GenesisRoot,
    },
    /// Nothing was ever recorded or imported, so the database has no network
    /// yet (and nothing to export).
    #[error("the database is not pinned to a network yet: nothing has been recorded or imported")]
    NoNetwork,
    /// A number too large for the storage engine (above `i64::MAX`).
    #[error("{what} {value} is out of the storable range")]
    OutOfRange {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// The disk is full; the transaction was rolled back and nothing recorded.
    #[error("disk full: nothing was recorded")]
    DiskFull,
    /// The database file or its directory is not writable.
    #[error("database is read-only: nothing was recorded")]
    ReadOnly,
    /// An earlier I/O error during a commit left the on-disk state uncertain;
    /// the handle refuses everything until the database is reopened.
    #[error(
        "database refused: an earlier I/O error ({0}) left its state uncertain; restart to reopen it"
    )]
    Poisoned(String),
    /// The storage engine reported an I/O failure (`EIO`, a failed `fsync`).
    #[error("I/O failure while {context}: {source}")]
    EngineIo {
        /// What was being done.
        context: &'static str,
        /// The engine's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The shared database could not be reached, or the connection was lost
    /// or stalled before the transaction committed. Nothing was recorded; the
    /// engine reconnects on the next call.
    #[error("slashing database unavailable while {context}: {detail}")]
    Unavailable {
        /// What was being done.
        context: &'static str,
        /// What went wrong (refused, reset, timed out, …).
        detail: String,
    },
    /// The connection was lost (or stalled past its deadline) during `COMMIT`:
    /// the decision may or may not be durable. It is a refusal — nothing may
    /// be signed for it — and the next attempt decides again from what the
    /// database holds.
    #[error("slashing database commit outcome unknown (connection lost during COMMIT): {detail}")]
    CommitOutcomeUnknown {
        /// What happened to the connection.
        detail: String,
    },
    /// Two transactions (of this or another signer instance) waited on each
    /// other, or serialisation failed; the transaction was rolled back and may
    /// be retried as a whole.
    #[error("slashing database conflict while {context} (retry): {detail}")]
    Contended {
        /// What was being done.
        context: &'static str,
        /// The server's message.
        detail: String,
    },
    /// The shared database refused us at connect (authentication, TLS,
    /// unknown database, not a primary) — a configuration problem.
    #[error("cannot use slashing database {target}: {detail}")]
    Connect {
        /// Which server(s) and database.
        target: String,
        /// The reason, as the server or the TLS layer gave it.
        detail: String,
    },
    /// The shared database does not make commits durable enough to protect
    /// keys (`fsync = off`, or no synchronous standby when one is required).
    #[error("slashing database {target} is not durable enough: {detail}")]
    NotDurable {
        /// Which server(s) and database.
        target: String,
        /// Which setting, and what to do.
        detail: String,
    },
    /// Any other engine error, with what was being done.
    #[error("{context}: {source}")]
    Engine {
        /// What was being done.
        context: &'static str,
        /// The engine's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl DbError {
    /// An equal error for another caller of the same failed batch (the
    /// sources are not `Clone`; their text is kept).
    pub fn duplicate(&self) -> DbError {
        fn text(
            e: &(dyn std::error::Error + Send + Sync),
        ) -> Box<dyn std::error::Error + Send + Sync> {
            e.to_string().into()
        }
        match self {
            Self::Io {
                context,
                path,
                source,
            } => Self::Io {
                context,
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Self::Corrupt { path, detail } => Self::Corrupt {
                path: path.clone(),
                detail: detail.clone(),
            },
            Self::SchemaTooNew { found, supported } => Self::SchemaTooNew {
                found: *found,
                supported: *supported,
            },
            Self::InUse { path } => Self::InUse { path: path.clone() },
            Self::GenesisRootMismatch { stored, configured } => Self::GenesisRootMismatch {
                stored: *stored,
                configured: *configured,
            },
            Self::OutOfRange { what, value } => Self::OutOfRange {
                what,
                value: *value,
            },
            Self::NoNetwork => Self::NoNetwork,
            Self::DiskFull => Self::DiskFull,
            Self::ReadOnly => Self::ReadOnly,
            Self::Poisoned(s) => Self::Poisoned(s.clone()),
            Self::Unavailable { context, detail } => Self::Unavailable {
                context,
                detail: detail.clone(),
            },
            Self::CommitOutcomeUnknown { detail } => Self::CommitOutcomeUnknown {
                detail: detail.clone(),
            },
            Self::Contended { context, detail } => Self::Contended {
                context,
                detail: detail.clone(),
            },
            Self::Connect { target, detail } => Self::Connect {
                target: target.clone(),
                detail: detail.clone(),
            },
            Self::NotDurable { target, detail } => Self::NotDurable {
                target: target.clone(),
                detail: detail.clone(),
            },
            Self::EngineIo { context, source } => Self::EngineIo {
                context,
                source: text(source.as_ref()),
            },
            Self::Engine { context, source } => Self::Engine {
                context,
                source: text(source.as_ref()),
            },
        }
    }

    /// True for errors after which the on-disk state is uncertain (the engine
    /// reported an I/O failure mid-commit). See [`DbError::Poisoned`].
    pub fn is_io_failure(&self) -> bool {
        matches!(self, Self::EngineIo { .. })
    }

    /// True when the database could not be reached or did not answer in
    /// time: nothing is wrong with the request, and a later attempt may
    /// succeed once the database is back (clients: "unavailable, retry").
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::CommitOutcomeUnknown { .. } | Self::Contended { .. }
        )
    }
}
