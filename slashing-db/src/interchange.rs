//! EIP-3076 slashing-protection interchange, format version 5.
//!
//! The wire types here keep the format's quirks (numbers as decimal strings,
//! optional roots) away from the domain types. Unknown fields are refused: a
//! misspelt `signed_attestation` would otherwise import nothing, silently.
//!
//! **Import** merges into existing history in one transaction: either the whole
//! file is merged or nothing is. Records are merged verbatim, slashable ones
//! included (more history only refuses more): a slot or target recorded with
//! two different roots keeps no root, which refuses every later message there.
//! An all-zero root in a file means "unknown" and is stored as no root.
//! On a shared target the higher source is kept (protects future votes).
//!
//! **Export** writes the complete history in a stable order (validators by
//! public key, blocks by slot, attestations by target). Explicit watermarks
//! left by pruning become one extra record at the watermark, so a client that
//! imports the file refuses everything this database refuses.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::decide::validator_or_insert;
use crate::engine::Engine;
use crate::error::DbError;
use crate::record::{SignedAttestation, SignedBlock};
use crate::types::{BlsPublicKey, Epoch, GenesisRoot, SigningRoot, Slot};
use crate::writer::AsDbError;

/// The only interchange version this module reads and writes.
pub const FORMAT_VERSION: &str = "5";

/// An EIP-3076 interchange file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interchange {
    /// Format version and network.
    pub metadata: Metadata,
    /// One entry per validator (a public key may appear more than once).
    pub data: Vec<ValidatorHistory>,
}

/// The interchange header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Must be `"5"`.
    pub interchange_format_version: String,
    /// The network the history belongs to.
    pub genesis_validators_root: GenesisRoot,
}

/// One validator's history in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorHistory {
    /// The validator.
    pub pubkey: BlsPublicKey,
    /// Signed blocks.
    pub signed_blocks: Vec<InterchangeBlock>,
    /// Signed attestations.
    pub signed_attestations: Vec<InterchangeAttestation>,
}

/// A block record in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterchangeBlock {
    /// Slot, as a decimal string.
    #[serde(with = "quoted")]
    pub slot: u64,
    /// Signing root, if the exporter knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_root: Option<SigningRoot>,
}

/// An attestation record in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterchangeAttestation {
    /// Source epoch, as a decimal string.
    #[serde(with = "quoted")]
    pub source_epoch: u64,
    /// Target epoch, as a decimal string.
    #[serde(with = "quoted")]
    pub target_epoch: u64,
    /// Signing root, if the exporter knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_root: Option<SigningRoot>,
}

/// Decimal-string `u64` (`"123"`), the interchange's spelling of numbers.
mod quoted {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(D::Error::custom(format!(
                "expected a decimal number in a string, got {s:?}"
            )));
        }
        s.parse()
            .map_err(|_| D::Error::custom(format!("number {s:?} does not fit in 64 bits")))
    }
}

/// Why an interchange could not be read or imported. Nothing was imported.
#[derive(Debug, thiserror::Error)]
pub enum InterchangeError {
    /// Not valid JSON of the interchange shape.
    #[error("interchange file is not valid EIP-3076 JSON: {0}")]
    Parse(#[from] serde_json::Error),
    /// Reading or writing the file failed.
    #[error("interchange file: {0}")]
    Io(#[from] std::io::Error),
    /// A format version other than 5.
    #[error("interchange format version {0:?} is not supported (only \"5\")")]
    UnsupportedVersion(String),
    /// The file is for another network.
    #[error("interchange is for genesis validators root {file}, this database protects {database}")]
    GenesisRootMismatch {
        /// Root this database is pinned to.
        database: GenesisRoot,
        /// Root named by the file.
        file: GenesisRoot,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl AsDbError for InterchangeError {
    fn as_db_error(&self) -> Option<&DbError> {
        match self {
            Self::Db(e) => Some(e),
            _ => None,
        }
    }
}

impl Interchange {
    /// Reads and parses an interchange (does not check version or network).
    pub fn from_reader(r: impl Read) -> Result<Self, InterchangeError> {
        Ok(serde_json::from_reader(std::io::BufReader::new(r))?)
    }

    /// Writes the interchange as compact JSON (a 10,000-validator history is
    /// gigabytes; `jq .` makes it readable).
    pub fn to_writer(&self, w: impl Write) -> Result<(), InterchangeError> {
        let mut w = std::io::BufWriter::new(w);
        serde_json::to_writer(&mut w, self)?;
        w.flush()?;
        Ok(())
    }
}

/// What an import merged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Validator entries in the file.
    pub validators: u64,
    /// Block records merged.
    pub blocks: u64,
    /// Attestation records merged.
    pub attestations: u64,
}

/// Merges `file` into the engine's history. Call inside a transaction.
pub(crate) fn import(
    e: &mut dyn Engine,
    file: &Interchange,
) -> Result<ImportSummary, InterchangeError> {
    if file.metadata.interchange_format_version != FORMAT_VERSION {
        return Err(InterchangeError::UnsupportedVersion(
            file.metadata.interchange_format_version.clone(),
        ));
    }
    let root = file.metadata.genesis_validators_root;
    match e.genesis_root()? {
        Some(database) if database != root => {
            return Err(InterchangeError::GenesisRootMismatch {
                database,
                file: root,
            });
        }
        Some(_) => {}
        None => e.set_genesis_root(&root)?,
    }
    let mut summary = ImportSummary::default();
    for entry in &file.data {
        let v = validator_or_insert(e, &entry.pubkey)?;
        summary.validators += 1;
        for b in &entry.signed_blocks {
            e.merge_block(
                v,
                &SignedBlock {
                    slot: Slot(b.slot),
                    signing_root: b.signing_root,
                },
            )?;
            summary.blocks += 1;
        }
        for a in &entry.signed_attestations {
            let a = SignedAttestation {
                source: Epoch(a.source_epoch),
                target: Epoch(a.target_epoch),
                signing_root: known(a.signing_root),
            };
            e.merge_attestation(v, &a)?;
            summary.attestations += 1;
        }
    }
    Ok(summary)
}

fn known(r: Option<SigningRoot>) -> Option<SigningRoot> {
    r.filter(|r| !r.is_zero())
}

/// What the Ethereum history holds, counted as stored (unlike an export,
/// where a pruned validator's watermarks appear as extra records).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistorySummary {
    /// Validators with any history.
    pub validators: u64,
    /// Signed blocks recorded.
    pub blocks: u64,
    /// Signed attestations recorded.
    pub attestations: u64,
    /// Validators whose older history was pruned into watermarks.
    pub pruned: u64,
}

/// Counts the history. Call inside a transaction.
pub(crate) fn summary(e: &mut dyn Engine) -> Result<HistorySummary, DbError> {
    let mut s = HistorySummary::default();
    for (v, _) in e.validators()? {
        let w = e.bounds(v)?.watermarks;
        s.validators += 1;
        s.blocks += e.blocks(v)?.len() as u64;
        s.attestations += e.attestations(v)?.len() as u64;
        if w.block_slot.is_some() || w.target_epoch.is_some() {
            s.pruned += 1;
        }
    }
    Ok(s)
}

/// The complete history as an interchange. Call inside a transaction.
pub(crate) fn export(e: &mut dyn Engine) -> Result<Interchange, DbError> {
    let Some(root) = e.genesis_root()? else {
        return Err(DbError::NoNetwork);
    };
    let mut data = Vec::new();
    for (v, pubkey) in e.validators()? {
        let w = e.bounds(v)?.watermarks;
        let mut signed_blocks: Vec<InterchangeBlock> = e
            .blocks(v)?
            .into_iter()
            .map(|b| InterchangeBlock {
                slot: b.slot.0,
                signing_root: b.signing_root,
            })
            .collect();
        if let Some(slot) = w.block_slot
            && !signed_blocks.iter().any(|b| b.slot == slot.0)
        {
            signed_blocks.push(InterchangeBlock {
                slot: slot.0,
                signing_root: None,
            });
            signed_blocks.sort_by_key(|b| b.slot);
        }
        let mut signed_attestations: Vec<InterchangeAttestation> = e
            .attestations(v)?
            .into_iter()
            .map(|a| InterchangeAttestation {
                source_epoch: a.source.0,
                target_epoch: a.target.0,
                signing_root: a.signing_root,
            })
            .collect();
        if let (Some(source), Some(target)) = (w.source_epoch, w.target_epoch)
            && !signed_attestations
                .iter()
                .any(|a| a.target_epoch == target.0)
        {
            signed_attestations.push(InterchangeAttestation {
                source_epoch: source.0,
                target_epoch: target.0,
                signing_root: None,
            });
            signed_attestations.sort_by_key(|a| a.target_epoch);
        }
        data.push(ValidatorHistory {
            pubkey,
            signed_blocks,
            signed_attestations,
        });
    }
    Ok(Interchange {
        metadata: Metadata {
            interchange_format_version: FORMAT_VERSION.to_owned(),
            genesis_validators_root: root,
        },
        data,
    })
}
