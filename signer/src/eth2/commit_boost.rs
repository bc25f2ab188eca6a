//! Commit-Boost proposer commitments: the signing roots of its signer API
//! (`/signer/v1/request_signature/{bls,proxy-bls,proxy-ecdsa}` and the
//! delegations `generate_proxy_key` returns), as its specification defines
//! them (commit-boost-client, `docs/developing/prop-commit-signing.md`):
//!
//! - a commitment signs `SigningData(PropCommitSigningInfo { data,
//!   module_signing_id, nonce: uint64, chain_id: uint256 }, domain)`, so a
//!   signature is bound to the module (its 32-byte signing id, from this
//!   signer's configuration, never from the request), the module's nonce and
//!   the EVM chain;
//! - a delegation of a proxy key signs `SigningData(ProxyDelegation {
//!   delegator, proxy }, domain)` with the consensus key: no signing id, no
//!   nonce;
//! - `domain = compute_domain(0x6D6D6F43, GENESIS_FORK_VERSION, zero root)`:
//!   a domain type no beacon-chain message uses, so nothing signed here can
//!   be a block, an attestation or anything else slashable.
//!
//! BLS keys sign the root; secp256k1 proxies sign the root itself (no
//! message prefix) and answer the 65-byte `r‖s‖v`, `v` = 27 or 28. Checked
//! against an implementation written in Python from the specification text
//! (`tests/commit_boost/reference.py`, py_ecc and eth-keys).

use alloy_primitives::{Address, B256, U256};
use tree_hash_derive::TreeHash;

use super::containers::PublicKeyBytes;
use super::domain::DomainType;
use super::{compute_domain, compute_signing_root};

/// Commit-Boost's domain type, `0x6D6D6F43`.
pub const COMMIT_BOOST_DOMAIN: DomainType = [0x6d, 0x6d, 0x6f, 0x43];

#[derive(TreeHash)]
struct PropCommitSigningInfo {
    data: B256,
    module_signing_id: B256,
    nonce: u64,
    chain_id: U256,
}

#[derive(TreeHash)]
struct DelegationBls {
    delegator: PublicKeyBytes,
    proxy: PublicKeyBytes,
}

#[derive(TreeHash)]
struct DelegationEcdsa {
    delegator: PublicKeyBytes,
    proxy: Address,
}

/// Commit-Boost's signing domain on the network of `genesis_fork_version`.
pub fn domain(genesis_fork_version: [u8; 4]) -> B256 {
    compute_domain(COMMIT_BOOST_DOMAIN, genesis_fork_version.into(), B256::ZERO)
}

/// What a commitment is: the module's data, bound to the module, its nonce
/// and the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commitment {
    /// The 32 bytes the module asks to have signed (`object_root`).
    pub object_root: B256,
    /// The module's signing id (configured for the module).
    pub module_signing_id: B256,
    /// The module's nonce (EIP-2681 range; `2^64 − 1` by convention: none).
    pub nonce: u64,
    /// The EVM chain id the signer is configured for.
    pub chain_id: u64,
}

impl Commitment {
    /// The signing root of this commitment on the network of
    /// `genesis_fork_version`.
    pub fn signing_root(&self, genesis_fork_version: [u8; 4]) -> B256 {
        let info = PropCommitSigningInfo {
            data: self.object_root,
            module_signing_id: self.module_signing_id,
            nonce: self.nonce,
            chain_id: U256::from(self.chain_id),
        };
        compute_signing_root(&info, domain(genesis_fork_version))
    }
}

/// A proxy key a consensus key delegates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    /// A BLS proxy, by public key.
    Bls([u8; 48]),
    /// A secp256k1 proxy, by Ethereum address.
    Ecdsa([u8; 20]),
}

/// The signing root of the delegation from consensus key `delegator` to
/// `proxy` on the network of `genesis_fork_version`.
pub fn delegation_root(delegator: &[u8; 48], proxy: Proxy, genesis_fork_version: [u8; 4]) -> B256 {
    let d = domain(genesis_fork_version);
    let delegator = PublicKeyBytes::from(*delegator);
    match proxy {
        Proxy::Bls(p) => compute_signing_root(
            &DelegationBls {
                delegator,
                proxy: PublicKeyBytes::from(p),
            },
            d,
        ),
        Proxy::Ecdsa(a) => compute_signing_root(
            &DelegationEcdsa {
                delegator,
                proxy: Address::from(a),
            },
            d,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commit-Boost's own test vector (commit-boost-client,
    /// `crates/common/src/signer/schemes/ecdsa.rs`,
    /// `test_ecdsa_signer_noncommit`): `SigningData([1; 32], domain)` on
    /// holesky (genesis fork version 0x01017000).
    #[test]
    fn the_domain_matches_commit_boosts_published_root() {
        let root = compute_signing_root(&B256::repeat_byte(1), domain([0x01, 0x01, 0x70, 0x00]));
        assert_eq!(
            format!("{root}"),
            "0x219ca7a673b2cbbf67bec6c9f60f78bd051336d57b68d1540190f30667e86725"
        );
    }
}
