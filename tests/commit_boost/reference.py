"""Commit-Boost proposer-commitment signatures, written from the
specification text (commit-boost-client, docs/developing/prop-commit-signing.md
and signer-api.md) and the consensus specifications' SSZ rules: an
implementation independent of the signer's Rust code.

Reads one JSON case per line on stdin and prints one JSON line per case:
{"signing_root": "0x…", "valid": true|false}.

A case: kind ("bls", "proxy_bls", "proxy_ecdsa", "delegation_bls",
"delegation_ecdsa"), genesis_fork_version, signature, and
- for signatures: chain_id (integer), module_signing_id, nonce (integer),
  object_root, key (BLS public key, or the proxy's address for proxy_ecdsa);
- for delegations: delegator (BLS public key), proxy (BLS public key or
  address); verified under the delegator.

BLS: py_ecc (G2ProofOfPossession, as the consensus specs). ECDSA: the
65-byte r || s || v signature of the signing root itself (no message
prefix), v being 27 or 28; recovered with eth_keys (from eth-account).
"""

import hashlib
import json
import sys

from eth_keys import keys
from py_ecc.bls import G2ProofOfPossession as bls

COMMIT_BOOST_DOMAIN = bytes.fromhex("6d6d6f43")
ZERO = b"\0" * 32


def h(a, b):
    return hashlib.sha256(a + b).digest()


def merkleize(chunks):
    width = 1
    while width < len(chunks):
        width *= 2
    layer = chunks + [ZERO] * (width - len(chunks))
    while len(layer) > 1:
        layer = [h(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]


def fixed_bytes_root(b):
    """hash_tree_root of a ByteVector: its bytes packed into chunks."""
    chunks = [b[i : i + 32].ljust(32, b"\0") for i in range(0, len(b), 32)]
    return merkleize(chunks)


def uint_chunk(n, byte_len):
    return n.to_bytes(byte_len, "little").ljust(32, b"\0")


def domain(genesis_fork_version):
    # compute_domain(COMMIT_BOOST_DOMAIN, genesis fork version, zero root)
    fork_data_root = merkleize([genesis_fork_version.ljust(32, b"\0"), ZERO])
    return COMMIT_BOOST_DOMAIN + fork_data_root[:28]


def signing_root(object_root, genesis_fork_version):
    # SigningData(object_root, domain)
    return merkleize([object_root, domain(genesis_fork_version)])


def unhex(s):
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


def root_of(case):
    gfv = unhex(case["genesis_fork_version"])
    kind = case["kind"]
    if kind.startswith("delegation_"):
        delegator = fixed_bytes_root(unhex(case["delegator"]))
        proxy = fixed_bytes_root(unhex(case["proxy"]))
        return signing_root(merkleize([delegator, proxy]), gfv)
    # PropCommitSigningInfo { data: Bytes32, module_signing_id: Bytes32,
    # nonce: uint64, chain_id: uint256 }
    info = merkleize(
        [
            unhex(case["object_root"]),
            unhex(case["module_signing_id"]),
            uint_chunk(case["nonce"], 8),
            uint_chunk(case["chain_id"], 32),
        ]
    )
    return signing_root(info, gfv)


def valid(case, root):
    sig = unhex(case["signature"])
    kind = case["kind"]
    if kind in ("proxy_ecdsa",):
        if len(sig) != 65 or sig[64] not in (27, 28):
            return False
        s = keys.Signature(vrs=(sig[64] - 27, int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")))
        address = s.recover_public_key_from_msg_hash(root).to_canonical_address()
        return address == unhex(case["key"])
    signer = case["delegator"] if kind.startswith("delegation_") else case["key"]
    return bls.Verify(unhex(signer), root, sig)


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        case = json.loads(line)
        root = root_of(case)
        print(json.dumps({"signing_root": "0x" + root.hex(), "valid": bool(valid(case, root))}), flush=True)


if __name__ == "__main__":
    main()
