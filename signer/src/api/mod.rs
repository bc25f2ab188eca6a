//! Frontends. Today: the CometBFT privval wire codec.

pub mod privval;
