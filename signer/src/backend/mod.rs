//! Key backends. Today: `soft`, keys held in local encrypted files.

pub mod soft;
