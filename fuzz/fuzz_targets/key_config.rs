//! Any text as a Web3Signer key-configuration file: parsing never panics;
//! loading a parsed document (relative to an empty directory, so file
//! references fail cleanly) never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signer::backend::soft::web3signer::{load_document, parse_documents};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(docs) = parse_documents(text) {
        for doc in docs.iter().take(4) {
            let _ = load_document(doc, std::path::Path::new("/nonexistent-fuzz-dir"));
        }
    }
});
