//! `signer policy diff OLD NEW`: the change in *effective* permissions, per
//! client — which (operation, network, key) it may now sign that it could
//! not, and the reverse; identity, certificate pin and rate-limit changes —
//! so that a reviewer approving a policy change sees what it grants, not
//! which lines moved. Networks are compared by what they are (genesis
//! validators root, chain id), not by their names in the file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{ALL_OPERATIONS, Client, Network, NetworkKind, Operation, Policy, Request, Verdict};

/// A network as the diff compares it: by value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Net {
    /// Operations that name no network (builder registrations, raw signing).
    None,
    Ethereum([u8; 32]),
    CometBft(String),
}

impl Net {
    fn of(n: &Network) -> Self {
        match n {
            Network::Ethereum(r) => Self::Ethereum(*r),
            Network::CometBft(c) => Self::CometBft(c.clone()),
        }
    }
}

/// Everything a client may sign: (operation, network, key).
type Allowed = BTreeSet<(Operation, Net, Vec<u8>)>;

impl Policy {
    /// Every key any key group names.
    fn all_keys(&self) -> BTreeSet<Vec<u8>> {
        self.grants
            .iter()
            .chain(&self.denies)
            .flat_map(|r| r.keys.iter().cloned())
            .collect()
    }

    fn allowed(&self, client: &str, keys: &BTreeSet<Vec<u8>>) -> Allowed {
        let mut out = Allowed::new();
        for op in ALL_OPERATIONS {
            let nets: Vec<Option<&Network>> = if op.network_kind() == NetworkKind::None {
                vec![None]
            } else {
                self.networks.values().map(Some).collect()
            };
            for net in nets {
                for key in keys {
                    let r = Request {
                        client,
                        operation: op,
                        key,
                        network: net,
                    };
                    if matches!(self.decide(&r), Verdict::Allowed { .. }) {
                        out.insert((op, net.map_or(Net::None, Net::of), key.clone()));
                    }
                }
            }
        }
        out
    }

    /// The name this policy gives a network, if it has it.
    fn net_name(&self, net: &Net) -> Option<&str> {
        if *net == Net::None {
            return Some("-");
        }
        self.networks
            .iter()
            .find(|(_, n)| Net::of(n) == *net)
            .map(|(name, _)| name.as_str())
    }
}

/// What a diff found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDiff {
    /// The report, one block per client that changed.
    pub text: String,
    /// Anything gained: a permission, a new client, a new or unpinned
    /// identity, a higher or removed rate limit.
    pub gains: usize,
    /// Anything lost.
    pub losses: usize,
}

fn short(key: &[u8]) -> String {
    let h = hex::encode(key);
    match (h.get(..8), h.get(h.len().saturating_sub(4)..)) {
        (Some(a), Some(b)) if h.len() > 12 => format!("0x{a}…{b}"),
        _ => format!("0x{h}"),
    }
}

fn net_label(old: &Policy, new: &Policy, net: &Net) -> String {
    new.net_name(net)
        .or_else(|| old.net_name(net))
        .map_or_else(|| "?".to_owned(), str::to_owned)
}

/// Lines for one direction (`+` gained, `-` lost): operations grouped by
/// (network, keys) so that a grant of a whole group reads as one line.
fn lines(sign: char, set: &Allowed, old: &Policy, new: &Policy, out: &mut String) {
    let mut by_op_net: BTreeMap<(Operation, &Net), Vec<&Vec<u8>>> = BTreeMap::new();
    for (op, net, key) in set {
        by_op_net.entry((*op, net)).or_default().push(key);
    }
    let mut grouped: BTreeMap<(&Net, Vec<&Vec<u8>>), Vec<Operation>> = BTreeMap::new();
    for ((op, net), keys) in by_op_net {
        grouped.entry((net, keys)).or_default().push(op);
    }
    for ((net, keys), ops) in grouped {
        let ops: Vec<&str> = ops.iter().map(|o| o.name()).collect();
        let shown: Vec<String> = keys.iter().take(3).map(|k| short(k)).collect();
        let more = if keys.len() > 3 {
            format!(" and {} more", keys.len() - 3)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {sign} {} on {}: {} key{} ({}{more})",
            ops.join(", "),
            net_label(old, new, net),
            keys.len(),
            if keys.len() == 1 { "" } else { "s" },
            shown.join(", ")
        );
    }
}

fn rate(c: &Client) -> String {
    c.max_requests_per_second
        .map_or_else(|| "unlimited".to_owned(), |n| format!("{n}/s"))
}

/// Compares two policies' effective permissions.
pub fn diff(old: &Policy, new: &Policy) -> PolicyDiff {
    let keys: BTreeSet<Vec<u8>> = old.all_keys().union(&new.all_keys()).cloned().collect();
    let names: BTreeSet<&String> = old.clients.keys().chain(new.clients.keys()).collect();
    let (mut text, mut gains, mut losses) = (String::new(), 0, 0);
    for name in names {
        let (o, n) = (
            old.clients.get(name.as_str()),
            new.clients.get(name.as_str()),
        );
        let mut block = String::new();
        match (o, n) {
            (None, Some(c)) => {
                gains += 1;
                let _ = writeln!(block, "  + new client, identity {}", c.identity);
            }
            (Some(c), None) => {
                losses += 1;
                let _ = writeln!(block, "  - client removed (identity {})", c.identity);
            }
            (Some(a), Some(b)) => {
                if a.identity != b.identity {
                    // Another certificate now carries the client's rights.
                    gains += 1;
                    let _ = writeln!(
                        block,
                        "  + identity changed: {} → {} (that certificate gets these permissions)",
                        a.identity, b.identity
                    );
                }
                match (a.fingerprint, b.fingerprint) {
                    (Some(_), None) => {
                        gains += 1;
                        let _ = writeln!(
                            block,
                            "  + certificate pin removed: any certificate with the identity is accepted"
                        );
                    }
                    (None, Some(_)) => {
                        losses += 1;
                        let _ = writeln!(block, "  - certificate pinned");
                    }
                    (Some(x), Some(y)) if x != y => {
                        gains += 1;
                        let _ = writeln!(
                            block,
                            "  + certificate pin changed (another certificate is accepted)"
                        );
                    }
                    _ => {}
                }
                let (ra, rb) = (a.max_requests_per_second, b.max_requests_per_second);
                if ra != rb {
                    let raised = match (ra, rb) {
                        (Some(x), Some(y)) => y > x,
                        (Some(_), None) => true,
                        _ => false,
                    };
                    let sign = if raised { '+' } else { '-' };
                    if raised {
                        gains += 1;
                    } else {
                        losses += 1;
                    }
                    let _ = writeln!(block, "  {sign} rate limit {} → {}", rate(a), rate(b));
                }
            }
            (None, None) => {}
        }
        let before = o.map(|_| old.allowed(name, &keys)).unwrap_or_default();
        let after = n.map(|_| new.allowed(name, &keys)).unwrap_or_default();
        let gained: Allowed = after.difference(&before).cloned().collect();
        let lost: Allowed = before.difference(&after).cloned().collect();
        gains += gained.len();
        losses += lost.len();
        lines('+', &gained, old, new, &mut block);
        lines('-', &lost, old, new, &mut block);
        if !block.is_empty() {
            let identity = n.or(o).map_or("", |c| c.identity.as_str());
            let _ = writeln!(text, "client {name} ({identity})");
            text.push_str(&block);
            text.push('\n');
        }
    }
    if gains == 0 && losses == 0 {
        text.push_str("no change in effective permissions\n");
    } else {
        let _ = writeln!(
            text,
            "{gains} permission(s) gained, {losses} lost (a permission: one operation on one network with one key, or a client, identity, pin or rate-limit change)"
        );
    }
    PolicyDiff {
        text,
        gains,
        losses,
    }
}
