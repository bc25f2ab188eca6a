//! Any text as the daemon's configuration or its policy: parsing and
//! validation never panic; a policy that loads, loads again the same way.
#![no_main]
#![allow(clippy::expect_used)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = signer::config::Config::parse(text, std::path::Path::new("/fuzz/signer.toml"));
    if let Ok((policy, findings)) = signer::policy::Policy::load(text) {
        let (again, findings_again) = signer::policy::Policy::load(text).expect("loads twice");
        assert_eq!(findings.len(), findings_again.len());
        assert_eq!(format!("{policy:?}"), format!("{again:?}"));
    }
});
