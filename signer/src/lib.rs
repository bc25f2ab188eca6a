//! The signing core. See `crypto`.
pub mod crypto;
