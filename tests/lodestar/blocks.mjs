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

// A small deterministic generator (xorshift32), so a failure can be replayed.
let state = Number(env("BLOCKS_SEED")) >>> 0 || 1;
const next = () => {
  state ^= state << 13;
  state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5;
  state >>>= 0;
  return state;
};
const below = (n) => next() % n;
const bytes = (n) => Uint8Array.from({ length: n }, () => below(256));

// A random value of any SSZ type, by its shape (properties, not class
// names: Lodestar subclasses the byte types): lists get 0..3 items (or
// fewer when their limit is lower), byte lists 0..40 bytes.
function random(type) {
  const name = type.constructor.name;
  if (type.fields) {
    const v = type.defaultValue();
    for (const [field, t] of Object.entries(type.fields)) v[field] = random(t);
    return v;
  }
  if (type.limitBits !== undefined) {
    const BitArray = type.defaultValue().constructor;
    const len = below(Math.min(type.limitBits, 40) + 1);
    return BitArray.fromBoolArray(Array.from({ length: len }, () => below(2) === 1));
  }
  if (type.lengthBits !== undefined) {
    const BitArray = type.defaultValue().constructor;
    return BitArray.fromBoolArray(Array.from({ length: type.lengthBits }, () => below(2) === 1));
  }
  if (type.lengthBytes !== undefined && type.elementType === undefined) return bytes(type.lengthBytes);
  if (type.limitBytes !== undefined && type.elementType === undefined) return bytes(below(Math.min(type.limitBytes, 40) + 1));
  if (name.startsWith("List")) {
    const len = below(Math.min(type.limit, 3) + 1);
    return Array.from({ length: len }, () => random(type.elementType));
  }
  if (name.startsWith("Vector")) {
    return Array.from({ length: type.length }, () => random(type.elementType));
  }
  if (name === "BooleanType") return below(2) === 1;
  if (name.startsWith("Uint")) {
    if (type.byteLength > 8) {
      return (BigInt(next()) << 96n) | (BigInt(next()) << 64n) | (BigInt(next()) << 32n) | BigInt(next());
    }
    const big = (BigInt(next()) << 21n) | BigInt(below(1 << 21)); // < 2^53
    return name === "UintBigintType" ? big : Number(big);
  }
  throw new Error(`no generator for SSZ type ${type.typeName} (${name})`);
}

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
