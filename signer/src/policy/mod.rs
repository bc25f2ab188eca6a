//! Who may sign what: a TOML policy file written for reviewers.
//!
//! Clients (certificate identity → name), named networks, key groups, and
//! `[[grant]]` / `[[deny]]` rules naming clients, operations, key groups and
//! networks. Deny by default; an empty list grants nothing; a matching deny
//! wins over any grant; unknown fields are errors. `check` (`lint.rs`) lints a file,
//! `explain` prints the effective permissions. See `policy.example.toml`.

mod content;
mod diff;
mod lint;
mod operation;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use serde::Deserialize;

use content::Constraints;
pub use content::Violation;
pub use diff::{PolicyDiff, diff};
pub use lint::check;
pub use operation::{ALL as ALL_OPERATIONS, NetworkKind, Operation};

/// The identity of every connection to a plain-HTTP listener (no
/// certificate: any local process). A policy client with this identity
/// gets what plain HTTP callers may do; `signer policy check` warns about it.
pub const LOOPBACK_PLAINTEXT: &str = "insecure:loopback-http";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    clients: BTreeMap<String, ClientEntry>,
    #[serde(default)]
    networks: BTreeMap<String, NetworkEntry>,
    #[serde(default)]
    key_groups: BTreeMap<String, KeyGroupEntry>,
    #[serde(default)]
    grant: Vec<RuleEntry>,
    #[serde(default)]
    deny: Vec<RuleEntry>,
    #[serde(default)]
    keymanager: Option<KeymanagerEntry>,
}

/// `[keymanager]`: who may import and delete keys through the Keymanager
/// API (each also needs its bearer token).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeymanagerEntry {
    clients: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    identity: String,
    fingerprint: Option<String>,
    max_requests_per_second: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkEntry {
    genesis_validators_root: Option<String>,
    chain_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyGroupEntry {
    keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    #[serde(default)]
    clients: Vec<String>,
    #[serde(default)]
    operations: Vec<String>,
    #[serde(default)]
    key_groups: Vec<String>,
    #[serde(default)]
    networks: Vec<String>,
    /// Denies only: this deny guards against a future grant, so it is
    /// expected to deny nothing that is granted today (no lint warning).
    #[serde(default)]
    guard: bool,
    /// Grants only: block-content constraints (`content.rs`).
    fee_recipient: Option<content::OneOrMany>,
    gas_limit: Option<content::RangeEntry>,
    graffiti: Option<content::OneOrMany>,
    builder_registrations: Option<content::RegistrationEntry>,
    block_content: Option<String>,
}

/// Who asks: the name of a policy client, as the identity of a verified
/// connection resolved to it under the policy in force
/// (`Pipeline::identify`). Requests carry this, never a raw string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);

impl ClientId {
    /// A client by its policy name (what identification produces; tests
    /// and tools name one directly).
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client, as the policy names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The policy's name for it (a request carries it as a [`ClientId`]).
    pub name: String,
    /// URI or DNS SAN its certificate must carry.
    pub identity: String,
    /// SHA-256 of its certificate (DER), when pinned.
    pub fingerprint: Option<[u8; 32]>,
    /// At most this many items per second (bursts up to one second's worth).
    pub max_requests_per_second: Option<u32>,
}

/// A network a rule can be restricted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// Ethereum, by genesis validators root.
    Ethereum([u8; 32]),
    /// A CometBFT chain, by chain id.
    CometBft(String),
}

#[derive(Debug, Clone)]
struct Rule {
    /// 1-based position among the grants (or denies).
    number: usize,
    clients: BTreeSet<String>,
    operations: BTreeSet<Operation>,
    groups: BTreeSet<String>,
    keys: BTreeSet<Vec<u8>>,
    networks: BTreeSet<String>,
    /// A deny marked `guard = true`.
    guard: bool,
    /// A grant's block-content constraints (a deny's are empty).
    content: Constraints,
}

/// How serious a lint finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The policy is refused.
    Error,
    /// The policy loads; a reviewer should look.
    Warning,
}

/// One lint finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Where (`grant #2`, `clients.a`, …).
    pub location: String,
    /// What.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{s}: {}: {}", self.location, self.message)
    }
}

/// A policy that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not TOML of the policy's shape (unknown fields included).
    #[error("policy file does not parse: {0}")]
    Parse(String),
    /// It parses, but lint found errors.
    #[error("policy has {} error(s); run `signer policy check` for all findings", .0.iter().filter(|f| f.severity == Severity::Error).count())]
    Invalid(Vec<Finding>),
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    clients: BTreeMap<String, Client>,
    networks: BTreeMap<String, Network>,
    grants: Vec<Rule>,
    denies: Vec<Rule>,
    /// Clients allowed the Keymanager API.
    keymanager: BTreeSet<String>,
}

/// One request, as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The client's policy name (from its certificate).
    pub client: &'a str,
    /// What it asks.
    pub operation: Operation,
    /// With which key (public key bytes).
    pub key: &'a [u8],
    /// On which network (None for operations that name none).
    pub network: Option<&'a Network>,
}

/// The policy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed by this grant (1-based).
    Allowed {
        /// Grant number.
        grant: usize,
    },
    /// Refused by this deny (1-based).
    Denied {
        /// Deny number.
        deny: usize,
    },
    /// No grant covers it (deny by default); the first part no grant of
    /// this client covers.
    NotGranted(Miss),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allowed { grant } => write!(f, "allowed by grant #{grant}"),
            Self::Denied { deny } => write!(f, "refused by deny #{deny}"),
            Self::NotGranted(miss) => miss.fmt(f),
        }
    }
}

/// What no grant covers, checked in this order among the grants that name
/// the client: the client itself, the operation, the key, the network. It
/// speaks only of the asking client's grants, so telling the client is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// No grant names the client.
    Client,
    /// No grant gives the client this operation.
    Operation(Operation),
    /// Grants give the client the operation, none for this key.
    Key(Operation),
    /// Grants give the client the operation for this key, none on this network.
    Network(Operation),
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Client => write!(f, "no grant names this client"),
            Self::Operation(op) => write!(f, "no grant gives this client {}", op.name()),
            Self::Key(op) => write!(f, "no grant gives this client {} for this key", op.name()),
            Self::Network(op) => write!(
                f,
                "no grant gives this client {} for this key on this network",
                op.name()
            ),
        }
    }
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s.strip_prefix("0x").unwrap_or(s)).ok()
}

fn finding(severity: Severity, location: impl Into<String>, message: impl Into<String>) -> Finding {
    Finding {
        severity,
        location: location.into(),
        message: message.into(),
    }
}

impl Policy {
    /// Parses and lints; refuses a policy with errors. Warnings come back beside it.
    pub fn load(text: &str) -> Result<(Policy, Vec<Finding>), PolicyError> {
        let (policy, findings) = check(text)?;
        if findings.iter().any(|f| f.severity == Severity::Error) {
            return Err(PolicyError::Invalid(findings));
        }
        Ok((policy, findings))
    }

    /// The client with this policy name.
    pub fn client(&self, name: &str) -> Option<&Client> {
        self.clients.get(name)
    }

    /// The client whose certificate carries `identity`.
    pub fn client_by_identity(&self, identity: &str) -> Option<&Client> {
        self.clients.values().find(|c| c.identity == identity)
    }

    fn network_matches(&self, rule: &Rule, op: Operation, network: Option<&Network>) -> bool {
        if op.network_kind() == NetworkKind::None {
            return true;
        }
        let Some(network) = network else { return false };
        rule.networks
            .iter()
            .any(|n| self.networks.get(n) == Some(network))
    }

    fn matches(&self, rule: &Rule, r: &Request<'_>) -> bool {
        rule.clients.contains(r.client)
            && rule.operations.contains(&r.operation)
            && rule.keys.contains(r.key)
            && self.network_matches(rule, r.operation, r.network)
    }

    /// Decides one request: a matching deny wins, then a matching grant; otherwise not granted.
    pub fn decide(&self, r: &Request<'_>) -> Verdict {
        if let Some(d) = self.denies.iter().find(|d| self.matches(d, r)) {
            return Verdict::Denied { deny: d.number };
        }
        match self.grants.iter().find(|g| self.matches(g, r)) {
            Some(g) => Verdict::Allowed { grant: g.number },
            None => Verdict::NotGranted(self.miss(r)),
        }
    }

    /// Why no grant matched `r` (only asked once none did).
    /// (No allocation: `decide` runs it for every refusal, and ListKeys and
    /// `policy diff` ask `decide` for every operation and network.)
    fn miss(&self, r: &Request<'_>) -> Miss {
        let op = r.operation;
        let mine = || self.grants.iter().filter(|g| g.clients.contains(r.client));
        let with_op = || mine().filter(|g| g.operations.contains(&op));
        if mine().next().is_none() {
            Miss::Client
        } else if with_op().next().is_none() {
            Miss::Operation(op)
        } else if !with_op().any(|g| g.keys.contains(r.key)) {
            Miss::Key(op)
        } else {
            Miss::Network(op)
        }
    }

    /// Whether `content` is within the constraints of a grant that allows
    /// `r` (asked once `decide` allowed it): any one allowing grant whose
    /// constraints it meets, or that has none, is enough; otherwise the
    /// first allowing grant's violation.
    pub fn check_content(
        &self,
        r: &Request<'_>,
        content: &crate::eth2::Content,
    ) -> Result<(), Violation> {
        if *content == crate::eth2::Content::None {
            return Ok(());
        }
        let mut first = None;
        for g in self.grants.iter().filter(|g| self.matches(g, r)) {
            match g.content.check(g.number, content) {
                Ok(()) => return Ok(()),
                Err(v) => {
                    first.get_or_insert(v);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The policy's name for `network`, if it has one.
    pub fn network_name(&self, network: &Network) -> Option<&str> {
        self.networks
            .iter()
            .find(|(_, n)| *n == network)
            .map(|(name, _)| name.as_str())
    }

    /// The operations `client` may use `key` for, on at least one network
    /// (what `ListKeys` reports).
    pub fn granted_operations(&self, client: &str, key: &[u8]) -> Vec<Operation> {
        ALL_OPERATIONS
            .iter()
            .copied()
            .filter(|&operation| {
                let networks: Vec<Option<&Network>> =
                    if operation.network_kind() == NetworkKind::None {
                        vec![None]
                    } else {
                        self.networks.values().map(Some).collect()
                    };
                networks.into_iter().any(|network| {
                    matches!(
                        self.decide(&Request {
                            client,
                            operation,
                            key,
                            network,
                        }),
                        Verdict::Allowed { .. }
                    )
                })
            })
            .collect()
    }

    /// The effective permissions, as a table per client (all, or one).
    /// Whether `client` may use the Keymanager API (list, import, delete keys).
    pub fn keymanager_allows(&self, client: &str) -> bool {
        self.keymanager.contains(client)
    }

    /// The clients allowed the Keymanager API.
    pub fn keymanager_clients(&self) -> impl Iterator<Item = &str> {
        self.keymanager.iter().map(String::as_str)
    }

    pub fn explain(&self, only: Option<&str>) -> String {
        let mut out = String::new();
        for c in self
            .clients
            .values()
            .filter(|c| only.is_none_or(|o| o == c.name))
        {
            let _ = write!(out, "client {} ({})", c.name, c.identity);
            if let Some(n) = c.max_requests_per_second {
                let _ = write!(out, ", at most {n} requests/s");
            }
            out.push('\n');
            if self.keymanager.contains(&c.name) {
                let _ = writeln!(
                    out,
                    "  keymanager: may list, import and delete keys (with its bearer token)"
                );
            }
            let mut rows = Vec::new();
            for op in ALL_OPERATIONS {
                let networks: Vec<Option<&String>> = if op.network_kind() == NetworkKind::None {
                    vec![None]
                } else {
                    self.networks.keys().map(Some).collect()
                };
                for net in networks {
                    let applies = |rule: &Rule| {
                        rule.clients.contains(&c.name)
                            && rule.operations.contains(&op)
                            && net.is_none_or(|n| rule.networks.contains(n))
                    };
                    let grants: Vec<&Rule> = self.grants.iter().filter(|g| applies(g)).collect();
                    if grants.is_empty() {
                        continue;
                    }
                    let granted: BTreeSet<&Vec<u8>> =
                        grants.iter().flat_map(|g| g.keys.iter()).collect();
                    let mut rule = grants
                        .iter()
                        .map(|g| format!("grant #{}", g.number))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let denies: Vec<&Rule> = self.denies.iter().filter(|d| applies(d)).collect();
                    for d in &denies {
                        let n = granted.iter().filter(|k| d.keys.contains(**k)).count();
                        if n > 0 {
                            let _ = write!(rule, "; {n} denied by deny #{}", d.number);
                        }
                    }
                    let allowed = granted
                        .iter()
                        .filter(|k| !denies.iter().any(|d| d.keys.contains(**k)))
                        .count();
                    rows.push((
                        op.name(),
                        net.map_or("-", String::as_str).to_owned(),
                        allowed,
                        rule,
                    ));
                }
            }
            if rows.is_empty() {
                let _ = writeln!(out, "  (nothing granted)");
            } else {
                let _ = writeln!(
                    out,
                    "  {:<36} {:<12} {:>5}  rule",
                    "operation", "network", "keys"
                );
                for (op, net, keys, rule) in rows {
                    let _ = writeln!(out, "  {op:<36} {net:<12} {keys:>5}  {rule}");
                }
                let constraints: String = self
                    .grants
                    .iter()
                    .filter(|g| g.clients.contains(&c.name))
                    .map(|g| g.content.explain(g.number))
                    .collect();
                if !constraints.is_empty() {
                    let _ = writeln!(out, "  contents:");
                    out.push_str(&constraints);
                }
            }
            out.push('\n');
        }
        out
    }
}
