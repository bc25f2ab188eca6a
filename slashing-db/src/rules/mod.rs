//! What is slashable: pure functions from (stored facts, proposal) to a
//! [`Decision`](crate::Decision). No storage here; engines gather the facts,
//! [`crate::decide`] applies these rules and records the result.

pub mod cometbft;
pub mod eth;
pub mod sign_bytes;
