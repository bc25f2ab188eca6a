//! End-to-end tests that need real processes. The binaries under `src/bin/`
//! are test helpers started by the tests under `tests/`.
