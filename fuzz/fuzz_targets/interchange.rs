//! Any bytes as an EIP-3076 interchange file: parsing never panics, and what
//! parses serialises and parses back to the same value.
#![no_main]
// A fuzz target reports a failure by panicking: that is what these are for.
#![allow(clippy::expect_used)]

use libfuzzer_sys::fuzz_target;
use slashing_db::Interchange;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = Interchange::from_reader(data) {
        let mut out = Vec::new();
        parsed.to_writer(&mut out).expect("serialising a parsed interchange");
        let again = Interchange::from_reader(out.as_slice()).expect("re-parsing our own output");
        assert_eq!(parsed, again);
    }
});
