"""Module JWTs as Commit-Boost's documentation makes them (PyJWT), for the
signer's verifier to judge (tests/tests/commit_boost.rs).

Reads JSON lines {claims, secret, alg, body?} on stdin; a `body` (text)
adds the claim payload_hash = 0x + keccak-256 of it (eth_hash, from
eth-account), as signer-api.md shows. Prints {"token": "..."} per line.
"""

import json
import sys

import jwt
from eth_hash.auto import keccak

for line in sys.stdin:
    if not line.strip():
        continue
    case = json.loads(line)
    claims = dict(case["claims"])
    if "body" in case:
        claims["payload_hash"] = "0x" + keccak(case["body"].encode()).hex()
    alg = case["alg"]
    key = case["secret"] if alg != "none" else None
    print(json.dumps({"token": jwt.encode(claims, key, algorithm=alg)}), flush=True)
