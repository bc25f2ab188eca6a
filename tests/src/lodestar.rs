//! Lodestar from npm (`tests/lodestar/`, `npm ci` by scripts/test) as an
//! independent implementation: its SSZ types and its Keymanager client.

use std::path::Path;

/// `tests/lodestar`, after checking its packages are installed (a test
/// fails with what to run, rather than skipping).
pub fn dir() -> &'static Path {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/lodestar"));
    assert!(
        dir.join("node_modules/@lodestar/types").exists(),
        "Lodestar's packages are missing: run `npm ci` in {} (scripts/test does)",
        dir.display()
    );
    dir
}
