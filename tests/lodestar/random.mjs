// Random values of any SSZ type from Lodestar's type objects (@chainsafe/ssz,
// as @lodestar/types builds them), classic and progressive (EIP-7916 lists,
// EIP-7495 containers). Shared by blocks.mjs and gloas.mjs.
//
// makeRandom({seed, maxItems, maxBytes}): lists get 0..maxItems items and
// byte lists 0..maxBytes bytes (or fewer when their limit is lower).

export function makeRandom({ seed, maxItems, maxBytes }) {
  // A small deterministic generator (xorshift32), so a failure can be replayed.
  let state = seed >>> 0 || 1;
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

  // By the type's shape (properties, not class names: Lodestar subclasses
  // the byte types), except where only the class name tells lists from vectors.
  function random(type) {
    const name = type.constructor.name;
    if (type.fields) {
      const v = type.defaultValue();
      for (const [field, t] of Object.entries(type.fields)) v[field] = random(t);
      return v;
    }
    if (type.limitBits !== undefined) {
      const BitArray = type.defaultValue().constructor;
      const len = below(Math.min(type.limitBits, maxBytes) + 1);
      return BitArray.fromBoolArray(Array.from({ length: len }, () => below(2) === 1));
    }
    if (type.lengthBits !== undefined) {
      const BitArray = type.defaultValue().constructor;
      return BitArray.fromBoolArray(Array.from({ length: type.lengthBits }, () => below(2) === 1));
    }
    if (type.lengthBytes !== undefined && type.elementType === undefined) return bytes(type.lengthBytes);
    if (type.limitBytes !== undefined && type.elementType === undefined) {
      return bytes(below(Math.min(type.limitBytes, maxBytes) + 1));
    }
    if (name.startsWith("List") || name.startsWith("ProgressiveList")) {
      const len = below(Math.min(type.limit, maxItems) + 1);
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
  return { random, next, below, bytes };
}
