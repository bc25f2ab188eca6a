#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs, from the test vectors, into DIR/<target>/.

Seeds are derived each run (not committed): the vectors are the source of
truth. What the fuzzer finds beyond them is kept in fuzz/corpus/<target>/.
"""
import json
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
out = pathlib.Path(sys.argv[1])
vec = root / "tests" / "vectors"


def put(target, name, data):
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


# Web3Signer requests: the API's examples.
ex = json.loads((vec / "web3signer" / "sign_examples.json").read_text())
for i, e in enumerate(ex["examples"]):
    put("eth2_request", f"example-{i}", json.dumps(e["request"]))

# CometBFT: sign bytes and privval messages.
cb = json.loads((vec / "cometbft" / "sign_bytes_and_privval_vectors.json").read_text())
for group in ("vote_sign_bytes", "proposal_sign_bytes"):
    for v in cb[group]:
        if v.get("sign_bytes_hex"):
            put("sign_bytes", str(v["id"]), bytes.fromhex(v["sign_bytes_hex"]))
for i, m in enumerate(cb["privval_messages"]):
    body = bytes.fromhex(m["message_hex"])
    put("privval_frame", f"message-{i}", body)

# EIP-3076 interchanges.
for f in sorted((vec / "eip3076").glob("*.json")):
    t = json.loads(f.read_text())
    for j, step in enumerate(t.get("steps", [])):
        put("interchange", f"{f.stem}-{j}", json.dumps(step["interchange"]))

# EIP-2335 keystores, with their KDF made cheap (the target skips costly ones;
# the checksum then fails, but every field is still parsed).
for f in ("scrypt.json", "pbkdf2.json"):
    ks = json.loads((vec / "eip2335" / f).read_text())
    ks = ks.get("keystore", ks)
    p = ks["crypto"]["kdf"]["params"]
    if "n" in p:
        p["n"] = 1024
    if "c" in p:
        p["c"] = 1000
    put("keystore", f, json.dumps(ks))

# PKCS#12 files the tests use.
for f in sorted((root / "signer" / "tests" / "fixtures" / "pkcs12").glob("*.p12")):
    put("pkcs12", f.name, f.read_bytes())

# Configuration and policy examples.
put("config_toml", "signer.example.toml", (root / "signer.example.toml").read_text())
put("config_toml", "policy.example.toml", (root / "policy.example.toml").read_text())

# Key-configuration files: the forms docs/keys.md shows.
put("key_config", "file-raw.yaml", 'type: "file-raw"\nkeyType: "BLS"\nprivateKey: "0x47b8192d77bf871b62e87859d653922725724a5c031afeabc60bcef5ff665138"\n')
put("key_config", "file-keystore.yaml", 'type: "file-keystore"\nkeyType: "BLS"\nkeystoreFile: "k.json"\nkeystorePasswordFile: "k.pass"\n---\ntype: "file-raw"\nprivateKey: "0x12"\n')

# gRPC: protobuf starts from nothing; libFuzzer finds the field structure.
put("grpc_request", "empty", b"")

# SecretConnection: a peer's ephemeral key (the X25519 base point, then a
# low-order point) and one encrypted frame's worth of bytes after it, raw
# and as the v0.34 handshake message.
base = bytes([9]) + bytes(31)
put("secret_connection", "point-and-frame", base + bytes(1028))
put("secret_connection", "low-order", bytes(32) + bytes(1028))
put("secret_connection", "v034-message", bytes([34, 10, 32]) + base + bytes(1028))
