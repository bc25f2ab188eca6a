//! Keys in local files, decrypted into zeroized memory at load.

pub mod keystore;
