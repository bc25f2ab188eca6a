//! Any bytes as a `signer.v1` `SignRequest` (what the gRPC frontend
//! receives): protobuf decoding and the conversion to the pipeline's message
//! never panic; a decoded request re-encodes to bytes that decode to the
//! same request; an Ethereum request converts to JSON the shared decoder
//! reads without panicking.
#![no_main]
#![allow(clippy::expect_used)]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use proto::v1 as pb;
use signer::api::grpc::convert;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = pb::SignRequest::decode(data) else {
        return;
    };
    let again = pb::SignRequest::decode(request.encode_to_vec().as_slice()).expect("re-decodes");
    assert_eq!(again, request);
    if let Some(pb::sign_request::Message::Eth2(e)) = &request.message
        && let Ok(json) = convert::eth2_json(e)
    {
        let _ = signer::eth2::decode_value(&json, &signer::eth2::Network::MAINNET);
    }
    let _ = convert::message(request.message);
});
