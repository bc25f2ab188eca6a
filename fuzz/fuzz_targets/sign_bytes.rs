//! Any bytes as CometBFT sign bytes: the parser never panics, and bytes are
//! always "the same except the timestamp" as themselves when they parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slashing_db::rules::sign_bytes::{parse, same_except_timestamp};

fuzz_target!(|data: &[u8]| {
    if parse(data).is_ok() {
        assert!(same_except_timestamp(data, data));
    }
});
