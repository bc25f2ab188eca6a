//! Where a CometBFT node listens for its remote signer: a configuration
//! value (`[[cometbft]] nodes`), parsed where the configuration is, used by
//! the privval connector.

use std::path::PathBuf;

/// Where a node listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAddr {
    /// SecretConnection over TCP; the node's key must hash to `node_id`.
    Tcp {
        /// 40 hex digits: the first 20 bytes of SHA-256 of its Ed25519 key.
        node_id: String,
        /// `host:port`.
        addr: String,
    },
    /// A Unix socket.
    Unix(PathBuf),
}

/// Read from the configuration as its URL (see [`NodeAddr::parse`]).
impl<'de> serde::Deserialize<'de> for NodeAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl NodeAddr {
    /// Parses `tcp://<node id>@host:port` or `unix:///path`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("tcp://") {
            let (id, addr) = rest
                .split_once('@')
                .ok_or("tcp:// nodes are written tcp://<node id>@host:port")?;
            let id = id.to_ascii_lowercase();
            if id.len() != 40 || hex::decode(&id).is_err() {
                return Err(format!("{s}: a node id is 40 hex digits"));
            }
            if !addr.contains(':') {
                return Err(format!("{s}: expected host:port after the node id"));
            }
            Ok(Self::Tcp {
                node_id: id,
                addr: addr.to_owned(),
            })
        } else if let Some(path) = s.strip_prefix("unix://") {
            Ok(Self::Unix(PathBuf::from(path)))
        } else {
            Err(format!(
                "{s}: expected tcp://<node id>@host:port or unix:///path"
            ))
        }
    }

    /// The identity the policy knows this node by: its node id, or the socket URL.
    pub fn identity(&self) -> String {
        match self {
            Self::Tcp { node_id, .. } => node_id.clone(),
            Self::Unix(p) => format!("unix://{}", p.display()),
        }
    }

    /// The node's label in logs and metrics.
    pub fn label(&self) -> String {
        match self {
            Self::Tcp { node_id, addr } => format!("tcp://{node_id}@{addr}"),
            Self::Unix(p) => format!("unix://{}", p.display()),
        }
    }
}
