//! A CometBFT node's side of privval, for tests: it listens (TCP with
//! SecretConnection, or a Unix socket) for the signer to dial in, then asks
//! it things with the signer's own privval codec and tendermint-p2p's
//! SecretConnection — the other side of the same protocol crates.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use signer::api::privval::connector::{node_id, read_frame, write_frame};
use signer::api::privval::{Request, Response, decode_response, encode_request};
use signer::cometbft::ProtocolVersion;

/// Where a test node listens.
#[derive(Debug)]
pub enum Listener {
    /// TCP, SecretConnection with this node key (Ed25519 seed).
    Tcp(TcpListener, [u8; 32]),
    /// A Unix socket.
    Unix(UnixListener, PathBuf),
}

/// A test node waiting for the signer.
#[derive(Debug)]
pub struct TestNode {
    listener: Listener,
    version: ProtocolVersion,
}

/// A connection from the signer.
pub struct NodeConn {
    stream: Box<dyn ReadWrite + Send>,
    version: ProtocolVersion,
}

impl std::fmt::Debug for NodeConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeConn")
    }
}

/// Read + Write.
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

impl TestNode {
    /// A TCP node with node key `seed` on a free port.
    pub fn tcp(seed: [u8; 32], version: ProtocolVersion) -> std::io::Result<Self> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        Ok(Self {
            listener: Listener::Tcp(l, seed),
            version,
        })
    }

    /// A node on a Unix socket at `path`.
    pub fn unix(path: PathBuf, version: ProtocolVersion) -> std::io::Result<Self> {
        let l = UnixListener::bind(&path)?;
        Ok(Self {
            listener: Listener::Unix(l, path),
            version,
        })
    }

    /// The address to put in the signer's configuration.
    pub fn address(&self) -> String {
        match &self.listener {
            Listener::Tcp(l, seed) => {
                let pk = ed25519_consensus::SigningKey::from(*seed)
                    .verification_key()
                    .to_bytes();
                let addr: SocketAddr = l
                    .local_addr()
                    .unwrap_or_else(|_| ([127, 0, 0, 1], 0).into());
                format!("tcp://{}@{addr}", node_id(&pk))
            }
            Listener::Unix(_, p) => format!("unix://{}", p.display()),
        }
    }

    /// The identity the signer's policy knows this node by.
    pub fn identity(&self) -> String {
        match &self.listener {
            Listener::Tcp(_, seed) => node_id(
                &ed25519_consensus::SigningKey::from(*seed)
                    .verification_key()
                    .to_bytes(),
            ),
            Listener::Unix(_, p) => format!("unix://{}", p.display()),
        }
    }

    /// Waits (up to `timeout`) for the signer to dial in.
    pub fn accept(&self, timeout: Duration) -> Result<NodeConn, String> {
        let deadline = Instant::now() + timeout;
        let stream: Box<dyn ReadWrite + Send> = match &self.listener {
            Listener::Tcp(l, seed) => {
                l.set_nonblocking(true).map_err(|e| e.to_string())?;
                let tcp = loop {
                    match l.accept() {
                        Ok((s, _)) => break s,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if Instant::now() > deadline {
                                return Err("the signer did not dial in".into());
                            }
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                };
                tcp.set_nonblocking(false).map_err(|e| e.to_string())?;
                let key = ed25519_consensus::SigningKey::from(*seed);
                let conn = tendermint_p2p::secret_connection::SecretConnection::new(
                    tcp,
                    key,
                    tendermint_p2p::secret_connection::Version::V0_34,
                )
                .map_err(|e| e.to_string())?;
                Box::new(signer::api::privval::connector::FrameReader::new(conn))
            }
            Listener::Unix(l, _) => {
                l.set_nonblocking(true).map_err(|e| e.to_string())?;
                let s = loop {
                    match l.accept() {
                        Ok((s, _)) => break s,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if Instant::now() > deadline {
                                return Err("the signer did not dial in".into());
                            }
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                };
                s.set_nonblocking(false).map_err(|e| e.to_string())?;
                Box::new(s)
            }
        };
        Ok(NodeConn {
            stream,
            version: self.version,
        })
    }
}

impl NodeConn {
    /// Sends a request and reads the response.
    pub fn ask(&mut self, request: &Request) -> Result<Response, String> {
        let bytes = encode_request(self.version, request).map_err(|e| e.to_string())?;
        write_frame(&mut self.stream, &bytes).map_err(|e| e.to_string())?;
        let frame = read_frame(&mut self.stream)
            .map_err(|e| e.to_string())?
            .ok_or("the signer closed the connection")?;
        decode_response(self.version, &frame).map_err(|e| e.to_string())
    }

    /// Sends raw bytes (garbage), then reports whether the signer hung up.
    pub fn send_garbage_and_see_hangup(&mut self, bytes: &[u8]) -> bool {
        if self
            .stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .is_err()
        {
            return true;
        }
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}
