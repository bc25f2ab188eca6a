//! Just enough of CometBFT's canonical sign bytes to protect them: read height,
//! round, step and chain id, and compare two messages while ignoring their
//! timestamps.
//!
//! Sign bytes are `uvarint(len) || proto3(CanonicalVote | CanonicalProposal)`
//! (Go's `protoio.MarshalDelimited`), identical in v0.34, v0.37, v0.38 and v1:
//!
//! | field | CanonicalVote      | CanonicalProposal   |
//! |-------|--------------------|---------------------|
//! | 1     | type (varint)      | type = 32 (varint)  |
//! | 2     | height (sfixed64)  | height (sfixed64)   |
//! | 3     | round (sfixed64)   | round (sfixed64)    |
//! | 4     | block_id (bytes)   | pol_round (varint)  |
//! | 5     | timestamp (bytes)  | block_id (bytes)    |
//! | 6     | chain_id (string)  | timestamp (bytes)   |
//! | 7     | —                  | chain_id (string)   |
//!
//! proto3 omits zero values, so an absent height or round is 0. Anything not in
//! this table is refused: the signer encodes these bytes itself, so an unknown
//! field means the encoder and this parser disagree, and guessing is unsafe.

use std::ops::Range;

use crate::types::{Height, Hrs, Step};

/// Sign bytes that are not a canonical vote or proposal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignBytesError {
    /// The input ended inside a length prefix, tag or field.
    #[error("sign bytes are truncated")]
    Truncated,
    /// The length prefix does not match the message length.
    #[error("length prefix {prefix} does not match the {actual} bytes that follow")]
    LengthMismatch {
        /// Length named by the prefix.
        prefix: u64,
        /// Bytes actually present.
        actual: usize,
    },
    /// `type` is not prevote (1), precommit (2) or proposal (32).
    #[error("message type {0} is not a prevote, precommit or proposal")]
    UnknownType(u64),
    /// A field number or wire type not in the canonical message.
    #[error("unexpected field {field} (wire type {wire_type})")]
    UnexpectedField {
        /// Field number.
        field: u64,
        /// Protobuf wire type.
        wire_type: u8,
    },
    /// The same field appears twice (canonical encodings never repeat one).
    #[error("field {0} appears twice")]
    DuplicateField(u64),
    /// Height below zero.
    #[error("negative height")]
    NegativeHeight,
    /// Round below zero or above `i32::MAX`.
    #[error("round out of range")]
    RoundOutOfRange,
    /// The chain id in the bytes is not the chain the request is for.
    #[error("sign bytes name another chain id")]
    ChainIdMismatch,
}

/// The facts read from sign bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// Height, round and step.
    pub hrs: Hrs,
    /// The chain id bytes.
    pub chain_id: &'a [u8],
    /// Byte range (in the whole input) of the timestamp field, tag included.
    timestamp: Option<Range<usize>>,
}

struct Field {
    number: u64,
    wire_type: u8,
    /// The whole field, tag included.
    span: Range<usize>,
    /// The value: varint value, or the fixed64 as u64, or 0 for length-delimited.
    scalar: u64,
    /// For length-delimited fields, the payload.
    payload: Range<usize>,
}

fn read_uvarint(b: &[u8], pos: &mut usize) -> Result<u64, SignBytesError> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or(SignBytesError::Truncated)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(SignBytesError::Truncated)
}

fn read_field(b: &[u8], pos: &mut usize) -> Result<Field, SignBytesError> {
    let start = *pos;
    let tag = read_uvarint(b, pos)?;
    let number = tag >> 3;
    let wire_type = (tag & 7) as u8;
    let (scalar, payload) = match wire_type {
        0 => (read_uvarint(b, pos)?, 0..0),
        1 => {
            let end = pos.checked_add(8).ok_or(SignBytesError::Truncated)?;
            let raw = b.get(*pos..end).ok_or(SignBytesError::Truncated)?;
            let mut le = [0u8; 8];
            le.copy_from_slice(raw);
            *pos = end;
            (u64::from_le_bytes(le), 0..0)
        }
        2 => {
            let len = read_uvarint(b, pos)?;
            let len = usize::try_from(len).map_err(|_| SignBytesError::Truncated)?;
            let end = pos.checked_add(len).ok_or(SignBytesError::Truncated)?;
            if end > b.len() {
                return Err(SignBytesError::Truncated);
            }
            let payload = *pos..end;
            *pos = end;
            (0, payload)
        }
        _ => {
            return Err(SignBytesError::UnexpectedField {
                field: number,
                wire_type,
            });
        }
    };
    Ok(Field {
        number,
        wire_type,
        span: start..*pos,
        scalar,
        payload,
    })
}

/// Reads height, round, step and chain id from canonical sign bytes.
pub fn parse(b: &[u8]) -> Result<Parsed<'_>, SignBytesError> {
    let mut pos = 0;
    let prefix = read_uvarint(b, &mut pos)?;
    let actual = b.len() - pos;
    if u64::try_from(actual).ok() != Some(prefix) {
        return Err(SignBytesError::LengthMismatch { prefix, actual });
    }
    let mut fields = Vec::with_capacity(7);
    while pos < b.len() {
        let f = read_field(b, &mut pos)?;
        if fields.iter().any(|g: &Field| g.number == f.number) {
            return Err(SignBytesError::DuplicateField(f.number));
        }
        fields.push(f);
    }
    let scalar = |n: u64| {
        fields
            .iter()
            .find(|f| f.number == n)
            .map_or(0, |f| f.scalar)
    };
    let msg_type = scalar(1);
    let (step, layout): (Step, &[(u64, u8)]) = match msg_type {
        // (field, wire type) allowed besides type/height/round.
        1 => (Step::Prevote, &[(4, 2), (5, 2), (6, 2)]),
        2 => (Step::Precommit, &[(4, 2), (5, 2), (6, 2)]),
        32 => (Step::Propose, &[(4, 0), (5, 2), (6, 2), (7, 2)]),
        other => return Err(SignBytesError::UnknownType(other)),
    };
    let (timestamp_field, chain_field) = if step == Step::Propose {
        (6, 7)
    } else {
        (5, 6)
    };
    for f in &fields {
        let ok = match f.number {
            1 => f.wire_type == 0,
            2 | 3 => f.wire_type == 1,
            n => layout.contains(&(n, f.wire_type)),
        };
        if !ok {
            return Err(SignBytesError::UnexpectedField {
                field: f.number,
                wire_type: f.wire_type,
            });
        }
    }
    // sfixed64: the u64 bits are the two's-complement i64.
    let height = i64::from_le_bytes(scalar(2).to_le_bytes());
    let round = i64::from_le_bytes(scalar(3).to_le_bytes());
    let height = u64::try_from(height).map_err(|_| SignBytesError::NegativeHeight)?;
    let round = u32::try_from(round)
        .ok()
        .filter(|r| i32::try_from(*r).is_ok())
        .ok_or(SignBytesError::RoundOutOfRange)?;
    let chain_id = fields
        .iter()
        .find(|f| f.number == chain_field)
        .and_then(|f| b.get(f.payload.clone()))
        .unwrap_or_default();
    let timestamp = fields
        .iter()
        .find(|f| f.number == timestamp_field)
        .map(|f| f.span.clone());
    Ok(Parsed {
        hrs: Hrs {
            height: Height(height),
            round,
            step,
        },
        chain_id,
        timestamp,
    })
}

/// True when `a` and `b` are the same message except (possibly) for the
/// timestamp. Both must parse; bytes that do not are never "the same".
pub fn same_except_timestamp(a: &[u8], b: &[u8]) -> bool {
    fn without_timestamp(b: &[u8]) -> Option<Vec<u8>> {
        let p = parse(b).ok()?;
        let mut out = Vec::with_capacity(b.len());
        let mut pos = 0;
        read_uvarint(b, &mut pos).ok()?; // the prefix covers the timestamp too
        match p.timestamp {
            Some(ts) => {
                out.extend_from_slice(b.get(pos..ts.start)?);
                out.extend_from_slice(b.get(ts.end..)?);
            }
            None => out.extend_from_slice(b.get(pos..)?),
        }
        Some(out)
    }
    match (without_timestamp(a), without_timestamp(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// cometbft types/vote_test.go TestVoteSignBytesTestVectors, case 0: a
    /// zero vote (type 0) is not something a validator signs.
    #[test]
    fn zero_type_vote_is_refused() {
        assert_eq!(
            parse(&unhex("0d2a0b088092b8c398feffffff01")),
            Err(SignBytesError::UnknownType(0))
        );
    }

    #[test]
    fn truncated_and_mislengthed_bytes_are_refused() {
        // A prevote at height 1: type=1, height=1 (sfixed64).
        let mut body = vec![0x08, 0x01, 0x11];
        body.extend_from_slice(&1i64.to_le_bytes());
        let mut good = vec![u8::try_from(body.len()).unwrap()];
        good.extend_from_slice(&body);
        assert!(parse(&good).is_ok());
        assert_eq!(
            parse(&good[..good.len() - 1]),
            Err(SignBytesError::LengthMismatch {
                prefix: 11,
                actual: 10
            })
        );
        let mut lying = good.clone();
        lying[0] = 10;
        lying.truncate(11);
        assert_eq!(parse(&lying), Err(SignBytesError::Truncated));
        assert_eq!(parse(&[]), Err(SignBytesError::Truncated));
    }

    #[test]
    fn duplicate_and_unknown_fields_are_refused() {
        let b = [0x04, 0x08, 0x01, 0x08, 0x01];
        assert_eq!(parse(&b), Err(SignBytesError::DuplicateField(1)));
        let b = [0x04, 0x08, 0x01, 0x48, 0x01]; // field 9 varint
        assert_eq!(
            parse(&b),
            Err(SignBytesError::UnexpectedField {
                field: 9,
                wire_type: 0
            })
        );
    }
}
