#!/usr/bin/env python3
"""Verifies BLS signatures with py_ecc, an implementation independent of the
signer's (blst): reads a JSON array of {"pubkey", "message", "signature"}
(hex) on stdin; prints how many verified; exits 1 naming the first that does
not, 3 if py_ecc is missing (scripts/test installs it)."""
import json
import sys

try:
    from py_ecc.bls import G2ProofOfPossession as bls
except ImportError:
    print("py_ecc is missing: run scripts/test, or pip install py_ecc", file=sys.stderr)
    sys.exit(3)


def unhex(s):
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


items = json.load(sys.stdin)
for i, item in enumerate(items):
    if not bls.Verify(unhex(item["pubkey"]), unhex(item["message"]), unhex(item["signature"])):
        print(f"item {i} ({item.get('name', '?')}) does not verify", file=sys.stderr)
        sys.exit(1)
print(f"{len(items)} verified")
