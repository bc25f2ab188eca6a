//! Web3Signer eth2 signing requests → [`Signable`].

use alloy_primitives::B256;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tree_hash::TreeHash;

use super::containers::*;
use super::domain::{self, DomainType};
use super::preset::{Mainnet, Minimal, Preset};
use super::{Network, PresetKind, compute_domain, compute_signing_root};

/// The forks the API names (`beacon_block.version`, `aggregate_and_proof.version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ForkName {
    /// Phase 0.
    Phase0,
    /// Altair.
    Altair,
    /// Bellatrix.
    Bellatrix,
    /// Capella.
    Capella,
    /// Deneb.
    Deneb,
    /// Electra.
    Electra,
    /// Fulu.
    Fulu,
}

impl ForkName {
    fn parse(s: &str) -> Result<Self, Eth2Error> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "PHASE0" | "PHASE_0" => Self::Phase0,
            "ALTAIR" => Self::Altair,
            "BELLATRIX" => Self::Bellatrix,
            "CAPELLA" => Self::Capella,
            "DENEB" => Self::Deneb,
            "ELECTRA" => Self::Electra,
            "FULU" => Self::Fulu,
            _ => return Err(Eth2Error::UnknownFork(s.to_owned())),
        })
    }
}

/// Which request type was decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `BLOCK` (deprecated, phase0 block).
    Block,
    /// `BLOCK_V2` of a fork.
    BlockV2(ForkName),
    /// `ATTESTATION`.
    Attestation,
    /// `AGGREGATION_SLOT`.
    AggregationSlot,
    /// `AGGREGATE_AND_PROOF` (deprecated, pre-Electra).
    AggregateAndProof,
    /// `AGGREGATE_AND_PROOF_V2` of a fork.
    AggregateAndProofV2(ForkName),
    /// `DEPOSIT`.
    Deposit,
    /// `RANDAO_REVEAL`.
    RandaoReveal,
    /// `VOLUNTARY_EXIT`.
    VoluntaryExit,
    /// `SYNC_COMMITTEE_MESSAGE`.
    SyncCommitteeMessage,
    /// `SYNC_COMMITTEE_SELECTION_PROOF`.
    SyncCommitteeSelectionProof,
    /// `SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF`.
    SyncCommitteeContributionAndProof,
    /// `VALIDATOR_REGISTRATION`.
    ValidatorRegistration,
}

/// What slashing protection must check before this is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlashingFacts {
    /// Not slashable.
    None,
    /// A block at this slot.
    Block {
        /// Slot.
        slot: u64,
    },
    /// An attestation with these checkpoints.
    Attestation {
        /// Source epoch.
        source: u64,
        /// Target epoch.
        target: u64,
    },
}

/// A decoded request: what to sign and what to check first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signable {
    /// Request type.
    pub kind: RequestKind,
    /// The signing root we computed; this is what gets signed.
    pub signing_root: B256,
    /// Facts for the slashing database.
    pub slashing: SlashingFacts,
    /// The network named by `fork_info` (absent for deposits and registrations).
    pub genesis_validators_root: Option<B256>,
}

/// Why a request cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Eth2Error {
    /// Not JSON, or a field of the wrong shape.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A required field is missing.
    #[error("missing field {0}")]
    Missing(&'static str),
    /// A `type` this signer does not know.
    #[error("unknown request type {0:?}")]
    UnknownType(String),
    /// A fork name this signer does not know.
    #[error("unknown fork {0:?}")]
    UnknownFork(String),
    /// The fork does not have this request form (e.g. a block header before Bellatrix).
    #[error("{0}")]
    WrongForm(&'static str),
    /// The client's `signingRoot` is not the one we computed from the message.
    #[error("signing root mismatch: the request says {client}, the message hashes to {computed}")]
    SigningRootMismatch {
        /// What the client sent.
        client: B256,
        /// What we computed.
        computed: B256,
    },
}

fn at<'a>(v: &'a Value, name: &'static str) -> Result<&'a Value, Eth2Error> {
    v.get(name)
        .filter(|x| !x.is_null())
        .ok_or(Eth2Error::Missing(name))
}

fn parse<T: DeserializeOwned>(v: &Value, name: &'static str) -> Result<T, Eth2Error> {
    T::deserialize(at(v, name)?).map_err(|e| Eth2Error::Malformed(format!("{name}: {e}")))
}

#[derive(Deserialize)]
struct SlotOnly {
    #[serde(with = "serde_utils::quoted_u64")]
    slot: u64,
}

#[derive(Deserialize)]
struct EpochOnly {
    #[serde(with = "serde_utils::quoted_u64")]
    epoch: u64,
}

#[derive(Deserialize)]
struct SyncCommitteeMessage {
    beacon_block_root: B256,
    #[serde(with = "serde_utils::quoted_u64")]
    slot: u64,
}

#[derive(Deserialize)]
struct DepositRequest {
    pubkey: PublicKeyBytes,
    withdrawal_credentials: B256,
    #[serde(with = "serde_utils::quoted_u64")]
    amount: u64,
    genesis_fork_version: Version,
}

/// Decodes a Web3Signer eth2 signing request body and computes its signing
/// root. A `signingRoot` (or `signing_root`) in the request must equal it.
pub fn decode(body: &[u8], network: &Network) -> Result<Signable, Eth2Error> {
    decode_value(&parse_body(body)?, network)
}

/// A request body as a JSON document (what frontends do at the edge).
pub fn parse_body(body: &[u8]) -> Result<Value, Eth2Error> {
    crate::json::from_slice(body).map_err(|e| Eth2Error::Malformed(e.to_string()))
}

/// [`decode`] of a request already read as a JSON document: the gRPC
/// frontend builds the document from protobuf fields, the HTTP frontend
/// parses the body once; neither goes through text again.
pub fn decode_value(v: &Value, network: &Network) -> Result<Signable, Eth2Error> {
    let signable = match network.preset {
        PresetKind::Mainnet => decode_with::<Mainnet>(v, network)?,
        PresetKind::Minimal => decode_with::<Minimal>(v, network)?,
    };
    let client = v
        .get("signingRoot")
        .or_else(|| v.get("signing_root"))
        .filter(|x| !x.is_null());
    if let Some(client) = client {
        let client = B256::deserialize(client)
            .map_err(|e| Eth2Error::Malformed(format!("signingRoot: {e}")))?;
        if client != signable.signing_root {
            return Err(Eth2Error::SigningRootMismatch {
                client,
                computed: signable.signing_root,
            });
        }
    }
    Ok(signable)
}

/// Domain for `epoch` under `fork_info`: the fork's previous version before
/// its epoch, its current version from it.
fn domain_at(fi: &ForkInfo, domain_type: DomainType, epoch: u64) -> B256 {
    let version = if epoch < fi.fork.epoch {
        fi.fork.previous_version
    } else {
        fi.fork.current_version
    };
    compute_domain(domain_type, version, fi.genesis_validators_root)
}

/// The signing root and slashing facts of a message, given its `fork_info`.
type RootAndFacts = Result<(B256, SlashingFacts), Eth2Error>;

fn decode_with<P: Preset>(v: &Value, network: &Network) -> Result<Signable, Eth2Error> {
    let kind = at(v, "type")?.as_str().ok_or(Eth2Error::Missing("type"))?;
    let epoch_of = |slot: u64| slot / P::SLOTS_PER_EPOCH;
    let with_fork = |kind, root_of: &dyn Fn(&ForkInfo) -> RootAndFacts| {
        let fi: ForkInfo = parse(v, "fork_info")?;
        let (signing_root, slashing) = root_of(&fi)?;
        Ok::<_, Eth2Error>(Signable {
            kind,
            signing_root,
            slashing,
            genesis_validators_root: Some(fi.genesis_validators_root),
        })
    };
    match kind {
        "BLOCK" => with_fork(RequestKind::Block, &|fi| {
            let block: BeaconBlock<BeaconBlockBodyPhase0<P>> = parse(v, "block")?;
            let domain = domain_at(fi, domain::BEACON_PROPOSER, epoch_of(block.slot));
            Ok((
                compute_signing_root(&block, domain),
                SlashingFacts::Block { slot: block.slot },
            ))
        }),
        "BLOCK_V2" => {
            let bb = at(v, "beacon_block")?;
            let fork = ForkName::parse(
                at(bb, "version")?
                    .as_str()
                    .ok_or(Eth2Error::Missing("version"))?,
            )?;
            with_fork(RequestKind::BlockV2(fork), &|fi| {
                let (slot, object_root) = match fork {
                    ForkName::Phase0 => {
                        let b: BeaconBlock<BeaconBlockBodyPhase0<P>> = parse(bb, "block")?;
                        (b.slot, b.tree_hash_root())
                    }
                    ForkName::Altair => {
                        let b: BeaconBlock<BeaconBlockBodyAltair<P>> = parse(bb, "block")?;
                        (b.slot, b.tree_hash_root())
                    }
                    _ => {
                        if bb.get("block_header").is_none() {
                            return Err(Eth2Error::WrongForm(
                                "from Bellatrix on, BLOCK_V2 carries block_header",
                            ));
                        }
                        let h: BeaconBlockHeader = parse(bb, "block_header")?;
                        (h.slot, h.tree_hash_root())
                    }
                };
                let domain = domain_at(fi, domain::BEACON_PROPOSER, epoch_of(slot));
                Ok((
                    compute_signing_root(&object_root, domain),
                    SlashingFacts::Block { slot },
                ))
            })
        }
        "ATTESTATION" => with_fork(RequestKind::Attestation, &|fi| {
            let data: AttestationData = parse(v, "attestation")?;
            let domain = domain_at(fi, domain::BEACON_ATTESTER, data.target.epoch);
            let facts = SlashingFacts::Attestation {
                source: data.source.epoch,
                target: data.target.epoch,
            };
            Ok((compute_signing_root(&data, domain), facts))
        }),
        "AGGREGATION_SLOT" => with_fork(RequestKind::AggregationSlot, &|fi| {
            let s: SlotOnly = parse(v, "aggregation_slot")?;
            Ok((
                compute_signing_root(
                    &s.slot,
                    domain_at(fi, domain::SELECTION_PROOF, epoch_of(s.slot)),
                ),
                SlashingFacts::None,
            ))
        }),
        "AGGREGATE_AND_PROOF" => with_fork(RequestKind::AggregateAndProof, &|fi| {
            // Lighthouse sends Electra aggregates (which carry committee_bits)
            // under this type too, not as AGGREGATE_AND_PROOF_V2.
            let electra = at(v, "aggregate_and_proof")?
                .get("aggregate")
                .and_then(|a| a.get("committee_bits"))
                .is_some_and(|b| !b.is_null());
            let (slot, object_root) = if electra {
                let ap: AggregateAndProof<AttestationElectra<P>> = parse(v, "aggregate_and_proof")?;
                (ap.aggregate.data.slot, ap.tree_hash_root())
            } else {
                let ap: AggregateAndProof<Attestation<P>> = parse(v, "aggregate_and_proof")?;
                (ap.aggregate.data.slot, ap.tree_hash_root())
            };
            let domain = domain_at(fi, domain::AGGREGATE_AND_PROOF, epoch_of(slot));
            Ok((
                compute_signing_root(&object_root, domain),
                SlashingFacts::None,
            ))
        }),
        "AGGREGATE_AND_PROOF_V2" => {
            let x = at(v, "aggregate_and_proof")?;
            let fork = ForkName::parse(
                at(x, "version")?
                    .as_str()
                    .ok_or(Eth2Error::Missing("version"))?,
            )?;
            with_fork(RequestKind::AggregateAndProofV2(fork), &|fi| {
                let (slot, object_root) = if fork >= ForkName::Electra {
                    let ap: AggregateAndProof<AttestationElectra<P>> = parse(x, "data")?;
                    (ap.aggregate.data.slot, ap.tree_hash_root())
                } else {
                    let ap: AggregateAndProof<Attestation<P>> = parse(x, "data")?;
                    (ap.aggregate.data.slot, ap.tree_hash_root())
                };
                let domain = domain_at(fi, domain::AGGREGATE_AND_PROOF, epoch_of(slot));
                Ok((
                    compute_signing_root(&object_root, domain),
                    SlashingFacts::None,
                ))
            })
        }
        "RANDAO_REVEAL" => with_fork(RequestKind::RandaoReveal, &|fi| {
            let e: EpochOnly = parse(v, "randao_reveal")?;
            Ok((
                compute_signing_root(&e.epoch, domain_at(fi, domain::RANDAO, e.epoch)),
                SlashingFacts::None,
            ))
        }),
        "VOLUNTARY_EXIT" => with_fork(RequestKind::VoluntaryExit, &|fi| {
            let exit: VoluntaryExit = parse(v, "voluntary_exit")?;
            Ok((
                compute_signing_root(&exit, domain_at(fi, domain::VOLUNTARY_EXIT, exit.epoch)),
                SlashingFacts::None,
            ))
        }),
        "SYNC_COMMITTEE_MESSAGE" => with_fork(RequestKind::SyncCommitteeMessage, &|fi| {
            let m: SyncCommitteeMessage = parse(v, "sync_committee_message")?;
            let domain = domain_at(fi, domain::SYNC_COMMITTEE, epoch_of(m.slot));
            Ok((
                compute_signing_root(&m.beacon_block_root, domain),
                SlashingFacts::None,
            ))
        }),
        "SYNC_COMMITTEE_SELECTION_PROOF" => {
            with_fork(RequestKind::SyncCommitteeSelectionProof, &|fi| {
                let d: SyncAggregatorSelectionData = parse(v, "sync_aggregator_selection_data")?;
                let domain =
                    domain_at(fi, domain::SYNC_COMMITTEE_SELECTION_PROOF, epoch_of(d.slot));
                Ok((compute_signing_root(&d, domain), SlashingFacts::None))
            })
        }
        "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF" => {
            with_fork(RequestKind::SyncCommitteeContributionAndProof, &|fi| {
                let cp: ContributionAndProof<P> = parse(v, "contribution_and_proof")?;
                let domain = domain_at(
                    fi,
                    domain::CONTRIBUTION_AND_PROOF,
                    epoch_of(cp.contribution.slot),
                );
                Ok((compute_signing_root(&cp, domain), SlashingFacts::None))
            })
        }
        "DEPOSIT" => {
            let d: DepositRequest = parse(v, "deposit")?;
            let msg = DepositMessage {
                pubkey: d.pubkey,
                withdrawal_credentials: d.withdrawal_credentials,
                amount: d.amount,
            };
            // Deposits are valid on any fork of the network: no genesis validators root.
            let domain = compute_domain(domain::DEPOSIT, d.genesis_fork_version, B256::ZERO);
            Ok(Signable {
                kind: RequestKind::Deposit,
                signing_root: compute_signing_root(&msg, domain),
                slashing: SlashingFacts::None,
                genesis_validators_root: None,
            })
        }
        "VALIDATOR_REGISTRATION" => {
            let r: ValidatorRegistration = parse(v, "validator_registration")?;
            // The builder domain uses the genesis fork version and no genesis validators root.
            let domain = compute_domain(
                domain::APPLICATION_BUILDER,
                network.genesis_fork_version.into(),
                B256::ZERO,
            );
            Ok(Signable {
                kind: RequestKind::ValidatorRegistration,
                signing_root: compute_signing_root(&r, domain),
                slashing: SlashingFacts::None,
                genesis_validators_root: None,
            })
        }
        other => Err(Eth2Error::UnknownType(other.to_owned())),
    }
}
