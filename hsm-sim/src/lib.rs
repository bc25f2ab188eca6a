//! Simulators for tests.
//!
//! `libhsm_sim.so` is a PKCS#11 module: it exports `C_GetFunctionList`,
//! forwards every call to a real module (SoftHSM in tests) and injects the
//! faults a scenario file describes — latency, error returns after N calls
//! or with a probability, hangs, sessions closed under the caller, tokens
//! removed and re-inserted — and writes call counters for test assertions.
//! The scenario file is named by `HSM_SIM_SCENARIO` and re-read when it
//! changes, so a test can start and end a fault while the signer runs
//! ([`scenario`] documents the format).
//!
//! The `hsm-sim` binary's `kms` command serves a KMS-compatible endpoint
//! with fault injection ([`kms`]).

#[cfg(all(not(debug_assertions), not(feature = "testing")))]
compile_error!("hsm-sim is a fault injector for tests; a release build needs `--features testing`");

pub mod kms;
#[allow(unsafe_code)]
mod pkcs11;
pub mod scenario;
