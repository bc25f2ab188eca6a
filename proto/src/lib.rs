//! The gRPC API (`signer.v1`). Empty until the daemon issue defines it; the
//! crate exists now so the workspace layout matches `docs/architecture.md`.
