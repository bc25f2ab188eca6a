//! Any bytes as what a CometBFT node sends during the SecretConnection
//! handshake (its ephemeral X25519 key, then its encrypted authentication
//! message): tendermint-p2p's handshake, as the signer runs it, refuses
//! them with an error — no panic, no hang on a short stream.
//!
//! Only `Version::V0_34`, the one the signer speaks (CometBFT 0.34 to 1.x
//! all use it): without its `amino` feature, which we do not build,
//! tendermint-p2p *panics* on the older `V0_33`/`Legacy` handshakes (found
//! by this target in its first second; the signer never asks for them).
//!
//! Two shapes per input: the bytes as they come, and the first 32 bytes
//! framed as a well-formed ephemeral-key message (so the key itself — low-
//! order points, zeros — is what gets fuzzed) followed by the rest as the
//! authentication frame. A valid authentication frame needs the session
//! keys, which the fuzzer cannot derive; that part is covered by the
//! privval end-to-end tests against real nodes.
#![no_main]

use std::io::{Read, Write};

use libfuzzer_sys::fuzz_target;
use tendermint_p2p::secret_connection::{SecretConnection, Version};

/// The node's side of the wire: reads come from the input, writes vanish.
struct Peer<'a> {
    input: &'a [u8],
}

impl Read for Peer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Peer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn key() -> ed25519_consensus::SigningKey {
    ed25519_consensus::SigningKey::from([7u8; 32])
}

fn handshake(input: &[u8]) {
    // The peer cannot know our ephemeral key, so it cannot produce a valid
    // authentication message: every input must be refused.
    let outcome = SecretConnection::new(Peer { input }, key(), Version::V0_34);
    assert!(outcome.is_err(), "a handshake with bytes that know no session key succeeded");
}

fuzz_target!(|data: &[u8]| {
    handshake(data);
    if data.len() >= 32 {
        let (point, rest) = data.split_at(32);
        // Protobuf BytesValue { value: point }, length-delimited.
        let mut framed = vec![34u8, 10, 32];
        framed.extend_from_slice(point);
        framed.extend_from_slice(rest);
        handshake(&framed);
    }
});
