//! `signer.v1` messages ↔ pipeline types.
//!
//! Typed Ethereum requests become the equivalent Web3Signer JSON body and go
//! through the one decoder every frontend shares ([`crate::eth2::decode`]):
//! there is exactly one implementation of each signing root. The detour
//! costs a few microseconds per request, against ~400 µs for a BLS signature.

use proto::v1 as pb;
use serde_json::{Value, json};
use slashing_db::NotSafe;

use crate::cometbft::{self, BlockId, ProtocolVersion, Timestamp, Vote, VoteType};
use crate::pipeline::{Message, Refusal, Signature};

fn hex0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

fn q(n: u64) -> String {
    n.to_string()
}

fn invalid(request: &'static str, reason: impl Into<String>) -> Message {
    Message::Invalid {
        request,
        reason: reason.into(),
    }
}

/// The pipeline message for a `SignRequest`'s oneof.
pub fn message(m: Option<pb::sign_request::Message>) -> Message {
    use pb::sign_request::Message as M;
    match m {
        None => invalid("request", "no message set"),
        Some(M::Eth2(e)) => match eth2_json(&e) {
            Ok(body) => Message::Eth2(body),
            Err(reason) => invalid("eth2.request", reason),
        },
        Some(M::CometbftVote(v)) => vote(v).unwrap_or_else(|r| invalid("cometbft.vote", r)),
        Some(M::CometbftProposal(p)) => match chain_id(p.chain_id) {
            Ok(chain_id) => Message::CometProposal {
                chain_id,
                proposal: cometbft::Proposal {
                    height: p.height,
                    round: p.round,
                    pol_round: p.pol_round,
                    block_id: block_id(p.block_id),
                    timestamp: timestamp(p.timestamp),
                },
            },
            Err(r) => invalid("cometbft.proposal", r),
        },
        Some(M::CometbftRaw(r)) => Message::CometRaw(r.value),
        Some(M::RawSecp256k1(r)) => Message::RawSecp256k1(r.digest),
        Some(M::RawEd25519(r)) => Message::RawEd25519(r.message),
    }
}

/// A chain id as CometBFT bounds it (50 bytes).
pub(crate) fn chain_id(s: String) -> Result<slashing_db::ChainId, String> {
    slashing_db::ChainId::new(s).ok_or_else(|| cometbft::CometError::ChainId.to_string())
}

fn block_id(b: Option<pb::BlockId>) -> BlockId {
    b.map(|b| BlockId {
        hash: b.hash,
        part_set_total: b.part_set_total,
        part_set_hash: b.part_set_hash,
    })
    .unwrap_or_default()
}

fn timestamp(t: Option<pb::Timestamp>) -> Timestamp {
    t.map_or(Timestamp::GO_ZERO, |t| Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    })
}

fn vote(v: pb::CometBftVote) -> Result<Message, String> {
    let version = match pb::CometBftVersion::try_from(v.version) {
        Ok(pb::CometBftVersion::V034) => ProtocolVersion::V0_34,
        Ok(pb::CometBftVersion::V037) => ProtocolVersion::V0_37,
        Ok(pb::CometBftVersion::V038) => ProtocolVersion::V0_38,
        Ok(pb::CometBftVersion::V1) => ProtocolVersion::V1,
        _ => return Err("version must name the chain's CometBFT generation".into()),
    };
    let kind = match pb::VoteType::try_from(v.r#type) {
        Ok(pb::VoteType::Prevote) => VoteType::Prevote,
        Ok(pb::VoteType::Precommit) => VoteType::Precommit,
        _ => return Err("type must be PREVOTE or PRECOMMIT".into()),
    };
    Ok(Message::CometVote {
        version,
        chain_id: chain_id(v.chain_id)?,
        vote: Vote {
            kind,
            height: v.height,
            round: v.round,
            block_id: block_id(v.block_id),
            timestamp: timestamp(v.timestamp),
            extension: v.extension,
        },
        sign_extension: true,
    })
}

fn fork_name(f: i32) -> Result<&'static str, String> {
    Ok(match pb::ForkName::try_from(f) {
        Ok(pb::ForkName::Phase0) => "PHASE0",
        Ok(pb::ForkName::Altair) => "ALTAIR",
        Ok(pb::ForkName::Bellatrix) => "BELLATRIX",
        Ok(pb::ForkName::Capella) => "CAPELLA",
        Ok(pb::ForkName::Deneb) => "DENEB",
        Ok(pb::ForkName::Electra) => "ELECTRA",
        Ok(pb::ForkName::Fulu) => "FULU",
        Ok(pb::ForkName::Gloas) => "GLOAS",
        _ => return Err("aggregate_and_proof.fork must name a fork".into()),
    })
}

fn checkpoint(c: Option<&pb::Checkpoint>) -> Result<Value, String> {
    let c = c.ok_or("checkpoint missing")?;
    Ok(json!({"epoch": q(c.epoch), "root": hex0x(&c.root)}))
}

fn attestation_data(d: Option<&pb::AttestationData>) -> Result<Value, String> {
    let d = d.ok_or("attestation data missing")?;
    Ok(json!({
        "slot": q(d.slot),
        "index": q(d.index),
        "beacon_block_root": hex0x(&d.beacon_block_root),
        "source": checkpoint(d.source.as_ref())?,
        "target": checkpoint(d.target.as_ref())?,
    }))
}

/// The Web3Signer JSON body for a typed Ethereum request.
pub fn eth2_json(e: &pb::Eth2Request) -> Result<Value, String> {
    use pb::eth2_request::Message as M;
    let (kind, field, value) = match e.message.as_ref().ok_or("no Ethereum message set")? {
        // With a header, every fork signs the same root; the version only
        // selects the header form in the JSON decoder.
        M::Block(h) => (
            "BLOCK_V2",
            "beacon_block",
            json!({"version": "DENEB", "block_header": {
                "slot": q(h.slot),
                "proposer_index": q(h.proposer_index),
                "parent_root": hex0x(&h.parent_root),
                "state_root": hex0x(&h.state_root),
                "body_root": hex0x(&h.body_root),
            }}),
        ),
        M::Attestation(d) => ("ATTESTATION", "attestation", attestation_data(Some(d))?),
        M::AggregationSlot(s) => (
            "AGGREGATION_SLOT",
            "aggregation_slot",
            json!({"slot": q(s.slot)}),
        ),
        M::AggregateAndProof(ap) => {
            let fork = fork_name(ap.fork)?;
            let a = ap.aggregate.as_ref().ok_or("aggregate missing")?;
            let mut aggregate = json!({
                "aggregation_bits": hex0x(&a.aggregation_bits),
                "data": attestation_data(a.data.as_ref())?,
                "signature": hex0x(&a.signature),
            });
            if matches!(fork, "ELECTRA" | "FULU" | "GLOAS")
                && let Some(o) = aggregate.as_object_mut()
            {
                o.insert("committee_bits".into(), hex0x(&a.committee_bits).into());
            }
            (
                "AGGREGATE_AND_PROOF_V2",
                "aggregate_and_proof",
                json!({"version": fork, "data": {
                    "aggregator_index": q(ap.aggregator_index),
                    "aggregate": aggregate,
                    "selection_proof": hex0x(&ap.selection_proof),
                }}),
            )
        }
        M::RandaoReveal(r) => (
            "RANDAO_REVEAL",
            "randao_reveal",
            json!({"epoch": q(r.epoch)}),
        ),
        M::VoluntaryExit(x) => (
            "VOLUNTARY_EXIT",
            "voluntary_exit",
            json!({"epoch": q(x.epoch), "validator_index": q(x.validator_index)}),
        ),
        M::SyncCommitteeMessage(m) => (
            "SYNC_COMMITTEE_MESSAGE",
            "sync_committee_message",
            json!({"beacon_block_root": hex0x(&m.beacon_block_root), "slot": q(m.slot)}),
        ),
        M::SyncCommitteeSelectionProof(d) => (
            "SYNC_COMMITTEE_SELECTION_PROOF",
            "sync_aggregator_selection_data",
            json!({"slot": q(d.slot), "subcommittee_index": q(d.subcommittee_index)}),
        ),
        M::SyncCommitteeContributionAndProof(cp) => {
            let c = cp.contribution.as_ref().ok_or("contribution missing")?;
            (
                "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF",
                "contribution_and_proof",
                json!({
                    "aggregator_index": q(cp.aggregator_index),
                    "selection_proof": hex0x(&cp.selection_proof),
                    "contribution": {
                        "slot": q(c.slot),
                        "beacon_block_root": hex0x(&c.beacon_block_root),
                        "subcommittee_index": q(c.subcommittee_index),
                        "aggregation_bits": hex0x(&c.aggregation_bits),
                        "signature": hex0x(&c.signature),
                    },
                }),
            )
        }
        M::Deposit(d) => (
            "DEPOSIT",
            "deposit",
            json!({
                "pubkey": hex0x(&d.pubkey),
                "withdrawal_credentials": hex0x(&d.withdrawal_credentials),
                "amount": q(d.amount),
                "genesis_fork_version": hex0x(&d.genesis_fork_version),
            }),
        ),
        M::ValidatorRegistration(r) => (
            "VALIDATOR_REGISTRATION",
            "validator_registration",
            json!({
                "fee_recipient": hex0x(&r.fee_recipient),
                "gas_limit": q(r.gas_limit),
                "timestamp": q(r.timestamp),
                "pubkey": hex0x(&r.pubkey),
            }),
        ),
        M::PayloadAttestation(d) => (
            "PAYLOAD_ATTESTATION_MESSAGE",
            "payload_attestation_message",
            gloas(json!({
                "beacon_block_root": hex0x(&d.beacon_block_root),
                "slot": q(d.slot),
                "payload_present": d.payload_present,
                "blob_data_available": d.blob_data_available,
            })),
        ),
        M::ProposerPreferences(p) => (
            "PROPOSER_PREFERENCES",
            "proposer_preferences",
            gloas(json!({
                "dependent_root": hex0x(&p.dependent_root),
                "proposal_slot": q(p.proposal_slot),
                "validator_index": q(p.validator_index),
                "fee_recipient": hex0x(&p.fee_recipient),
                "target_gas_limit": q(p.target_gas_limit),
            })),
        ),
        M::BuilderRequestAuth(a) => (
            "BUILDER_REQUEST_AUTH",
            "builder_request_auth",
            gloas(json!({"data": hex0x(&a.data), "slot": q(a.slot)})),
        ),
        M::ExecutionPayloadBid(b) => (
            "EXECUTION_PAYLOAD_BID",
            "execution_payload_bid",
            gloas(json!({
                "parent_block_hash": hex0x(&b.parent_block_hash),
                "parent_block_root": hex0x(&b.parent_block_root),
                "block_hash": hex0x(&b.block_hash),
                "prev_randao": hex0x(&b.prev_randao),
                "fee_recipient": hex0x(&b.fee_recipient),
                "gas_limit": q(b.gas_limit),
                "builder_index": q(b.builder_index),
                "slot": q(b.slot),
                "value": q(b.value),
                "execution_payment": q(b.execution_payment),
                "blob_kzg_commitments": hex_list(&b.blob_kzg_commitments),
                "execution_requests_root": hex0x(&b.execution_requests_root),
            })),
        ),
        M::ExecutionPayloadEnvelope(e) => (
            "EXECUTION_PAYLOAD_ENVELOPE",
            "execution_payload_envelope",
            gloas(envelope(e)?),
        ),
    };
    let mut body = json!({ "type": kind, field: value });
    if let Some(o) = body.as_object_mut() {
        if let Some(fi) = &e.fork_info {
            let fork = fi.fork.as_ref().ok_or("fork_info.fork missing")?;
            o.insert(
                "fork_info".into(),
                json!({
                    "fork": {
                        "previous_version": hex0x(&fork.previous_version),
                        "current_version": hex0x(&fork.current_version),
                        "epoch": q(fork.epoch),
                    },
                    "genesis_validators_root": hex0x(&fi.genesis_validators_root),
                }),
            );
        }
        if !e.signing_root.is_empty() {
            o.insert("signingRoot".into(), hex0x(&e.signing_root).into());
        }
    }
    Ok(body)
}

/// A Gloas message as the API wraps it.
fn gloas(data: Value) -> Value {
    json!({"version": "GLOAS", "data": data})
}

fn hex_list(items: &[Vec<u8>]) -> Vec<String> {
    items.iter().map(|b| hex0x(b)).collect()
}

fn envelope(e: &pb::ExecutionPayloadEnvelope) -> Result<Value, String> {
    let p = e
        .payload
        .as_ref()
        .ok_or("execution_payload_envelope.payload missing")?;
    let r = e
        .execution_requests
        .as_ref()
        .ok_or("execution_payload_envelope.execution_requests missing")?;
    Ok(json!({
        "payload": {
            "parent_hash": hex0x(&p.parent_hash),
            "fee_recipient": hex0x(&p.fee_recipient),
            "state_root": hex0x(&p.state_root),
            "receipts_root": hex0x(&p.receipts_root),
            "logs_bloom": hex0x(&p.logs_bloom),
            "prev_randao": hex0x(&p.prev_randao),
            "block_number": q(p.block_number),
            "gas_limit": q(p.gas_limit),
            "gas_used": q(p.gas_used),
            "timestamp": q(p.timestamp),
            "extra_data": hex0x(&p.extra_data),
            "base_fee_per_gas": p.base_fee_per_gas,
            "block_hash": hex0x(&p.block_hash),
            "transactions": hex_list(&p.transactions),
            "withdrawals": Value::Array(p.withdrawals.iter().map(|w| json!({
                "index": q(w.index),
                "validator_index": q(w.validator_index),
                "address": hex0x(&w.address),
                "amount": q(w.amount),
            })).collect()),
            "blob_gas_used": q(p.blob_gas_used),
            "excess_blob_gas": q(p.excess_blob_gas),
            "block_access_list": hex0x(&p.block_access_list),
            "slot_number": q(p.slot_number),
        },
        "execution_requests": {
            "deposits": Value::Array(r.deposits.iter().map(|d| json!({
                "pubkey": hex0x(&d.pubkey),
                "withdrawal_credentials": hex0x(&d.withdrawal_credentials),
                "amount": q(d.amount),
                "signature": hex0x(&d.signature),
                "index": q(d.index),
            })).collect()),
            "withdrawals": Value::Array(r.withdrawals.iter().map(|w| json!({
                "source_address": hex0x(&w.source_address),
                "validator_pubkey": hex0x(&w.validator_pubkey),
                "amount": q(w.amount),
            })).collect()),
            "consolidations": Value::Array(r.consolidations.iter().map(|c| json!({
                "source_address": hex0x(&c.source_address),
                "source_pubkey": hex0x(&c.source_pubkey),
                "target_pubkey": hex0x(&c.target_pubkey),
            })).collect()),
            "builder_deposits": Value::Array(r.builder_deposits.iter().map(|d| json!({
                "pubkey": hex0x(&d.pubkey),
                "withdrawal_credentials": hex0x(&d.withdrawal_credentials),
                "amount": q(d.amount),
                "signature": hex0x(&d.signature),
            })).collect()),
            "builder_exits": Value::Array(r.builder_exits.iter().map(|x| json!({
                "source_address": hex0x(&x.source_address),
                "pubkey": hex0x(&x.pubkey),
            })).collect()),
        },
        "builder_index": q(e.builder_index),
        "beacon_block_root": hex0x(&e.beacon_block_root),
        "parent_beacon_block_root": hex0x(&e.parent_beacon_block_root),
    }))
}

/// A pipeline outcome as a `SignResponse`.
pub fn response(outcome: Result<Signature, Refusal>) -> pb::SignResponse {
    use pb::sign_response::Outcome;
    let outcome = match outcome {
        Ok(s) => Outcome::Signature(signature(s)),
        Err(r) => Outcome::Refusal(refusal(&r)),
    };
    pb::SignResponse {
        outcome: Some(outcome),
    }
}

/// The `OVERLOADED` answer.
pub fn overloaded(why: &str) -> pb::SignResponse {
    pb::SignResponse {
        outcome: Some(pb::sign_response::Outcome::Refusal(pb::Refusal {
            reason: pb::Reason::Overloaded as i32,
            message: why.to_owned(),
            evidence: None,
        })),
    }
}

fn signature(s: Signature) -> pb::Signature {
    match s {
        // No gRPC request makes a delegation (Commit-Boost is HTTP only).
        Signature::Bls(sig) | Signature::Delegation { signature: sig, .. } => pb::Signature {
            signature: sig.to_vec(),
            ..Default::default()
        },
        Signature::CometBft {
            signature,
            timestamp,
            extension_signature,
        } => pb::Signature {
            signature,
            timestamp: Some(pb::Timestamp {
                seconds: timestamp.seconds,
                nanos: timestamp.nanos,
            }),
            extension_signature: extension_signature.unwrap_or_default(),
            recovery_id: None,
        },
        Signature::Raw {
            signature,
            recovery_id,
        } => pb::Signature {
            signature,
            recovery_id: recovery_id.map(u32::from),
            ..Default::default()
        },
    }
}

pub(crate) fn refusal(r: &Refusal) -> pb::Refusal {
    let reason = match r {
        Refusal::Slashable(_) => pb::Reason::Slashable,
        Refusal::NotAllowed(_) | Refusal::OutOfScope(_) => pb::Reason::NotAllowed,
        Refusal::UnknownKey => pb::Reason::UnknownKey,
        Refusal::InvalidRequest(_) => pb::Reason::InvalidRequest,
        Refusal::BackendUnavailable(_) => pb::Reason::BackendUnavailable,
        Refusal::RateLimited(_) => pb::Reason::Overloaded,
        Refusal::KeyDisabled(_) => pb::Reason::KeyDisabled,
        Refusal::PolicyViolation(_) => pb::Reason::PolicyViolation,
    };
    pb::Refusal {
        reason: reason as i32,
        message: r.client_message(),
        evidence: match r {
            Refusal::Slashable(n) => Some(evidence(n)),
            _ => None,
        },
    }
}

fn evidence(n: &NotSafe) -> pb::Evidence {
    let mut e = pb::Evidence {
        kind: n.reason().to_owned(),
        ..Default::default()
    };
    let root = |r: &Option<slashing_db::SigningRoot>| r.map(|r| r.0.to_vec()).unwrap_or_default();
    let comet = |e: &mut pb::Evidence, hrs: &slashing_db::Hrs| {
        e.height = i64::try_from(hrs.height.0).ok();
        e.round = i32::try_from(hrs.round).ok();
        e.step = i32::try_from(hrs.step.as_i64()).ok();
    };
    match n {
        NotSafe::DoubleBlockProposal { prev } => {
            e.slot = Some(prev.slot.0);
            e.signing_root = root(&prev.signing_root);
        }
        NotSafe::BlockBelowLowWatermark { low_watermark, .. } => e.slot = Some(low_watermark.0),
        NotSafe::DoubleVote { prev }
        | NotSafe::SurroundingVote { prev }
        | NotSafe::SurroundedVote { prev } => {
            e.source_epoch = Some(prev.source.0);
            e.target_epoch = Some(prev.target.0);
            e.signing_root = root(&prev.signing_root);
        }
        NotSafe::SourceBelowLowWatermark { low_watermark, .. } => {
            e.source_epoch = Some(low_watermark.0)
        }
        NotSafe::TargetBelowLowWatermark { low_watermark, .. } => {
            e.target_epoch = Some(low_watermark.0)
        }
        NotSafe::SourceExceedsTarget { .. } | NotSafe::WrongGenesisRoot { .. } => {}
        NotSafe::HeightRegression { prev, .. }
        | NotSafe::RoundRegression { prev, .. }
        | NotSafe::StepRegression { prev, .. }
        | NotSafe::ConflictingSignBytes { prev } => comet(&mut e, &prev.hrs),
        NotSafe::Equivocation { prev, .. } | NotSafe::StaleMessage { prev, .. } => {
            e.slot = Some(prev.slot.0);
            e.signing_root = prev.signing_root.0.to_vec();
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain id over CometBFT's 50 bytes is turned away at the edge, as a
    /// message the pipeline refuses (and audits) as an invalid request; one
    /// of 50 bytes passes as a typed chain id.
    #[test]
    fn chain_ids_are_bounded_where_the_request_is_read() {
        let vote = |chain_id: String| {
            message(Some(pb::sign_request::Message::CometbftVote(
                pb::CometBftVote {
                    chain_id,
                    version: pb::CometBftVersion::V038 as i32,
                    r#type: pb::VoteType::Prevote as i32,
                    height: 1,
                    ..Default::default()
                },
            )))
        };
        match vote("c".repeat(51)) {
            Message::Invalid { request, reason } => {
                assert_eq!(request, "cometbft.vote");
                assert_eq!(reason, "chain id longer than 50 bytes");
            }
            other => panic!("{other:?}"),
        }
        match vote("c".repeat(50)) {
            Message::CometVote { chain_id, .. } => assert_eq!(chain_id.as_str().len(), 50),
            other => panic!("{other:?}"),
        }
    }
}
