//! The Commit-Boost signer API (`/signer/v1/…`), for proposer-commitment
//! modules. Built so far: module authentication ([`jwt`]). The signing
//! roots it will sign are `eth2::commit_boost`'s.

pub mod jwt;
