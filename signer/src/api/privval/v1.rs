//! The `cometbft.privval.v1` envelope, declared with prost derives from
//! `proto/cometbft/privval/v1/types.proto` (v1.0.1). Field numbers are the
//! proto's; `Vote` and `Proposal` are field-for-field those of v0.38.

use tendermint_proto::v0_38::privval::{
    PingRequest, PingResponse, PubKeyRequest, RemoteSignerError,
};
use tendermint_proto::v0_38::types::{Proposal, Vote};

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct PubKeyResponse {
    #[prost(message, optional, tag = "2")]
    pub error: Option<RemoteSignerError>,
    #[prost(bytes = "vec", tag = "3")]
    pub pub_key_bytes: Vec<u8>,
    #[prost(string, tag = "4")]
    pub pub_key_type: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct SignVoteRequest {
    #[prost(message, optional, tag = "1")]
    pub vote: Option<Vote>,
    #[prost(string, tag = "2")]
    pub chain_id: String,
    #[prost(bool, tag = "3")]
    pub skip_extension_signing: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct SignedVoteResponse {
    #[prost(message, optional, tag = "1")]
    pub vote: Option<Vote>,
    #[prost(message, optional, tag = "2")]
    pub error: Option<RemoteSignerError>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct SignProposalRequest {
    #[prost(message, optional, tag = "1")]
    pub proposal: Option<Proposal>,
    #[prost(string, tag = "2")]
    pub chain_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct SignedProposalResponse {
    #[prost(message, optional, tag = "1")]
    pub proposal: Option<Proposal>,
    #[prost(message, optional, tag = "2")]
    pub error: Option<RemoteSignerError>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct SignBytesRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct SignBytesResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub signature: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub error: Option<RemoteSignerError>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Message {
    #[prost(oneof = "Sum", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub sum: Option<Sum>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum Sum {
    #[prost(message, tag = "1")]
    PubKeyRequest(PubKeyRequest),
    #[prost(message, tag = "2")]
    PubKeyResponse(PubKeyResponse),
    #[prost(message, tag = "3")]
    SignVoteRequest(SignVoteRequest),
    #[prost(message, tag = "4")]
    SignedVoteResponse(SignedVoteResponse),
    #[prost(message, tag = "5")]
    SignProposalRequest(SignProposalRequest),
    #[prost(message, tag = "6")]
    SignedProposalResponse(SignedProposalResponse),
    #[prost(message, tag = "7")]
    PingRequest(PingRequest),
    #[prost(message, tag = "8")]
    PingResponse(PingResponse),
    #[prost(message, tag = "9")]
    SignBytesRequest(SignBytesRequest),
    #[prost(message, tag = "10")]
    SignBytesResponse(SignBytesResponse),
}
