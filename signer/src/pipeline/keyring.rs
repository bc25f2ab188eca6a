//! The loaded keys, by public key.

use std::collections::HashMap;

use crate::backend::Key;

use super::Refusal;

/// Public key bytes → key.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: HashMap<Vec<u8>, Key>,
}

impl Keyring {
    /// Adds a key (a second copy of the same key replaces the first).
    pub fn insert(&mut self, key: impl Into<Key>) {
        let key = key.into();
        self.keys.insert(key.public_key(), key);
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds many keys, deriving their public keys on every core (a BLS
    /// public key costs ~60 µs: 100,000 keys would take 6 s on one).
    pub fn extend(&mut self, keys: Vec<Key>) {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = keys.len().div_ceil(threads).max(1);
        let derived: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = keys
                .chunks(chunk)
                .map(|c| s.spawn(move || c.iter().map(Key::public_key).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        if derived.len() != keys.len() {
            // A deriving thread died: fall back to one at a time.
            for key in keys {
                self.insert(key);
            }
            return;
        }
        self.keys.extend(derived.into_iter().zip(keys));
    }

    /// Every key.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.values()
    }

    /// Every key with its public key (computed once, at load).
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &Key)> {
        self.keys.iter().map(|(pk, k)| (pk.as_slice(), k))
    }

    /// True when a key with this public key is loaded.
    pub fn contains(&self, public_key: &[u8]) -> bool {
        self.keys.contains_key(public_key)
    }

    pub(super) fn get(&self, public_key: &[u8]) -> Result<&Key, Refusal> {
        self.keys.get(public_key).ok_or(Refusal::UnknownKey)
    }
}
