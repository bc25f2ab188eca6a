//! Any bytes as a PKCS#12 keystore (the hand-written DER reader behind
//! Web3Signer-style TLS keystores): never panics, whatever the password.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = signer::tls::pkcs12::read(data, "");
    let _ = signer::tls::pkcs12::read(data, "changeit");
});
