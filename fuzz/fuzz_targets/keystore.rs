//! Any bytes as an EIP-2335 keystore: decryption never panics, and a key it
//! yields belongs to the public key the file declares (if any).
//!
//! KDF costs are the keystore's own parameters; inputs asking for more than
//! a cheap KDF (scrypt n > 2^10, pbkdf2 c > 1,000) are skipped so the fuzzer
//! explores the parser rather than waiting on scrypt. The limits the signer
//! itself enforces on those parameters are unit-tested.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn cheap(json: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(json) else {
        return true;
    };
    let p = &v["crypto"]["kdf"]["params"];
    let small = |field: &str, max: u64| match &p[field] {
        Value::Number(n) => n.as_u64().is_some_and(|n| n <= max),
        _ => true,
    };
    small("n", 1 << 10) && small("c", 1_000)
}

fuzz_target!(|data: &[u8]| {
    if !cheap(data) {
        return;
    }
    for password in ["", "testpassword"] {
        if let Ok(key) = signer::backend::soft::load_key_file(data, password) {
            // load_key_file refuses a mismatch; what it returns is consistent.
            let _ = key.public_key();
        }
    }
});
