//! Newtypes for everything the database stores or compares.
//!
//! Slots, epochs and heights are `u64` in the protocols but SQLite and
//! PostgreSQL store signed 64-bit integers. Values above `i64::MAX` are
//! refused at the storage edge ([`crate::DbError::OutOfRange`]) rather than
//! wrapped, so ordering in SQL is always the protocol's ordering.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! number {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<u64> for $name {
            fn from(v: u64) -> Self {
                Self(v)
            }
        }
    };
}

number!(
    /// An Ethereum beacon-chain slot.
    Slot
);
number!(
    /// An Ethereum beacon-chain epoch.
    Epoch
);
number!(
    /// A CometBFT block height.
    Height
);

macro_rules! bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// Parses `0x`-prefixed (or bare) hex of exactly the right length, either case.
            pub fn from_hex(s: &str) -> Result<Self, HexError> {
                let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
                let mut out = [0u8; $len];
                hex::decode_to_slice(digits, &mut out).map_err(|_| HexError {
                    what: stringify!($name),
                    expected_len: $len,
                })?;
                Ok(Self(out))
            }

            /// Builds from a byte slice of exactly the right length.
            pub fn from_slice(b: &[u8]) -> Option<Self> {
                <[u8; $len]>::try_from(b).ok().map(Self)
            }

            /// `0x`-prefixed lower-case hex.
            pub fn to_hex(&self) -> String {
                format!("0x{}", hex::encode(self.0))
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

bytes!(
    /// The SSZ signing root of an Ethereum message (what BLS actually signs).
    SigningRoot,
    32
);
bytes!(
    /// The `genesis_validators_root` that identifies an Ethereum network.
    GenesisRoot,
    32
);
bytes!(
    /// A compressed BLS12-381 public key (48 bytes): an Ethereum validator.
    BlsPublicKey,
    48
);

impl SigningRoot {
    /// An all-zero root. In an interchange file it means "unknown" (several
    /// clients export it that way), so imports store it as no root at all.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }
}

/// Hex that did not parse as the expected fixed-length value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: expected {expected_len} bytes of hex")]
pub struct HexError {
    /// Which type was being parsed.
    pub what: &'static str,
    /// Its length in bytes.
    pub expected_len: usize,
}

/// A CometBFT chain id (`cosmoshub-4`, …). CometBFT limits it to 50 bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChainId(String);

impl ChainId {
    /// CometBFT's `MaxChainIDLen`.
    pub const MAX_LEN: usize = 50;

    /// A chain id of at most 50 bytes.
    pub fn new(s: impl Into<String>) -> Option<Self> {
        let s = s.into();
        (s.len() <= Self::MAX_LEN).then_some(Self(s))
    }

    /// The chain id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({:?})", self.0)
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The public key that identifies a CometBFT signer (Ed25519: 32 bytes,
/// secp256k1: 33 bytes compressed). Stored as given; only compared.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsensusKey(Vec<u8>);

impl ConsensusKey {
    /// Wraps the public key bytes (1 to 65 bytes).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<Self> {
        let b = bytes.into();
        (!b.is_empty() && b.len() <= 65).then_some(Self(b))
    }

    /// The public key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ConsensusKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConsensusKey(0x{})", hex::encode(&self.0))
    }
}

/// The step of a CometBFT height/round, in the order CometBFT signs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// A block proposal (`SignedMsgType` 32).
    Propose = 1,
    /// A prevote (`SignedMsgType` 1).
    Prevote = 2,
    /// A precommit (`SignedMsgType` 2).
    Precommit = 3,
}

impl Step {
    /// The number stored in the database (CometBFT's `stepPropose`… constants).
    pub fn as_i64(self) -> i64 {
        self as i64
    }

    /// Inverse of [`Step::as_i64`].
    pub fn from_i64(v: i64) -> Option<Self> {
        match v {
            1 => Some(Self::Propose),
            2 => Some(Self::Prevote),
            3 => Some(Self::Precommit),
            _ => None,
        }
    }
}

/// Height, round and step: the position of a CometBFT signature. Ordered
/// lexicographically, which is the order in which a validator may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hrs {
    /// Block height.
    pub height: Height,
    /// Consensus round within the height.
    pub round: u32,
    /// Step within the round.
    pub step: Step,
}

impl fmt::Display for Hrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{:?}", self.height, self.round, self.step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_accepts_both_cases_and_prefixes() {
        let lower = SigningRoot::from_hex(&format!("0x{}", "ab".repeat(32))).unwrap();
        let upper = SigningRoot::from_hex(&format!("0X{}", "AB".repeat(32))).unwrap();
        let bare = SigningRoot::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(lower, upper);
        assert_eq!(lower, bare);
        assert_eq!(lower.to_hex(), format!("0x{}", "ab".repeat(32)));
    }

    #[test]
    fn hex_of_wrong_length_is_refused() {
        let err = SigningRoot::from_hex("0x1234").unwrap_err();
        assert_eq!(err.expected_len, 32);
        assert!(BlsPublicKey::from_hex(&"00".repeat(32)).is_err());
    }

    #[test]
    fn hrs_orders_height_then_round_then_step() {
        let h = |height, round, step| Hrs {
            height: Height(height),
            round,
            step,
        };
        assert!(h(1, 5, Step::Precommit) < h(2, 0, Step::Propose));
        assert!(h(2, 0, Step::Precommit) < h(2, 1, Step::Propose));
        assert!(h(2, 1, Step::Propose) < h(2, 1, Step::Prevote));
    }

    #[test]
    fn chain_id_longer_than_cometbft_allows_is_refused() {
        assert!(ChainId::new("a".repeat(50)).is_some());
        assert!(ChainId::new("a".repeat(51)).is_none());
    }
}
