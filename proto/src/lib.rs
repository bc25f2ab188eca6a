//! The signer's gRPC API, `signer.v1` (see `proto/signer/v1/signer.proto`).
//!
//! Generated at build time by protox and tonic-prost-build; no system
//! `protoc` is needed.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `signer.v1`.
pub mod v1 {
    tonic::include_proto!("signer.v1");
}
