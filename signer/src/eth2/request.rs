//! Web3Signer eth2 signing requests → [`Signable`].

use alloy_primitives::{Address, B256};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tree_hash::TreeHash;

use super::blocks::*;
use super::containers::*;
use super::domain::{self, DomainType};
use super::gloas::*;
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
    /// Gloas (enshrined proposer–builder separation).
    Gloas,
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
            "GLOAS" => Self::Gloas,
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
    /// `EXECUTION_PAYLOAD_BID` (Gloas, a builder's).
    ExecutionPayloadBid,
    /// `EXECUTION_PAYLOAD_ENVELOPE` (Gloas, a builder's).
    ExecutionPayloadEnvelope,
    /// `PAYLOAD_ATTESTATION_MESSAGE` (Gloas, a payload-timeliness committee member's).
    PayloadAttestationMessage,
    /// `PROPOSER_PREFERENCES` (Gloas, a proposer's).
    ProposerPreferences,
    /// `BUILDER_REQUEST_AUTH` (Gloas builder API, a proposer's).
    BuilderRequestAuth,
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
    /// A Gloas message no slashing condition covers but that must not be
    /// equivocated: one per key and slot, slots only rising.
    OnePerSlot {
        /// Which kind.
        kind: OnePerSlot,
        /// Its slot.
        slot: u64,
    },
}

/// The Gloas messages signed at most once per key and slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnePerSlot {
    /// `PayloadAttestationData` (a payload-timeliness committee member's).
    PayloadAttestation,
    /// `ExecutionPayloadEnvelope` (a builder's).
    PayloadEnvelope,
}

/// What a block-content policy can read in a request (`policy` content
/// constraints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Neither a block nor a builder registration.
    None,
    /// A block from Bellatrix on sent as a header only (as the Web3Signer
    /// API does): the header commits to the body by its root and shows
    /// nothing of it.
    HeaderOnly,
    /// A block, full or blinded: its graffiti, and its execution payload's
    /// fee recipient and gas limit (none before Bellatrix).
    Block {
        /// `body.graffiti`.
        graffiti: B256,
        /// `execution_payload(_header).{fee_recipient, gas_limit}`.
        payload: Option<(Address, u64)>,
        /// A blinded block (the payload is a builder's, shown as its header).
        blinded: bool,
        /// Gloas on: `payload` is the builder's bid's
        /// (`signed_execution_payload_bid.message`), not a payload's.
        bid: bool,
    },
    /// Gloas proposer preferences: what the proposer asks builders to pay
    /// to, and the gas limit to aim at.
    Preferences {
        /// `fee_recipient`.
        fee_recipient: Address,
        /// `target_gas_limit`.
        gas_limit: u64,
    },
    /// A builder API validator registration.
    Registration {
        /// `fee_recipient`.
        fee_recipient: Address,
        /// `gas_limit`.
        gas_limit: u64,
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
    /// What a block-content policy can check.
    pub content: Content,
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
    /// A message of a fork the network has not reached, or has not scheduled.
    #[error("{0}")]
    NotActive(String),
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
    parse_data(at(v, name)?, name)
}

/// `data` read as a `T`; errors name it `name`.
fn parse_data<T: DeserializeOwned>(data: &Value, name: &'static str) -> Result<T, Eth2Error> {
    T::deserialize(data).map_err(|e| Eth2Error::Malformed(format!("{name}: {e}")))
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

/// The signing root, slashing facts and content of a message, given its `fork_info`.
type RootAndFacts = Result<(B256, SlashingFacts, Content), Eth2Error>;

/// A full or blinded block of body `B` in `bb[field]`: slot, root, content.
fn block_of<B>(
    bb: &Value,
    field: &'static str,
    blinded: bool,
) -> Result<(u64, B256, Content), Eth2Error>
where
    B: DeserializeOwned + TreeHash + BodyFacts,
{
    let b: BeaconBlock<B> = parse(bb, field)?;
    let content = Content::Block {
        graffiti: b.body.graffiti(),
        payload: b.body.payload(),
        blinded,
        bid: B::BID,
    };
    Ok((b.slot, b.tree_hash_root(), content))
}

/// A block of a fork from Bellatrix on, from `block` (full) or
/// `blinded_block`: slot, root, content. `None` when neither is present.
fn payload_block<P: Preset>(
    fork: ForkName,
    bb: &Value,
) -> Option<Result<(u64, B256, Content), Eth2Error>> {
    let blinded = match (
        bb.get("block").filter(|b| !b.is_null()),
        bb.get("blinded_block").filter(|b| !b.is_null()),
    ) {
        (Some(_), Some(_)) => {
            return Some(Err(Eth2Error::WrongForm(
                "beacon_block carries block and blinded_block: send one",
            )));
        }
        (Some(_), None) => false,
        (None, Some(_)) => true,
        (None, None) => return None,
    };
    let field = if blinded { "blinded_block" } else { "block" };
    Some(match (fork, blinded) {
        (ForkName::Bellatrix, false) => {
            block_of::<BodyBellatrix<P, PayloadBellatrix>>(bb, field, false)
        }
        (ForkName::Bellatrix, true) => {
            block_of::<BodyBellatrix<P, HeaderBellatrix>>(bb, field, true)
        }
        (ForkName::Capella, false) => {
            block_of::<BodyCapella<P, PayloadCapella<P>>>(bb, field, false)
        }
        (ForkName::Capella, true) => block_of::<BodyCapella<P, HeaderCapella>>(bb, field, true),
        (ForkName::Deneb, false) => block_of::<BodyDeneb<P, PayloadDeneb<P>>>(bb, field, false),
        (ForkName::Deneb, true) => block_of::<BodyDeneb<P, HeaderDeneb>>(bb, field, true),
        (ForkName::Electra | ForkName::Fulu, false) => {
            block_of::<BodyElectra<P, PayloadDeneb<P>>>(bb, field, false)
        }
        (ForkName::Electra | ForkName::Fulu, true) => {
            block_of::<BodyElectra<P, HeaderDeneb>>(bb, field, true)
        }
        // The builder's bid stands in for the payload: its fee recipient and
        // gas limit are what the block commits the payload to.
        (ForkName::Gloas, false) => block_of::<BodyGloas<P>>(bb, field, false),
        (ForkName::Gloas, true) => Err(Eth2Error::WrongForm(
            "a gloas block is never blinded (it carries a builder's bid, not a payload): send block or block_header",
        )),
        (ForkName::Phase0 | ForkName::Altair, _) => Err(Eth2Error::WrongForm(
            "phase0 and altair blocks have no execution payload: send block",
        )),
    })
}

/// `body[field]` as the API wraps every Gloas message: `{version, data}`,
/// of fork Gloas or later.
fn versioned<'a>(v: &'a Value, field: &'static str) -> Result<&'a Value, Eth2Error> {
    let x = at(v, field)?;
    let version = at(x, "version")?
        .as_str()
        .ok_or(Eth2Error::Malformed(format!(
            "{field}.version: expected a fork name"
        )))?;
    match ForkName::parse(version)? {
        ForkName::Gloas => at(x, "data"),
        _ => Err(Eth2Error::WrongForm(
            "this message type exists from the gloas fork on: version must be GLOAS",
        )),
    }
}

/// Refuses a Gloas message at `epoch` unless the network has reached Gloas.
fn gloas_active(network: &Network, what: &str, epoch: u64) -> Result<(), Eth2Error> {
    match network.gloas_fork_epoch {
        None => Err(Eth2Error::NotActive(format!(
            "{what} is a gloas message and this network has no gloas fork scheduled; \
             set [ethereum] gloas_fork_epoch once the network announces it"
        ))),
        Some(fork) if epoch < fork => Err(Eth2Error::NotActive(format!(
            "{what} is at epoch {epoch}, before the gloas fork at epoch {fork} ([ethereum] gloas_fork_epoch)"
        ))),
        Some(_) => Ok(()),
    }
}

fn decode_with<P: Preset>(v: &Value, network: &Network) -> Result<Signable, Eth2Error> {
    let kind = at(v, "type")?.as_str().ok_or(Eth2Error::Missing("type"))?;
    let epoch_of = |slot: u64| slot / P::SLOTS_PER_EPOCH;
    let with_fork = |kind, root_of: &dyn Fn(&ForkInfo) -> RootAndFacts| {
        let fi: ForkInfo = parse(v, "fork_info")?;
        let (signing_root, slashing, content) = root_of(&fi)?;
        Ok::<_, Eth2Error>(Signable {
            kind,
            signing_root,
            slashing,
            genesis_validators_root: Some(fi.genesis_validators_root),
            content,
        })
    };
    match kind {
        "BLOCK" => with_fork(RequestKind::Block, &|fi| {
            let (slot, root, content) = block_of::<BeaconBlockBodyPhase0<P>>(v, "block", false)?;
            let domain = domain_at(fi, domain::BEACON_PROPOSER, epoch_of(slot));
            Ok((
                compute_signing_root(&root, domain),
                SlashingFacts::Block { slot },
                content,
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
                let (slot, object_root, content) = match fork {
                    ForkName::Phase0 => block_of::<BeaconBlockBodyPhase0<P>>(bb, "block", false)?,
                    ForkName::Altair => block_of::<BeaconBlockBodyAltair<P>>(bb, "block", false)?,
                    _ => {
                        let header = bb
                            .get("block_header")
                            .filter(|h| !h.is_null())
                            .map(|_| parse::<BeaconBlockHeader>(bb, "block_header"))
                            .transpose()?;
                        match (payload_block::<P>(fork, bb).transpose()?, header) {
                            (Some((slot, root, content)), header) => {
                                // A header sent beside the block must be that block's.
                                if let Some(h) = header
                                    && h.tree_hash_root() != root
                                {
                                    return Err(Eth2Error::Malformed(format!(
                                        "block_header (root {}) is not the header of the block sent beside it (root {root})",
                                        h.tree_hash_root()
                                    )));
                                }
                                (slot, root, content)
                            }
                            (None, Some(h)) => (h.slot, h.tree_hash_root(), Content::HeaderOnly),
                            (None, None) => {
                                return Err(Eth2Error::WrongForm(
                                    "from Bellatrix on, BLOCK_V2 carries block_header (or this signer's extension: block or blinded_block)",
                                ));
                            }
                        }
                    }
                };
                if fork == ForkName::Gloas {
                    gloas_active(network, "the block", epoch_of(slot))?;
                }
                let domain = domain_at(fi, domain::BEACON_PROPOSER, epoch_of(slot));
                Ok((
                    compute_signing_root(&object_root, domain),
                    SlashingFacts::Block { slot },
                    content,
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
            Ok((compute_signing_root(&data, domain), facts, Content::None))
        }),
        "AGGREGATION_SLOT" => with_fork(RequestKind::AggregationSlot, &|fi| {
            let s: SlotOnly = parse(v, "aggregation_slot")?;
            Ok((
                compute_signing_root(
                    &s.slot,
                    domain_at(fi, domain::SELECTION_PROOF, epoch_of(s.slot)),
                ),
                SlashingFacts::None,
                Content::None,
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
                Content::None,
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
                let (slot, object_root) = if fork >= ForkName::Gloas {
                    let ap: AggregateAndProof<AttestationGloas<P>> = parse(x, "data")?;
                    gloas_active(network, "the aggregate", epoch_of(ap.aggregate.data.slot))?;
                    (ap.aggregate.data.slot, ap.tree_hash_root())
                } else if fork >= ForkName::Electra {
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
                    Content::None,
                ))
            })
        }
        "RANDAO_REVEAL" => with_fork(RequestKind::RandaoReveal, &|fi| {
            let e: EpochOnly = parse(v, "randao_reveal")?;
            Ok((
                compute_signing_root(&e.epoch, domain_at(fi, domain::RANDAO, e.epoch)),
                SlashingFacts::None,
                Content::None,
            ))
        }),
        "VOLUNTARY_EXIT" => with_fork(RequestKind::VoluntaryExit, &|fi| {
            let exit: VoluntaryExit = parse(v, "voluntary_exit")?;
            Ok((
                compute_signing_root(&exit, domain_at(fi, domain::VOLUNTARY_EXIT, exit.epoch)),
                SlashingFacts::None,
                Content::None,
            ))
        }),
        "SYNC_COMMITTEE_MESSAGE" => with_fork(RequestKind::SyncCommitteeMessage, &|fi| {
            let m: SyncCommitteeMessage = parse(v, "sync_committee_message")?;
            let domain = domain_at(fi, domain::SYNC_COMMITTEE, epoch_of(m.slot));
            Ok((
                compute_signing_root(&m.beacon_block_root, domain),
                SlashingFacts::None,
                Content::None,
            ))
        }),
        "SYNC_COMMITTEE_SELECTION_PROOF" => {
            with_fork(RequestKind::SyncCommitteeSelectionProof, &|fi| {
                let d: SyncAggregatorSelectionData = parse(v, "sync_aggregator_selection_data")?;
                let domain =
                    domain_at(fi, domain::SYNC_COMMITTEE_SELECTION_PROOF, epoch_of(d.slot));
                Ok((
                    compute_signing_root(&d, domain),
                    SlashingFacts::None,
                    Content::None,
                ))
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
                Ok((
                    compute_signing_root(&cp, domain),
                    SlashingFacts::None,
                    Content::None,
                ))
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
                content: Content::None,
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
                content: Content::Registration {
                    fee_recipient: r.fee_recipient,
                    gas_limit: r.gas_limit,
                },
            })
        }
        "EXECUTION_PAYLOAD_BID" => with_fork(RequestKind::ExecutionPayloadBid, &|fi| {
            let bid: ExecutionPayloadBid = parse_data(
                versioned(v, "execution_payload_bid")?,
                "execution_payload_bid",
            )?;
            gloas_active(network, "the bid", epoch_of(bid.slot))?;
            let domain = domain_at(fi, domain::BEACON_BUILDER, epoch_of(bid.slot));
            Ok((
                compute_signing_root(&bid, domain),
                SlashingFacts::None,
                Content::None,
            ))
        }),
        "EXECUTION_PAYLOAD_ENVELOPE" => with_fork(RequestKind::ExecutionPayloadEnvelope, &|fi| {
            let e: ExecutionPayloadEnvelope<P> = parse_data(
                versioned(v, "execution_payload_envelope")?,
                "execution_payload_envelope",
            )?;
            let epoch = epoch_of(e.payload.slot_number);
            gloas_active(network, "the envelope", epoch)?;
            let domain = domain_at(fi, domain::BEACON_BUILDER, epoch);
            Ok((
                compute_signing_root(&e, domain),
                SlashingFacts::OnePerSlot {
                    kind: OnePerSlot::PayloadEnvelope,
                    slot: e.payload.slot_number,
                },
                Content::None,
            ))
        }),
        "PAYLOAD_ATTESTATION_MESSAGE" => with_fork(RequestKind::PayloadAttestationMessage, &|fi| {
            let d: PayloadAttestationData = parse_data(
                versioned(v, "payload_attestation_message")?,
                "payload_attestation_message",
            )?;
            gloas_active(network, "the payload attestation", epoch_of(d.slot))?;
            let domain = domain_at(fi, domain::PTC_ATTESTER, epoch_of(d.slot));
            Ok((
                compute_signing_root(&d, domain),
                SlashingFacts::OnePerSlot {
                    kind: OnePerSlot::PayloadAttestation,
                    slot: d.slot,
                },
                Content::None,
            ))
        }),
        "PROPOSER_PREFERENCES" => with_fork(RequestKind::ProposerPreferences, &|fi| {
            let p: ProposerPreferences = parse_data(
                versioned(v, "proposer_preferences")?,
                "proposer_preferences",
            )?;
            let epoch = epoch_of(p.proposal_slot);
            gloas_active(network, "the proposer preferences", epoch)?;
            let domain = domain_at(fi, domain::PROPOSER_PREFERENCES, epoch);
            Ok((
                compute_signing_root(&p, domain),
                SlashingFacts::None,
                Content::Preferences {
                    fee_recipient: p.fee_recipient,
                    gas_limit: p.target_gas_limit,
                },
            ))
        }),
        "BUILDER_REQUEST_AUTH" => {
            let a: BuilderRequestAuth = parse_data(
                versioned(v, "builder_request_auth")?,
                "builder_request_auth",
            )?;
            gloas_active(
                network,
                "the builder request authorisation",
                epoch_of(a.slot),
            )?;
            // Like registrations: the genesis fork version and no genesis
            // validators root, so it names no network.
            let domain = compute_domain(
                domain::BUILDER_REQUEST_AUTH,
                network.genesis_fork_version.into(),
                B256::ZERO,
            );
            Ok(Signable {
                kind: RequestKind::BuilderRequestAuth,
                signing_root: compute_signing_root(&a, domain),
                slashing: SlashingFacts::None,
                genesis_validators_root: None,
                content: Content::None,
            })
        }
        other => Err(Eth2Error::UnknownType(other.to_owned())),
    }
}
