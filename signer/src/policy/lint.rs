//! `signer policy check`: parse a policy, resolve its names, and report
//! findings — errors that make it unusable, warnings a reviewer should see.
//! One function per part of the file, then the checks across rules.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    Client, File, Finding, LOOPBACK_PLAINTEXT, Network, NetworkKind, Operation, Policy,
    PolicyError, Rule, RuleEntry, Severity, content, finding, parse_hex,
};
use Severity::{Error, Warning};

/// Key groups by name: their public keys.
type Groups = BTreeMap<String, BTreeSet<Vec<u8>>>;

/// What rules may name, as resolved.
struct Names<'a> {
    file: &'a File,
    clients: &'a BTreeMap<String, Client>,
    networks: &'a BTreeMap<String, Network>,
    groups: &'a Groups,
}

/// Parses and lints a policy: the policy as resolved (names that did not
/// resolve are left out) and every finding, errors first. Use
/// [`Policy::load`] to refuse a policy with errors.
pub fn check(text: &str) -> Result<(Policy, Vec<Finding>), PolicyError> {
    let file: File = toml::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
    let mut f = Vec::new();
    let clients = clients(&file, &mut f);
    let networks = networks(&file, &mut f);
    let groups = key_groups(&file, &mut f);
    let names = Names {
        file: &file,
        clients: &clients,
        networks: &networks,
        groups: &groups,
    };
    let grants = rules("grant", &file.grant, &names, &mut f);
    let denies = rules("deny", &file.deny, &names, &mut f);
    across_rules(&grants, &denies, &clients, &groups, &mut f);
    let mut keymanager = BTreeSet::new();
    for name in file.keymanager.iter().flat_map(|k| k.clients.iter()) {
        if !clients.contains_key(name) {
            f.push(finding(
                Error,
                "keymanager.clients",
                format!("no client named {name:?}"),
            ));
        } else if clients
            .get(name)
            .is_some_and(|c| c.identity == LOOPBACK_PLAINTEXT)
        {
            f.push(finding(
                Error,
                "keymanager.clients",
                format!("{name} is the plain-HTTP identity: key import and delete need mutual TLS"),
            ));
        } else {
            keymanager.insert(name.clone());
        }
    }
    f.sort_by_key(|x| x.severity);
    Ok((
        Policy {
            clients,
            networks,
            grants,
            denies,
            keymanager,
        },
        f,
    ))
}

fn clients(file: &File, f: &mut Vec<Finding>) -> BTreeMap<String, Client> {
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
    clients
}

fn networks(file: &File, f: &mut Vec<Finding>) -> BTreeMap<String, Network> {
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
    networks
}

fn key_groups(file: &File, f: &mut Vec<Finding>) -> Groups {
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
    groups
}

/// Resolves `[[grant]]` or `[[deny]]` entries (`kind`), reporting names that
/// do not resolve and rules a reviewer should look at twice.
fn rules(kind: &str, entries: &[RuleEntry], names: &Names<'_>, f: &mut Vec<Finding>) -> Vec<Rule> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| rule(kind, i, e, names, f))
        .collect()
}

fn rule(kind: &str, i: usize, e: &RuleEntry, names: &Names<'_>, f: &mut Vec<Finding>) -> Rule {
    let loc = format!("{kind} #{}", i + 1);
    for c in e.clients.iter().filter(|c| !names.clients.contains_key(*c)) {
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
        match names.groups.get(g) {
            Some(k) => keys.extend(k.iter().cloned()),
            None => f.push(finding(Error, &loc, format!("unknown key group {g:?}"))),
        }
    }
    for n in &e.networks {
        match names.networks.get(n) {
            None if !names.file.networks.contains_key(n) => {
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
            format!("{verb} nothing: clients, operations and key_groups must all be non-empty"),
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
    if kind == "grant" && e.guard {
        f.push(finding(
            Error,
            &loc,
            "`guard` marks a [[deny]] that stops a future grant; a grant cannot have it",
        ));
    }
    if kind == "grant" {
        for op in &ops {
            if let Some(why) = op.caution() {
                f.push(finding(Warning, &loc, format!("grants {op}: {why}")));
            }
        }
    }
    let content = content::resolve(
        &content::Entry {
            fee_recipient: e.fee_recipient.as_ref(),
            gas_limit: e.gas_limit,
            graffiti: e.graffiti.as_ref(),
            builder_registrations: e.builder_registrations.as_ref(),
            block_content: e.block_content.as_deref(),
        },
        kind,
        &loc,
        (
            ops.contains(&Operation::Eth2Block),
            ops.contains(&Operation::Eth2ValidatorRegistration),
            !e.clients.is_empty() && !e.key_groups.is_empty() && !e.networks.is_empty(),
        ),
        f,
    );
    Rule {
        number: i + 1,
        clients: e.clients.iter().cloned().collect(),
        operations: ops,
        groups: e.key_groups.iter().cloned().collect(),
        keys,
        networks: e.networks.iter().cloned().collect(),
        guard: e.guard,
        content,
    }
}

/// Overlapping grants, denies that deny nothing, clients granted nothing,
/// key groups no rule uses.
fn across_rules(
    grants: &[Rule],
    denies: &[Rule],
    clients: &BTreeMap<String, Client>,
    groups: &Groups,
    f: &mut Vec<Finding>,
) {
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
    for d in denies {
        let covers_a_grant = grants.iter().any(|g| {
            g.clients.intersection(&d.clients).next().is_some()
                && g.operations.intersection(&d.operations).next().is_some()
                && g.keys.intersection(&d.keys).next().is_some()
        });
        if !covers_a_grant && !d.guard {
            f.push(finding(
                Warning,
                format!("deny #{}", d.number),
                "denies nothing that is granted (a typo? if it is there to stop a future grant, say `guard = true`)",
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
        if !grants.iter().chain(denies).any(|r| r.groups.contains(name)) {
            f.push(finding(
                Warning,
                format!("key_groups.{name}"),
                "is not used by any rule",
            ));
        }
    }
}
