//! Encoding and decoding of privval `Message`s for each protocol generation.

use prost::Message as _;
use tendermint_proto::google::protobuf::Timestamp as ProtoTimestamp;
use tendermint_proto::v0_38::crypto::{PublicKey as ProtoPublicKey, public_key};
use tendermint_proto::v0_38::privval::{self as pv, message::Sum};
use tendermint_proto::v0_38::types as t;

use super::v1;
use super::{
    PrivvalCodecError as E, PubKey, RemoteError, Request, Response, WireProposal, WireVote,
};
use crate::cometbft::{BlockId, Proposal, ProtocolVersion, Timestamp, Vote, VoteType};

// --- field conversions ----------------------------------------------------

fn block_id_to_proto(b: &BlockId) -> Option<t::BlockId> {
    // Non-nullable in CometBFT: always present, with its part set header.
    Some(t::BlockId {
        hash: b.hash.clone(),
        part_set_header: Some(t::PartSetHeader {
            total: b.part_set_total,
            hash: b.part_set_hash.clone(),
        }),
    })
}

fn block_id_from_proto(b: Option<t::BlockId>) -> BlockId {
    let b = b.unwrap_or_default();
    let psh = b.part_set_header.unwrap_or_default();
    BlockId {
        hash: b.hash,
        part_set_total: psh.total,
        part_set_hash: psh.hash,
    }
}

fn timestamp_to_proto(ts: Timestamp) -> Option<ProtoTimestamp> {
    Some(ProtoTimestamp {
        seconds: ts.seconds,
        nanos: ts.nanos,
    })
}

fn timestamp_from_proto(ts: Option<ProtoTimestamp>) -> Timestamp {
    ts.map_or(Timestamp::GO_ZERO, |t| Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    })
}

fn vote_to_proto(w: &WireVote, version: ProtocolVersion) -> Result<t::Vote, E> {
    let has_extension = !w.vote.extension.is_empty() || !w.extension_signature.is_empty();
    if has_extension && !version.has_vote_extensions() {
        return Err(E::NotInVersion("a vote extension"));
    }
    Ok(t::Vote {
        r#type: match w.vote.kind {
            VoteType::Prevote => 1,
            VoteType::Precommit => 2,
        },
        height: w.vote.height,
        round: w.vote.round,
        block_id: block_id_to_proto(&w.vote.block_id),
        timestamp: timestamp_to_proto(w.vote.timestamp),
        validator_address: w.validator_address.clone(),
        validator_index: w.validator_index,
        signature: w.signature.clone(),
        extension: w.vote.extension.clone(),
        extension_signature: w.extension_signature.clone(),
    })
}

/// A vote as `version` sends it: extension fields in a version without vote
/// extensions are refused (before: accepted, so the decoder took what the
/// encoder refuses — found by the `privval_frame` fuzz target).
fn vote_from_proto(v: t::Vote, version: ProtocolVersion) -> Result<WireVote, E> {
    let has_extension = !v.extension.is_empty() || !v.extension_signature.is_empty();
    if has_extension && !version.has_vote_extensions() {
        return Err(E::NotInVersion("a vote extension"));
    }
    let kind = match v.r#type {
        1 => VoteType::Prevote,
        2 => VoteType::Precommit,
        _ => return Err(E::Invalid("vote type (not a prevote or precommit)")),
    };
    if v.height < 0 || v.round < 0 {
        return Err(E::Invalid("negative height or round"));
    }
    Ok(WireVote {
        vote: Vote {
            kind,
            height: v.height,
            round: v.round,
            block_id: block_id_from_proto(v.block_id),
            timestamp: timestamp_from_proto(v.timestamp),
            extension: v.extension,
        },
        validator_address: v.validator_address,
        validator_index: v.validator_index,
        signature: v.signature,
        extension_signature: v.extension_signature,
    })
}

/// The vote a response carries beside an error (non-nullable on the wire).
fn empty_vote() -> t::Vote {
    t::Vote {
        block_id: block_id_to_proto(&BlockId::default()),
        timestamp: timestamp_to_proto(Timestamp::GO_ZERO),
        ..Default::default()
    }
}

fn proposal_to_proto(p: &WireProposal) -> t::Proposal {
    t::Proposal {
        r#type: p.wire_type,
        height: p.proposal.height,
        round: p.proposal.round,
        pol_round: p.proposal.pol_round,
        block_id: block_id_to_proto(&p.proposal.block_id),
        timestamp: timestamp_to_proto(p.proposal.timestamp),
        signature: p.signature.clone(),
    }
}

fn proposal_from_proto(p: t::Proposal) -> Result<WireProposal, E> {
    if p.height < 0 || p.round < 0 {
        return Err(E::Invalid("negative height or round"));
    }
    Ok(WireProposal {
        wire_type: p.r#type,
        proposal: Proposal {
            height: p.height,
            round: p.round,
            pol_round: p.pol_round,
            block_id: block_id_from_proto(p.block_id),
            timestamp: timestamp_from_proto(p.timestamp),
        },
        signature: p.signature,
    })
}

fn empty_proposal() -> t::Proposal {
    t::Proposal {
        block_id: block_id_to_proto(&BlockId::default()),
        timestamp: timestamp_to_proto(Timestamp::GO_ZERO),
        ..Default::default()
    }
}

fn error_to_proto(e: &RemoteError) -> pv::RemoteSignerError {
    pv::RemoteSignerError {
        code: e.code,
        description: e.description.clone(),
    }
}

fn error_from_proto(e: pv::RemoteSignerError) -> RemoteError {
    RemoteError {
        code: e.code,
        description: e.description,
    }
}

fn pubkey_to_proto(k: &PubKey) -> ProtoPublicKey {
    ProtoPublicKey {
        sum: Some(match k {
            PubKey::Ed25519(b) => public_key::Sum::Ed25519(b.to_vec()),
            PubKey::Secp256k1(b) => public_key::Sum::Secp256k1(b.to_vec()),
        }),
    }
}

fn pubkey_from_bytes(kind: &str, b: &[u8]) -> Result<PubKey, E> {
    match kind {
        "ed25519" => b
            .try_into()
            .map(PubKey::Ed25519)
            .map_err(|_| E::Invalid("ed25519 key length")),
        "secp256k1" => b
            .try_into()
            .map(PubKey::Secp256k1)
            .map_err(|_| E::Invalid("secp256k1 key length")),
        _ => Err(E::Invalid("public key type")),
    }
}

fn pubkey_v1(k: &PubKey) -> (Vec<u8>, String) {
    match k {
        PubKey::Ed25519(b) => (b.to_vec(), "ed25519".into()),
        PubKey::Secp256k1(b) => (b.to_vec(), "secp256k1".into()),
    }
}

fn decode_err(e: prost::DecodeError) -> E {
    E::Decode(e.to_string())
}

// --- requests ---------------------------------------------------------------

/// Encodes a request (what a node sends; used by tests and tools).
pub fn encode_request(version: ProtocolVersion, r: &Request) -> Result<Vec<u8>, E> {
    if version == ProtocolVersion::V1 {
        let sum = match r {
            Request::PubKey { chain_id } => v1::Sum::PubKeyRequest(pv::PubKeyRequest {
                chain_id: chain_id.clone(),
            }),
            Request::SignVote {
                chain_id,
                vote,
                skip_extension_signing,
            } => v1::Sum::SignVoteRequest(v1::SignVoteRequest {
                vote: Some(vote_to_proto(vote, version)?),
                chain_id: chain_id.clone(),
                skip_extension_signing: *skip_extension_signing,
            }),
            Request::SignProposal { chain_id, proposal } => {
                v1::Sum::SignProposalRequest(v1::SignProposalRequest {
                    proposal: Some(proposal_to_proto(proposal)),
                    chain_id: chain_id.clone(),
                })
            }
            Request::SignBytes { value } => v1::Sum::SignBytesRequest(v1::SignBytesRequest {
                value: value.clone(),
            }),
            Request::Ping => v1::Sum::PingRequest(pv::PingRequest {}),
        };
        return Ok(v1::Message { sum: Some(sum) }.encode_to_vec());
    }
    let sum = match r {
        Request::PubKey { chain_id } => Sum::PubKeyRequest(pv::PubKeyRequest {
            chain_id: chain_id.clone(),
        }),
        Request::SignVote {
            chain_id,
            vote,
            skip_extension_signing,
        } => {
            if *skip_extension_signing {
                return Err(E::NotInVersion("skip_extension_signing"));
            }
            Sum::SignVoteRequest(pv::SignVoteRequest {
                vote: Some(vote_to_proto(vote, version)?),
                chain_id: chain_id.clone(),
            })
        }
        Request::SignProposal { chain_id, proposal } => {
            Sum::SignProposalRequest(pv::SignProposalRequest {
                proposal: Some(proposal_to_proto(proposal)),
                chain_id: chain_id.clone(),
            })
        }
        Request::SignBytes { .. } => return Err(E::NotInVersion("SignBytes")),
        Request::Ping => Sum::PingRequest(pv::PingRequest {}),
    };
    Ok(pv::Message { sum: Some(sum) }.encode_to_vec())
}

/// Decodes a request from a node.
pub fn decode_request(version: ProtocolVersion, bytes: &[u8]) -> Result<Request, E> {
    if version == ProtocolVersion::V1 {
        let m = v1::Message::decode(bytes).map_err(decode_err)?;
        return match m.sum.ok_or(E::Empty)? {
            v1::Sum::PubKeyRequest(r) => Ok(Request::PubKey {
                chain_id: r.chain_id,
            }),
            v1::Sum::SignVoteRequest(r) => Ok(Request::SignVote {
                vote: vote_from_proto(r.vote.ok_or(E::Invalid("missing vote"))?, version)?,
                chain_id: r.chain_id,
                skip_extension_signing: r.skip_extension_signing,
            }),
            v1::Sum::SignProposalRequest(r) => Ok(Request::SignProposal {
                proposal: proposal_from_proto(r.proposal.ok_or(E::Invalid("missing proposal"))?)?,
                chain_id: r.chain_id,
            }),
            v1::Sum::SignBytesRequest(r) => Ok(Request::SignBytes { value: r.value }),
            v1::Sum::PingRequest(_) => Ok(Request::Ping),
            _ => Err(E::Unexpected("response where a request was expected")),
        };
    }
    let m = pv::Message::decode(bytes).map_err(decode_err)?;
    match m.sum.ok_or(E::Empty)? {
        Sum::PubKeyRequest(r) => Ok(Request::PubKey {
            chain_id: r.chain_id,
        }),
        Sum::SignVoteRequest(r) => {
            let vote = vote_from_proto(r.vote.ok_or(E::Invalid("missing vote"))?, version)?;
            Ok(Request::SignVote {
                vote,
                chain_id: r.chain_id,
                skip_extension_signing: false,
            })
        }
        Sum::SignProposalRequest(r) => Ok(Request::SignProposal {
            proposal: proposal_from_proto(r.proposal.ok_or(E::Invalid("missing proposal"))?)?,
            chain_id: r.chain_id,
        }),
        Sum::PingRequest(_) => Ok(Request::Ping),
        _ => Err(E::Unexpected("response where a request was expected")),
    }
}

// --- responses ----------------------------------------------------------------

/// Encodes the signer's response.
pub fn encode_response(version: ProtocolVersion, r: &Response) -> Result<Vec<u8>, E> {
    if version == ProtocolVersion::V1 {
        let sum = match r {
            Response::PubKey(Ok(k)) => {
                let (pub_key_bytes, pub_key_type) = pubkey_v1(k);
                v1::Sum::PubKeyResponse(v1::PubKeyResponse {
                    error: None,
                    pub_key_bytes,
                    pub_key_type,
                })
            }
            Response::PubKey(Err(e)) => v1::Sum::PubKeyResponse(v1::PubKeyResponse {
                error: Some(error_to_proto(e)),
                ..Default::default()
            }),
            Response::SignedVote(v) => v1::Sum::SignedVoteResponse(match v {
                Ok(v) => v1::SignedVoteResponse {
                    vote: Some(vote_to_proto(v, version)?),
                    error: None,
                },
                Err(e) => v1::SignedVoteResponse {
                    vote: Some(empty_vote()),
                    error: Some(error_to_proto(e)),
                },
            }),
            Response::SignedProposal(p) => v1::Sum::SignedProposalResponse(match p {
                Ok(p) => v1::SignedProposalResponse {
                    proposal: Some(proposal_to_proto(p)),
                    error: None,
                },
                Err(e) => v1::SignedProposalResponse {
                    proposal: Some(empty_proposal()),
                    error: Some(error_to_proto(e)),
                },
            }),
            Response::SignBytes(r) => v1::Sum::SignBytesResponse(match r {
                Ok(signature) => v1::SignBytesResponse {
                    signature: signature.clone(),
                    error: None,
                },
                Err(e) => v1::SignBytesResponse {
                    signature: Vec::new(),
                    error: Some(error_to_proto(e)),
                },
            }),
            Response::Ping => v1::Sum::PingResponse(pv::PingResponse {}),
        };
        return Ok(v1::Message { sum: Some(sum) }.encode_to_vec());
    }
    let sum = match r {
        Response::PubKey(Ok(k)) => Sum::PubKeyResponse(pv::PubKeyResponse {
            pub_key: Some(pubkey_to_proto(k)),
            error: None,
        }),
        Response::PubKey(Err(e)) => Sum::PubKeyResponse(pv::PubKeyResponse {
            pub_key: Some(ProtoPublicKey { sum: None }),
            error: Some(error_to_proto(e)),
        }),
        Response::SignedVote(v) => Sum::SignedVoteResponse(match v {
            Ok(v) => pv::SignedVoteResponse {
                vote: Some(vote_to_proto(v, version)?),
                error: None,
            },
            Err(e) => pv::SignedVoteResponse {
                vote: Some(empty_vote()),
                error: Some(error_to_proto(e)),
            },
        }),
        Response::SignedProposal(p) => Sum::SignedProposalResponse(match p {
            Ok(p) => pv::SignedProposalResponse {
                proposal: Some(proposal_to_proto(p)),
                error: None,
            },
            Err(e) => pv::SignedProposalResponse {
                proposal: Some(empty_proposal()),
                error: Some(error_to_proto(e)),
            },
        }),
        Response::SignBytes(_) => return Err(E::NotInVersion("SignBytes")),
        Response::Ping => Sum::PingResponse(pv::PingResponse {}),
    };
    Ok(pv::Message { sum: Some(sum) }.encode_to_vec())
}

/// Decodes a signer's response (used by tests and a node-side client).
pub fn decode_response(version: ProtocolVersion, bytes: &[u8]) -> Result<Response, E> {
    if version == ProtocolVersion::V1 {
        let m = v1::Message::decode(bytes).map_err(decode_err)?;
        return match m.sum.ok_or(E::Empty)? {
            v1::Sum::PubKeyResponse(r) => Ok(Response::PubKey(match r.error {
                Some(e) => Err(error_from_proto(e)),
                None => Ok(pubkey_from_bytes(&r.pub_key_type, &r.pub_key_bytes)?),
            })),
            v1::Sum::SignedVoteResponse(r) => Ok(Response::SignedVote(match r.error {
                Some(e) => Err(error_from_proto(e)),
                None => Ok(vote_from_proto(
                    r.vote.ok_or(E::Invalid("missing vote"))?,
                    version,
                )?),
            })),
            v1::Sum::SignedProposalResponse(r) => Ok(Response::SignedProposal(match r.error {
                Some(e) => Err(error_from_proto(e)),
                None => Ok(proposal_from_proto(
                    r.proposal.ok_or(E::Invalid("missing proposal"))?,
                )?),
            })),
            v1::Sum::SignBytesResponse(r) => Ok(Response::SignBytes(match r.error {
                Some(e) => Err(error_from_proto(e)),
                None => Ok(r.signature),
            })),
            v1::Sum::PingResponse(_) => Ok(Response::Ping),
            _ => Err(E::Unexpected("request where a response was expected")),
        };
    }
    let m = pv::Message::decode(bytes).map_err(decode_err)?;
    match m.sum.ok_or(E::Empty)? {
        Sum::PubKeyResponse(r) => Ok(Response::PubKey(match r.error {
            Some(e) => Err(error_from_proto(e)),
            None => match r.pub_key.and_then(|k| k.sum) {
                Some(public_key::Sum::Ed25519(b)) => Ok(pubkey_from_bytes("ed25519", &b)?),
                Some(public_key::Sum::Secp256k1(b)) => Ok(pubkey_from_bytes("secp256k1", &b)?),
                None => return Err(E::Invalid("missing public key")),
            },
        })),
        Sum::SignedVoteResponse(r) => Ok(Response::SignedVote(match r.error {
            Some(e) => Err(error_from_proto(e)),
            None => Ok(vote_from_proto(
                r.vote.ok_or(E::Invalid("missing vote"))?,
                version,
            )?),
        })),
        Sum::SignedProposalResponse(r) => Ok(Response::SignedProposal(match r.error {
            Some(e) => Err(error_from_proto(e)),
            None => Ok(proposal_from_proto(
                r.proposal.ok_or(E::Invalid("missing proposal"))?,
            )?),
        })),
        Sum::PingResponse(_) => Ok(Response::Ping),
        _ => Err(E::Unexpected("request where a response was expected")),
    }
}
