//! Who may sign what: a TOML policy file written for reviewers.
//!
//! Clients (certificate identity → name), named networks, key groups, and
//! `[[grant]]` / `[[deny]]` rules naming clients, operations, key groups and
//! networks. Deny by default; an empty list grants nothing; a matching deny
//! wins over any grant; unknown fields are errors. `check` lints a file,
//! `explain` prints the effective permissions. See `policy.example.toml`.

mod operation;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use serde::Deserialize;

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
}

/// A client, as the policy names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The policy's name for it.
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
    /// No grant covers it (deny by default).
    NotGranted,
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
            None => Verdict::NotGranted,
        }
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
            }
            out.push('\n');
        }
        out
    }
}

/// Parses and lints a policy: the policy as resolved (names that did not
/// resolve are left out) and every finding, errors first. Use
/// [`Policy::load`] to refuse a policy with errors.
pub fn check(text: &str) -> Result<(Policy, Vec<Finding>), PolicyError> {
    let file: File = toml::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
    let mut f = Vec::new();
    use Severity::{Error, Warning};

    let mut clients = BTreeMap::new();
    let mut identities: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, c) in &file.clients {
        let loc = format!("clients.{name}");
        if c.identity.is_empty() {
            f.push(finding(Error, &loc, "identity is empty"));
        } else if let Some(other) = identities.insert(&c.identity, name) {
            f.push(finding(
                Error,
                &loc,
                format!("identity {:?} is also client {other}'s", c.identity),
            ));
        }
        let fingerprint = match &c.fingerprint {
            None => None,
            Some(fp) => {
                let parsed = fp
                    .strip_prefix("sha256:")
                    .and_then(parse_hex)
                    .and_then(|b| <[u8; 32]>::try_from(b).ok());
                if parsed.is_none() {
                    f.push(finding(
                        Error,
                        &loc,
                        "fingerprint must be \"sha256:\" followed by 64 hex digits",
                    ));
                }
                parsed
            }
        };
        if c.identity == LOOPBACK_PLAINTEXT {
            f.push(finding(
                Warning,
                &loc,
                "is whoever reaches the plain-HTTP listener: any process on this host can use its grants",
            ));
        }
        if c.max_requests_per_second == Some(0) {
            f.push(finding(
                Error,
                &loc,
                "max_requests_per_second = 0 would refuse everything; remove the client's grants instead",
            ));
        }
        clients.insert(
            name.clone(),
            Client {
                name: name.clone(),
                identity: c.identity.clone(),
                fingerprint,
                max_requests_per_second: c.max_requests_per_second,
            },
        );
    }

    let mut networks = BTreeMap::new();
    for (name, n) in &file.networks {
        let loc = format!("networks.{name}");
        match (&n.genesis_validators_root, &n.chain_id) {
            (Some(r), None) => match parse_hex(r).and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                Some(root) => {
                    networks.insert(name.clone(), Network::Ethereum(root));
                }
                None => f.push(finding(
                    Error,
                    &loc,
                    "genesis_validators_root must be 32 bytes of hex",
                )),
            },
            (None, Some(id)) if !id.is_empty() && id.len() <= 50 => {
                networks.insert(name.clone(), Network::CometBft(id.clone()));
            }
            (None, Some(_)) => f.push(finding(Error, &loc, "chain_id must be 1 to 50 bytes")),
            _ => f.push(finding(
                Error,
                &loc,
                "give exactly one of genesis_validators_root or chain_id",
            )),
        }
    }

    let mut groups = BTreeMap::new();
    for (name, g) in &file.key_groups {
        let loc = format!("key_groups.{name}");
        let mut keys = BTreeSet::new();
        for k in &g.keys {
            match parse_hex(k) {
                Some(b) if matches!(b.len(), 32 | 33 | 48) => {
                    if !keys.insert(b) {
                        f.push(finding(Warning, &loc, format!("key {k} is listed twice")));
                    }
                }
                _ => f.push(finding(
                    Error,
                    &loc,
                    format!("{k:?} is not a public key (32, 33 or 48 bytes of hex)"),
                )),
            }
        }
        if keys.is_empty() {
            f.push(finding(
                Warning,
                &loc,
                "the group is empty: rules naming it grant nothing",
            ));
        }
        groups.insert(name.clone(), keys);
    }

    let resolve = |kind: &str, entries: &[RuleEntry], f: &mut Vec<Finding>| -> Vec<Rule> {
        let mut rules = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let loc = format!("{kind} #{}", i + 1);
            for c in e.clients.iter().filter(|c| !clients.contains_key(*c)) {
                f.push(finding(Error, &loc, format!("unknown client {c:?}")));
            }
            let mut ops = BTreeSet::new();
            for o in &e.operations {
                match Operation::parse(o) {
                    Some(list) => ops.extend(list),
                    None => f.push(finding(Error, &loc, format!("unknown operation {o:?}"))),
                }
            }
            let mut keys = BTreeSet::new();
            for g in &e.key_groups {
                match groups.get(g) {
                    Some(k) => keys.extend(k.iter().cloned()),
                    None => f.push(finding(Error, &loc, format!("unknown key group {g:?}"))),
                }
            }
            for n in &e.networks {
                match networks.get(n) {
                    None if !file.networks.contains_key(n) => {
                        f.push(finding(Error, &loc, format!("unknown network {n:?}")))
                    }
                    Some(net) => {
                        let kind_needed = match net {
                            Network::Ethereum(_) => NetworkKind::Ethereum,
                            Network::CometBft(_) => NetworkKind::CometBft,
                        };
                        for op in ops
                            .iter()
                            .filter(|o| !matches!(o.network_kind(), NetworkKind::None))
                        {
                            if op.network_kind() != kind_needed {
                                f.push(finding(
                                    Error,
                                    &loc,
                                    format!("{op} cannot apply on network {n:?}"),
                                ));
                            }
                        }
                    }
                    None => {}
                }
            }
            let verb = if kind == "grant" { "grants" } else { "denies" };
            if e.clients.is_empty() || e.operations.is_empty() || e.key_groups.is_empty() {
                f.push(finding(
                    Warning,
                    &loc,
                    format!(
                        "{verb} nothing: clients, operations and key_groups must all be non-empty"
                    ),
                ));
            }
            let needs_network: Vec<String> = ops
                .iter()
                .filter(|o| o.network_kind() != NetworkKind::None)
                .map(|o| o.to_string())
                .collect();
            if e.networks.is_empty() && !needs_network.is_empty() {
                f.push(finding(
                    Warning,
                    &loc,
                    format!(
                        "{verb} nothing for {}: no networks named",
                        needs_network.join(", ")
                    ),
                ));
            }
            if !e.networks.is_empty() {
                // Only for operations named one by one: a group's documentation
                // (eth2.duties includes builder registrations) already says so.
                let named: Vec<Operation> = e
                    .operations
                    .iter()
                    .filter_map(|o| Operation::parse(o))
                    .filter(|l| l.len() == 1)
                    .flatten()
                    .collect();
                for op in named
                    .iter()
                    .filter(|o| o.network_kind() == NetworkKind::None)
                {
                    f.push(finding(
                        Warning,
                        &loc,
                        format!("networks do not restrict {op}: its requests name no network"),
                    ));
                }
            }
            if kind == "grant" {
                for op in &ops {
                    if let Some(why) = op.caution() {
                        f.push(finding(Warning, &loc, format!("grants {op}: {why}")));
                    }
                }
            }
            rules.push(Rule {
                number: i + 1,
                clients: e.clients.iter().cloned().collect(),
                operations: ops,
                groups: e.key_groups.iter().cloned().collect(),
                keys,
                networks: e.networks.iter().cloned().collect(),
            });
        }
        rules
    };
    let grants = resolve("grant", &file.grant, &mut f);
    let denies = resolve("deny", &file.deny, &mut f);

    // Overlapping grants: the same client, operation, key and network granted twice.
    for (i, a) in grants.iter().enumerate() {
        for b in grants.iter().skip(i + 1) {
            let overlap = a.clients.intersection(&b.clients).next().is_some()
                && a.operations.intersection(&b.operations).next().is_some()
                && a.keys.intersection(&b.keys).next().is_some()
                && (a.networks.intersection(&b.networks).next().is_some()
                    || a.operations
                        .intersection(&b.operations)
                        .any(|o| o.network_kind() == NetworkKind::None));
            if overlap {
                f.push(finding(
                    Warning,
                    format!("grant #{}", b.number),
                    format!("overlaps grant #{}", a.number),
                ));
            }
        }
    }
    for d in &denies {
        let covers_a_grant = grants.iter().any(|g| {
            g.clients.intersection(&d.clients).next().is_some()
                && g.operations.intersection(&d.operations).next().is_some()
                && g.keys.intersection(&d.keys).next().is_some()
        });
        if !covers_a_grant {
            f.push(finding(
                Warning,
                format!("deny #{}", d.number),
                "denies nothing that is granted",
            ));
        }
    }
    for name in clients.keys() {
        if !grants.iter().any(|g| g.clients.contains(name)) {
            f.push(finding(
                Warning,
                format!("clients.{name}"),
                "is granted nothing",
            ));
        }
    }
    for name in groups.keys() {
        if !grants
            .iter()
            .chain(&denies)
            .any(|r| r.groups.contains(name))
        {
            f.push(finding(
                Warning,
                format!("key_groups.{name}"),
                "is not used by any rule",
            ));
        }
    }
    f.sort_by_key(|x| x.severity);
    Ok((
        Policy {
            clients,
            networks,
            grants,
            denies,
        },
        f,
    ))
}
