//! Any bytes as a Web3Signer signing request body (both presets): decoding
//! never panics; what decodes, decodes to the same signing root and facts
//! after a trip through JSON text (key order and spacing do not matter), a
//! body carrying its own computed root is accepted, and one carrying another
//! root is refused as a mismatch — the client's root is compared, never used.
#![no_main]
#![allow(clippy::expect_used)]

use libfuzzer_sys::fuzz_target;
use signer::eth2::{Eth2Error, Network, PresetKind, decode, decode_value, parse_body};

const NETWORKS: [Network; 2] = [
    Network::MAINNET,
    Network {
        preset: PresetKind::Minimal,
        genesis_fork_version: [0, 0, 0, 1],
        // Gloas from genesis, so its message types are reached.
        gloas_fork_epoch: Some(0),
        clock: None,
    },
];

fuzz_target!(|data: &[u8]| {
    for network in &NETWORKS {
        let Ok(signable) = decode(data, network) else {
            continue;
        };
        let mut value = parse_body(data).expect("decoded, so it parses");
        let text = serde_json::to_vec(&value).expect("a parsed value serialises");
        let again = decode(&text, network).expect("our own text decodes");
        assert_eq!(again.signing_root, signable.signing_root);
        assert_eq!(again.slashing, signable.slashing);
        if value.is_object() {
            let root = format!("0x{}", hex::encode(signable.signing_root));
            let mut other = signable.signing_root.0;
            other[0] ^= 1;
            for (claimed, own) in [(root, true), (format!("0x{}", hex::encode(other)), false)] {
                if let Some(obj) = value.as_object_mut() {
                    obj.remove("signing_root");
                    obj.insert("signingRoot".into(), claimed.into());
                }
                let got = decode_value(&value, network);
                if own {
                    let got = got.expect("its own root is accepted");
                    assert_eq!(got.signing_root, signable.signing_root);
                } else {
                    assert!(matches!(got, Err(Eth2Error::SigningRootMismatch { .. })));
                }
            }
        }
    }
});
