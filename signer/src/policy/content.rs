//! Block-content constraints of a grant: what a block it allows may pay
//! fees to, what gas limit it may set, what its graffiti may say, and what a
//! builder registration may declare — checked on the block the signer
//! computes the root of (full or blinded, `eth2::blocks`), never on a
//! client's word.
//!
//! ```toml
//! [[grant]]
//! …
//! fee_recipient = ["0x…"]                          # one address or a list
//! gas_limit = { min = 30000000, max = 60000000 }   # inclusive
//! graffiti = ["lido*", ""]                         # `*` any run, `?` one character
//! builder_registrations = { fee_recipient = "0x…", gas_limit = { min = 36000000, max = 36000000 } }
//! # or, to say on purpose that blocks are not checked:
//! block_content = "unchecked"
//! ```
//!
//! Registrations are held to `builder_registrations`' values where given and
//! to the grant's `fee_recipient` / `gas_limit` otherwise. A block from
//! Bellatrix on sent as a header only shows nothing of its body: a grant
//! with block constraints refuses it, asking for the block.

use std::fmt::{self, Write as _};

use serde::Deserialize;

use crate::eth2::Content;

use super::Severity::{Error, Warning};
use super::{Finding, finding};

/// One value or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a string or a list of strings, e.g. \"0x…\" or [\"0x…\", \"0x…\"]"
)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn values(&self) -> Vec<&str> {
        match self {
            Self::One(s) => vec![s.as_str()],
            Self::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// `gas_limit = { min, max }`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a range with both ends, e.g. { min = 30000000, max = 60000000 }"
)]
pub(super) struct RangeEntry {
    min: u64,
    max: u64,
}

/// `builder_registrations = { … }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegistrationEntry {
    fee_recipient: Option<OneOrMany>,
    gas_limit: Option<RangeEntry>,
}

/// The content fields of a `[[grant]]` as written.
#[derive(Debug, Clone, Default)]
pub(super) struct Entry<'a> {
    pub(super) fee_recipient: Option<&'a OneOrMany>,
    pub(super) gas_limit: Option<RangeEntry>,
    pub(super) graffiti: Option<&'a OneOrMany>,
    pub(super) builder_registrations: Option<&'a RegistrationEntry>,
    pub(super) block_content: Option<&'a str>,
}

impl Entry<'_> {
    fn any(&self) -> bool {
        self.fee_recipient.is_some()
            || self.gas_limit.is_some()
            || self.graffiti.is_some()
            || self.builder_registrations.is_some()
            || self.block_content.is_some()
    }
}

/// A grant's content constraints, resolved (all `None`: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Constraints {
    /// Allowed execution fee recipients of blocks.
    pub fee_recipient: Option<Vec<[u8; 20]>>,
    /// Allowed gas limits of blocks (inclusive).
    pub gas_limit: Option<(u64, u64)>,
    /// Patterns the graffiti (as text) must match one of.
    pub graffiti: Option<Vec<String>>,
    /// Allowed fee recipients of registrations.
    pub registration_fee_recipient: Option<Vec<[u8; 20]>>,
    /// Allowed gas limits of registrations.
    pub registration_gas_limit: Option<(u64, u64)>,
    /// `block_content = "unchecked"`: no constraint, on purpose.
    pub unchecked: bool,
}

/// A request outside a grant's content constraints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The grant whose constraint it breaks.
    pub grant: usize,
    /// Which field (`execution_payload.fee_recipient`, `graffiti`, …).
    pub field: &'static str,
    /// What the request has.
    pub got: String,
    /// What the grant allows.
    pub allowed: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {}; grant #{} allows {}",
            self.field, self.got, self.grant, self.allowed
        )
    }
}

fn address(s: &str) -> Option<[u8; 20]> {
    let h = s.strip_prefix("0x")?;
    let mut out = [0u8; 20];
    hex::decode_to_slice(h, &mut out).ok()?;
    Some(out)
}

fn addresses(what: &str, v: &OneOrMany, loc: &str, f: &mut Vec<Finding>) -> Option<Vec<[u8; 20]>> {
    let values = v.values();
    if values.is_empty() {
        f.push(finding(
            Error,
            loc,
            format!("{what} = []: an empty list allows no address; leave it out to allow any"),
        ));
        return None;
    }
    let mut out = Vec::new();
    for s in values {
        match address(s) {
            Some(a) => out.push(a),
            None => f.push(finding(
                Error,
                loc,
                format!("{what}: {s:?} is not an execution address (0x and 40 hex digits)"),
            )),
        }
    }
    Some(out)
}

fn range(what: &str, r: RangeEntry, loc: &str, f: &mut Vec<Finding>) -> Option<(u64, u64)> {
    if r.min > r.max {
        f.push(finding(
            Error,
            loc,
            format!("{what}: min {} is above max {}", r.min, r.max),
        ));
        return None;
    }
    Some((r.min, r.max))
}

/// Resolves and lints a rule's content fields — none for a deny, which
/// may not have them (`proposes`: it names
/// eth2.block; `registers`: eth2.validator_registration; `effective`: it
/// names clients, keys and networks, so it grants something).
pub(super) fn resolve(
    e: &Entry<'_>,
    kind: &str,
    loc: &str,
    (proposes, registers, effective): (bool, bool, bool),
    f: &mut Vec<Finding>,
) -> Constraints {
    if kind != "grant" {
        if e.any() {
            f.push(finding(
                Error,
                loc,
                "fee_recipient, gas_limit, graffiti, builder_registrations and block_content belong to grants: a deny refuses whole operations",
            ));
        }
        return Constraints::default();
    }
    let mut c = Constraints::default();
    match e.block_content {
        None => {}
        Some("unchecked") => {
            c.unchecked = true;
            if e.fee_recipient.is_some() || e.gas_limit.is_some() || e.graffiti.is_some() {
                f.push(finding(
                    Error,
                    loc,
                    "block_content = \"unchecked\" beside block constraints: say one or the other",
                ));
            }
        }
        Some(other) => f.push(finding(
            Error,
            loc,
            format!("block_content = {other:?}: the only value is \"unchecked\" (no block constraint, on purpose)"),
        )),
    }
    c.fee_recipient = e
        .fee_recipient
        .and_then(|v| addresses("fee_recipient", v, loc, f));
    c.gas_limit = e.gas_limit.and_then(|r| range("gas_limit", r, loc, f));
    if let Some(g) = e.graffiti {
        let patterns: Vec<String> = g.values().into_iter().map(str::to_owned).collect();
        if patterns.is_empty() {
            f.push(finding(
                Error,
                loc,
                "graffiti = []: an empty list allows no block; leave it out to allow any",
            ));
        }
        for p in &patterns {
            if !p.contains('*') && p.len() > 32 {
                f.push(finding(
                    Error,
                    loc,
                    format!(
                        "graffiti {p:?} is longer than a graffiti's 32 bytes: no block can match"
                    ),
                ));
            }
        }
        c.graffiti = Some(patterns);
    }
    if let Some(r) = e.builder_registrations {
        c.registration_fee_recipient = r
            .fee_recipient
            .as_ref()
            .and_then(|v| addresses("builder_registrations.fee_recipient", v, loc, f));
        c.registration_gas_limit = r
            .gas_limit
            .and_then(|g| range("builder_registrations.gas_limit", g, loc, f));
        if !registers {
            f.push(finding(
                Warning,
                loc,
                "builder_registrations constrains eth2.validator_registration, which this grant does not give",
            ));
        }
    }
    if (e.fee_recipient.is_some() || e.gas_limit.is_some()) && !proposes && !registers {
        f.push(finding(
            Warning,
            loc,
            "fee_recipient and gas_limit constrain eth2.block and eth2.validator_registration; this grant gives neither",
        ));
    }
    if (e.graffiti.is_some() || e.block_content.is_some()) && !proposes {
        f.push(finding(
            Warning,
            loc,
            "graffiti and block_content concern eth2.block, which this grant does not give",
        ));
    }
    if proposes && effective && !c.blocks_constrained() && !c.unchecked {
        f.push(finding(
            Warning,
            loc,
            "gives eth2.block with no block-content constraint: a block paying any fee recipient, with any gas limit and graffiti, is signed \
             (set fee_recipient, gas_limit or graffiti; or block_content = \"unchecked\" to say it is on purpose)",
        ));
    }
    c
}

/// `*` any run of characters, `?` one; everything else itself.
fn glob(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        // Text is at most 32 bytes and patterns are the operator's: the
        // backtracking stays small.
        Some(('*', rest)) => (0..=text.len()).any(|i| text.get(i..).is_some_and(|t| glob(rest, t))),
        Some(('?', rest)) => text.split_first().is_some_and(|(_, t)| glob(rest, t)),
        Some((c, rest)) => text
            .split_first()
            .is_some_and(|(t, tail)| t == c && glob(rest, tail)),
    }
}

/// A graffiti as text: its bytes up to the first zero, as UTF-8 (invalid
/// sequences become U+FFFD, which only `*` or `?` match).
fn graffiti_text(g: &[u8; 32]) -> String {
    let end = g.iter().position(|&b| b == 0).unwrap_or(32);
    String::from_utf8_lossy(g.get(..end).unwrap_or(g)).into_owned()
}

fn span((min, max): (u64, u64)) -> String {
    if min == max {
        format!("exactly {min}")
    } else {
        format!("{min} to {max}")
    }
}

fn list(addresses: &[[u8; 20]]) -> String {
    let all: Vec<String> = addresses
        .iter()
        .map(|a| format!("0x{}", hex::encode(a)))
        .collect();
    if all.len() == 1 {
        all.join("")
    } else {
        format!("one of {}", all.join(", "))
    }
}

impl Constraints {
    fn blocks_constrained(&self) -> bool {
        self.fee_recipient.is_some() || self.gas_limit.is_some() || self.graffiti.is_some()
    }

    fn registrations_constrained(&self) -> bool {
        self.fee_recipient.is_some()
            || self.gas_limit.is_some()
            || self.registration_fee_recipient.is_some()
            || self.registration_gas_limit.is_some()
    }

    /// Whether `content` is within these constraints of grant `grant`.
    pub fn check(&self, grant: usize, content: &Content) -> Result<(), Violation> {
        let violation = |field, got: String, allowed: String| Violation {
            grant,
            field,
            got,
            allowed,
        };
        match *content {
            Content::None => Ok(()),
            Content::HeaderOnly if self.blocks_constrained() => Err(violation(
                "beacon_block",
                "a block_header only".to_owned(),
                "only blocks whose contents it can check: send beacon_block.block or .blinded_block".to_owned(),
            )),
            Content::HeaderOnly => Ok(()),
            Content::Block {
                graffiti,
                payload,
                bid,
                ..
            } => {
                let (fee_field, gas_field) = if bid {
                    (
                        "signed_execution_payload_bid.message.fee_recipient",
                        "signed_execution_payload_bid.message.gas_limit",
                    )
                } else {
                    (
                        "execution_payload.fee_recipient",
                        "execution_payload.gas_limit",
                    )
                };
                if let (Some(allowed), Some((fee_recipient, _))) = (&self.fee_recipient, payload)
                    && !allowed.contains(&fee_recipient.0.0)
                {
                    return Err(violation(
                        fee_field,
                        format!("{fee_recipient:#x}"),
                        list(allowed),
                    ));
                }
                if let (Some((min, max)), Some((_, gas_limit))) = (self.gas_limit, payload)
                    && !(min..=max).contains(&gas_limit)
                {
                    return Err(violation(
                        gas_field,
                        gas_limit.to_string(),
                        span((min, max)),
                    ));
                }
                if let Some(patterns) = &self.graffiti {
                    let text = graffiti_text(&graffiti.0);
                    let chars: Vec<char> = text.chars().collect();
                    if !patterns
                        .iter()
                        .any(|p| glob(&p.chars().collect::<Vec<_>>(), &chars))
                    {
                        return Err(violation(
                            "graffiti",
                            format!("{text:?}"),
                            patterns
                                .iter()
                                .map(|p| format!("{p:?}"))
                                .collect::<Vec<_>>()
                                .join(" or "),
                        ));
                    }
                }
                Ok(())
            }
            Content::Preferences {
                fee_recipient,
                gas_limit,
            } => {
                if let Some(allowed) = &self.fee_recipient
                    && !allowed.contains(&fee_recipient.0.0)
                {
                    return Err(violation(
                        "proposer_preferences.fee_recipient",
                        format!("{fee_recipient:#x}"),
                        list(allowed),
                    ));
                }
                if let Some((min, max)) = self.gas_limit
                    && !(min..=max).contains(&gas_limit)
                {
                    return Err(violation(
                        "proposer_preferences.target_gas_limit",
                        gas_limit.to_string(),
                        span((min, max)),
                    ));
                }
                Ok(())
            }
            Content::Registration {
                fee_recipient,
                gas_limit,
            } => {
                let allowed = self
                    .registration_fee_recipient
                    .as_ref()
                    .or(self.fee_recipient.as_ref());
                if let Some(allowed) = allowed
                    && !allowed.contains(&fee_recipient.0.0)
                {
                    return Err(violation(
                        "validator_registration.fee_recipient",
                        format!("{fee_recipient:#x}"),
                        list(allowed),
                    ));
                }
                if let Some((min, max)) = self.registration_gas_limit.or(self.gas_limit)
                    && !(min..=max).contains(&gas_limit)
                {
                    return Err(violation(
                        "validator_registration.gas_limit",
                        gas_limit.to_string(),
                        span((min, max)),
                    ));
                }
                Ok(())
            }
        }
    }

    /// What `policy explain` says of these constraints (empty: none).
    pub fn explain(&self, grant: usize) -> String {
        let mut out = String::new();
        if self.unchecked {
            let _ = writeln!(
                out,
                "    grant #{grant}: block contents unchecked (block_content = \"unchecked\")"
            );
        }
        if self.blocks_constrained() {
            let mut parts = Vec::new();
            if let Some(a) = &self.fee_recipient {
                parts.push(format!("fee recipient {}", list(a)));
            }
            if let Some(r) = self.gas_limit {
                parts.push(format!("gas limit {}", span(r)));
            }
            if let Some(g) = &self.graffiti {
                let g: Vec<String> = g.iter().map(|p| format!("{p:?}")).collect();
                parts.push(format!("graffiti matching {}", g.join(" or ")));
            }
            let _ = writeln!(
                out,
                "    grant #{grant}: blocks: {}; full or blinded blocks only (a block_header alone is refused)",
                parts.join(", ")
            );
        }
        if self.fee_recipient.is_some() || self.gas_limit.is_some() {
            let mut parts = Vec::new();
            if let Some(a) = &self.fee_recipient {
                parts.push(format!("fee recipient {}", list(a)));
            }
            if let Some(r) = self.gas_limit {
                parts.push(format!("target gas limit {}", span(r)));
            }
            let _ = writeln!(
                out,
                "    grant #{grant}: proposer preferences (gloas): {}",
                parts.join(", ")
            );
        }
        if self.registrations_constrained() {
            let mut parts = Vec::new();
            if let Some(a) = self
                .registration_fee_recipient
                .as_ref()
                .or(self.fee_recipient.as_ref())
            {
                parts.push(format!("fee recipient {}", list(a)));
            }
            if let Some(r) = self.registration_gas_limit.or(self.gas_limit) {
                parts.push(format!("gas limit {}", span(r)));
            }
            let _ = writeln!(
                out,
                "    grant #{grant}: builder registrations: {}",
                parts.join(", ")
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    fn g(p: &str, t: &str) -> bool {
        glob(
            &p.chars().collect::<Vec<_>>(),
            &t.chars().collect::<Vec<_>>(),
        )
    }

    #[test]
    fn glob_matches_runs_and_single_characters_and_nothing_else() {
        assert!(g("lido*", "lido/v2"));
        assert!(g("lido*", "lido"));
        assert!(!g("lido*", "xlido"));
        assert!(g("*", ""));
        assert!(g("", ""));
        assert!(!g("", "a"));
        assert!(g("v?.1", "v2.1"));
        assert!(!g("v?.1", "v10.1"));
        assert!(g("*teku*", "my teku node"));
        assert!(!g("exact", "exactly"));
    }
}
