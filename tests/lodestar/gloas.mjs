// The Gloas messages a remote signer signs, from Lodestar's SSZ types
// (@lodestar/types, from npm): an independent implementation of the
// progressive (EIP-7916, EIP-7495) merkleization they use. Two modes
// (GLOAS_MODE), used by tests/tests/gloas.rs:
//
//   generate: GLOAS_PER_KIND random objects of each kind, one JSON line each:
//             {kind, data (beacon-API JSON), root, signing_root}. The signing
//             root uses GLOAS_FORK_VERSION and GLOAS_GVR (builder request
//             authorisations: GLOAS_GENESIS_FORK_VERSION and a zero root).
//   hash:     reads {kind, data} lines on stdin (objects the test made) and
//             prints {kind, root} lines: Lodestar's hash_tree_root of each.
//
// Environment: LODESTAR_PRESET (read by @lodestar/params when it loads),
// GLOAS_SEED, GLOAS_PER_KIND, GLOAS_FORK_VERSION, GLOAS_GENESIS_FORK_VERSION,
// GLOAS_GVR, GLOAS_KINDS (optional: which kinds to generate).
import { createInterface } from "node:readline";
import {
  DOMAIN_AGGREGATE_AND_PROOF,
  DOMAIN_BEACON_PROPOSER,
  DOMAIN_BEACON_BUILDER,
  DOMAIN_BUILDER_REQUEST_AUTH,
  DOMAIN_PROPOSER_PREFERENCES,
  DOMAIN_PTC_ATTESTER,
} from "@lodestar/params";
import { ssz } from "@lodestar/types";
import { makeRandom } from "./random.mjs";

const env = (k) => {
  const v = process.env[k];
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const fromHex = (h) => Uint8Array.from(Buffer.from(h.replace(/^0x/, ""), "hex"));
const toHex = (b) => "0x" + Buffer.from(b).toString("hex");

// Request field name → [SSZ type, domain type, network-independent?]
const KINDS = {
  execution_payload_bid: [ssz.gloas.ExecutionPayloadBid, DOMAIN_BEACON_BUILDER, false],
  execution_payload_envelope: [ssz.gloas.ExecutionPayloadEnvelope, DOMAIN_BEACON_BUILDER, false],
  payload_attestation_message: [ssz.gloas.PayloadAttestationData, DOMAIN_PTC_ATTESTER, false],
  proposer_preferences: [ssz.gloas.ProposerPreferences, DOMAIN_PROPOSER_PREFERENCES, false],
  builder_request_auth: [ssz.gloas.BuilderRequestAuth, DOMAIN_BUILDER_REQUEST_AUTH, true],
  aggregate_and_proof: [ssz.gloas.AggregateAndProof, DOMAIN_AGGREGATE_AND_PROOF, false],
  // Only when GLOAS_KINDS names it: a whole beacon block (its bid read by
  // the block-content policy).
  block: [ssz.gloas.BeaconBlock, DOMAIN_BEACON_PROPOSER, false],
};
// GLOAS_KINDS (comma-separated) picks kinds to generate; by default every
// message kind, not blocks.
const SELECTED = (process.env.GLOAS_KINDS ?? Object.keys(KINDS).filter((k) => k !== "block").join(","))
  .split(",")
  .filter((k) => k);

function domain(domainType, forkVersion, gvr) {
  const forkDataRoot = ssz.phase0.ForkData.hashTreeRoot({ currentVersion: forkVersion, genesisValidatorsRoot: gvr });
  const d = new Uint8Array(32);
  d.set(domainType);
  d.set(forkDataRoot.subarray(0, 28), 4);
  return d;
}

if (env("GLOAS_MODE") === "generate") {
  // Lists of up to 24 items and byte lists of up to 1,000 bytes (32 chunks):
  // deep enough to reach the third subtree (16 leaves) of a progressive list.
  const { random } = makeRandom({ seed: Number(env("GLOAS_SEED")), maxItems: 24, maxBytes: 1000 });
  const forkVersion = fromHex(env("GLOAS_FORK_VERSION"));
  const genesisForkVersion = fromHex(env("GLOAS_GENESIS_FORK_VERSION"));
  const gvr = fromHex(env("GLOAS_GVR"));
  const perKind = Number(env("GLOAS_PER_KIND"));
  for (const kind of SELECTED) {
    const [type, domainType, networkFree] = KINDS[kind];
    const d = networkFree ? domain(domainType, genesisForkVersion, new Uint8Array(32)) : domain(domainType, forkVersion, gvr);
    for (let i = 0; i < perKind; i++) {
      const value = random(type);
      const root = type.hashTreeRoot(value);
      const signingRoot = ssz.phase0.SigningData.hashTreeRoot({ objectRoot: root, domain: d });
      console.log(JSON.stringify({ kind, data: type.toJson(value), root: toHex(root), signing_root: toHex(signingRoot) }));
    }
  }
} else {
  for await (const line of createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    const { kind, data } = JSON.parse(line);
    const [type] = KINDS[kind] ?? [];
    if (!type) throw new Error(`unknown kind ${kind}`);
    console.log(JSON.stringify({ kind, root: toHex(type.hashTreeRoot(type.fromJson(data))) }));
  }
}
