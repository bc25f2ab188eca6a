//! Frontends: how clients reach the pipeline.

pub mod grpc;
pub mod privval;
pub mod web3signer;
