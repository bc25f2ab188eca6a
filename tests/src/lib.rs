//! End-to-end tests that need real processes. The binaries under `src/bin/`
//! are test helpers started by the tests under `tests/`; what they share is here.

pub mod daemon;
pub mod ha;
pub mod hsm;
pub mod independent;
pub mod kms;
/// Real PostgreSQL clusters for tests (the harness slashing-db's tests use).
#[path = "../../slashing-db/tests/common/pg.rs"]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
pub mod pg;
pub mod privval_node;
pub mod proxy;

use slashing_db::{
    AttestationProposal, BlockProposal, BlsPublicKey, Epoch, GenesisRoot, Proposal, SigningRoot,
    Slot,
};

/// The network of every test database here.
pub const GENESIS: GenesisRoot = GenesisRoot([0x42; 32]);

/// Validator `i`'s public key (any 48 bytes do: the database only compares them).
pub fn pubkey(i: usize) -> BlsPublicKey {
    let mut b = [0xb0; 48];
    b[..8].copy_from_slice(&(i as u64).to_be_bytes());
    BlsPublicKey(b)
}

/// A distinct root for message `n` of thread `t` in the run starting at `base`.
pub fn root_for(base: u64, n: u64, t: usize) -> SigningRoot {
    let mut r = [0u8; 32];
    r[..8].copy_from_slice(&base.to_be_bytes());
    r[8..16].copy_from_slice(&n.to_be_bytes());
    r[16..24].copy_from_slice(&(t as u64).to_be_bytes());
    r[31] = 1;
    SigningRoot(r)
}

/// Attestation proposal for validator `key`.
pub fn attestation(key: usize, source: u64, target: u64, root: SigningRoot) -> Proposal {
    Proposal::Attestation(AttestationProposal {
        pubkey: pubkey(key),
        genesis_root: GENESIS,
        source: Epoch(source),
        target: Epoch(target),
        signing_root: root,
    })
}

/// Block proposal for validator `key`.
pub fn block(key: usize, slot: u64, root: SigningRoot) -> Proposal {
    Proposal::Block(BlockProposal {
        pubkey: pubkey(key),
        genesis_root: GENESIS,
        slot: Slot(slot),
        signing_root: root,
    })
}
