// Random full and blinded beacon blocks of every fork with an execution
// payload, from Lodestar's SSZ types (@lodestar/types, from npm): an
// independent implementation of the consensus containers. For each block it
// prints one JSON line: the fork, whether blinded, the block as the beacon
// API writes it, and the BLOCK_V2 signing root under BLOCKS_FORK_VERSION and
// BLOCKS_GVR. Used by tests/tests/block_content.rs.
//
// Environment: LODESTAR_PRESET (mainnet | minimal: read by @lodestar/params
// when it loads), BLOCKS_PER_KIND, BLOCKS_SEED, BLOCKS_FORK_VERSION (0x…
// 4 bytes), BLOCKS_GVR (0x… 32 bytes).
import { ssz } from "@lodestar/types";

const env = (k) => {
  const v = process.env[k];
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const fromHex = (h) => Uint8Array.from(Buffer.from(h.replace(/^0x/, ""), "hex"));
const toHex = (b) => "0x" + Buffer.from(b).toString("hex");

import { makeRandom } from "./random.mjs";

const { random } = makeRandom({ seed: Number(env("BLOCKS_SEED")), maxItems: 3, maxBytes: 40 });

const forkVersion = fromHex(env("BLOCKS_FORK_VERSION"));
const gvr = fromHex(env("BLOCKS_GVR"));
const forkDataRoot = ssz.phase0.ForkData.hashTreeRoot({
  currentVersion: forkVersion,
  genesisValidatorsRoot: gvr,
});
const domain = new Uint8Array(32);
domain.set([0, 0, 0, 0]); // DOMAIN_BEACON_PROPOSER
domain.set(forkDataRoot.subarray(0, 28), 4);

const perKind = Number(env("BLOCKS_PER_KIND"));
for (const fork of ["bellatrix", "capella", "deneb", "electra", "fulu"]) {
  for (const blinded of [false, true]) {
    const type = blinded ? ssz[fork].BlindedBeaconBlock : ssz[fork].BeaconBlock;
    for (let i = 0; i < perKind; i++) {
      const block = random(type);
      const signingRoot = ssz.phase0.SigningData.hashTreeRoot({
        objectRoot: type.hashTreeRoot(block),
        domain,
      });
      console.log(
        JSON.stringify({
          fork,
          blinded,
          block: type.toJson(block),
          block_root: toHex(type.hashTreeRoot(block)),
          signing_root: toHex(signingRoot),
        }),
      );
    }
  }
}
