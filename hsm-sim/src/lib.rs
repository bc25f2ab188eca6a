//! Simulators for tests: a fault-injecting PKCS#11 module wrapping SoftHSM and
//! a KMS-compatible endpoint. Empty until the HSM and KMS backend issues; the
//! crate exists now so the workspace layout matches `docs/architecture.md`.
