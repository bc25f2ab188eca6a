//! Any bytes as what a CometBFT node sends the signer: the uvarint framing
//! and each protocol generation's request decoder never panic; a decoded
//! request encodes and decodes back to itself.
#![no_main]
#![allow(clippy::expect_used)]

use libfuzzer_sys::fuzz_target;
use signer::api::privval::connector::read_frame;
use signer::api::privval::{decode_request, encode_request};
use signer::cometbft::ProtocolVersion;

const VERSIONS: [ProtocolVersion; 4] = [
    ProtocolVersion::V0_34,
    ProtocolVersion::V0_37,
    ProtocolVersion::V0_38,
    ProtocolVersion::V1,
];

fuzz_target!(|data: &[u8]| {
    // As a stream of frames…
    let mut stream = data;
    while let Ok(Some(frame)) = read_frame(&mut stream) {
        for v in VERSIONS {
            let _ = decode_request(v, &frame);
        }
    }
    // …and as one message body.
    for v in VERSIONS {
        if let Ok(request) = decode_request(v, data) {
            let bytes = encode_request(v, &request).expect("a decoded request encodes");
            let again = decode_request(v, &bytes).expect("our own encoding decodes");
            assert_eq!(again, request, "{v:?}");
        }
    }
});
