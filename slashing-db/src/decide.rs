//! Check-and-record inside the caller's transaction: gather the facts from the
//! engine, apply the pure rule, and record the message when it is new. Shared by
//! every engine, so the rules are applied in exactly one place.

use crate::engine::{Engine, ValidatorId};
use crate::error::{DbError, NotSafe};
use crate::record::{Decision, Proposal, Safe, SignedAttestation, SignedBlock, SignedMessage};
use crate::rules::{cometbft, eth};
use crate::types::{BlsPublicKey, GenesisRoot};

/// Decides one proposal and records it if it is [`Safe::Valid`]. Must run
/// inside a transaction; later proposals in the same transaction see it.
pub fn decide(e: &mut dyn Engine, p: &Proposal) -> Result<Decision, DbError> {
    match p {
        Proposal::Block(b) => {
            if let Some(refusal) = check_network(e, &b.genesis_root)? {
                return Ok(Err(refusal));
            }
            let v = validator_or_insert(e, &b.pubkey)?;
            let facts = eth::BlockFacts {
                same_slot: e.block_at(v, b.slot)?,
                low_watermark: e.bounds(v)?.block_slot(),
            };
            let d = eth::check_block(b, &facts);
            if d == Ok(Safe::Valid) {
                e.insert_block(
                    v,
                    &SignedBlock {
                        slot: b.slot,
                        signing_root: Some(b.signing_root),
                    },
                )?;
            }
            Ok(d)
        }
        Proposal::Attestation(a) => {
            if let Some(refusal) = check_network(e, &a.genesis_root)? {
                return Ok(Err(refusal));
            }
            let v = validator_or_insert(e, &a.pubkey)?;
            let bounds = e.bounds(v)?;
            let facts = eth::AttestationFacts {
                same_target: e.attestation_for_target(v, a.target)?,
                surrounded_by_new: e.attestation_surrounded_by(v, a.source, a.target)?,
                surrounding_new: e.attestation_surrounding(v, a.source, a.target)?,
                source_low_watermark: bounds.source_epoch(),
                target_low_watermark: bounds.target_epoch(),
            };
            let d = eth::check_attestation(a, &facts);
            if d == Ok(Safe::Valid) {
                e.insert_attestation(
                    v,
                    &SignedAttestation {
                        source: a.source,
                        target: a.target,
                        signing_root: Some(a.signing_root),
                    },
                )?;
            }
            Ok(d)
        }
        Proposal::Message(m) => {
            if let Some(refusal) = check_network(e, &m.genesis_root)? {
                return Ok(Err(refusal));
            }
            let v = validator_or_insert(e, &m.pubkey)?;
            let last = e.message_last(v, m.lane)?;
            let d = eth::check_message(m, last.as_ref());
            if d == Ok(Safe::Valid) {
                e.message_store(
                    v,
                    m.lane,
                    &SignedMessage {
                        slot: m.slot,
                        signing_root: m.signing_root,
                    },
                )?;
            }
            Ok(d)
        }
        Proposal::CometBft(c) => {
            let last = e.cometbft_last(c.key(), c.chain_id())?;
            let d = cometbft::check(c, last.as_ref());
            if d == Ok(Safe::Valid) {
                e.cometbft_store(
                    c.key(),
                    c.chain_id(),
                    &crate::CometRecord {
                        hrs: c.hrs(),
                        sign_bytes: c.sign_bytes().to_vec(),
                        signature: None,
                    },
                )?;
            }
            Ok(d)
        }
    }
}

/// Pins the network on first use; refuses any other afterwards.
pub(crate) fn check_network(
    e: &mut dyn Engine,
    got: &GenesisRoot,
) -> Result<Option<NotSafe>, DbError> {
    match e.genesis_root()? {
        Some(expected) if expected != *got => Ok(Some(NotSafe::WrongGenesisRoot {
            expected,
            got: *got,
        })),
        Some(_) => Ok(None),
        None => {
            e.set_genesis_root(got)?;
            Ok(None)
        }
    }
}

pub(crate) fn validator_or_insert(
    e: &mut dyn Engine,
    pubkey: &BlsPublicKey,
) -> Result<ValidatorId, DbError> {
    match e.validator(pubkey)? {
        Some(v) => Ok(v),
        None => e.insert_validator(pubkey),
    }
}
