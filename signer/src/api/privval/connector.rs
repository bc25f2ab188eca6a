//! The privval connector: the signer dials every configured CometBFT node
//! (`priv_validator_laddr`) and answers its requests through the pipeline —
//! the same policy, slashing database (height/round/step, re-serving the
//! recorded message) and audit log as every other frontend. All nodes of a chain
//! stay connected at once; a primary and a backup asking for the same vote
//! get the recorded message signed again, and conflicting requests are refused.
//!
//! Transport: `tcp://<node id>@host:port` runs SecretConnection (the
//! tendermint-p2p crate, as tmkms does) and refuses a node whose key does
//! not hash to the configured node id; `unix:///path` is a plain Unix
//! socket. Messages are uvarint-length-delimited privval protobufs (codec in
//! [`super`]). One thread per node: a node asks one thing at a time.
//!
//! Refusals go back as `RemoteSignerError` with these codes:
//! 1 invalid request, 2 double sign (slashing protection refused),
//! 3 not allowed by policy or unknown chain/key, 4 signer unavailable.
//!
//! One concept, the connection to a node: dial (TCP + SecretConnection or
//! Unix socket), frame, answer each request through the pipeline on the
//! connection's own thread, redial with backoff; the wire codec is
//! `codec.rs`, every check is the pipeline's.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{PubKey, RemoteError, Request, Response, WireProposal, WireVote};
use crate::backend::{Key, Scheme};
use crate::cometbft::ProtocolVersion;
pub use crate::cometbft::node::NodeAddr;
use crate::policy::ClientId;
use slashing_db::ChainId;

use crate::pipeline::{self, Message, Refusal, Signature};
use crate::pool::Pool;
use crate::tls::identity::PeerIdentity;

/// Largest privval message accepted (a proposal with its block id is tiny).
const MAX_FRAME: usize = 64 * 1024;

/// Remote-signer error codes (see the module documentation).
pub mod code {
    /// Malformed or impossible request.
    pub const INVALID: i32 = 1;
    /// Slashing protection refused: signing would be a double sign.
    pub const DOUBLE_SIGN: i32 = 2;
    /// Not allowed by policy, or a chain or key this signer does not serve.
    pub const NOT_ALLOWED: i32 = 3;
    /// The signer cannot sign right now (database, backend, overload).
    pub const UNAVAILABLE: i32 = 4;
}

/// The node id of an Ed25519 public key.
pub fn node_id(public_key: &[u8; 32]) -> String {
    hex::encode(Sha256::digest(public_key).get(..20).unwrap_or_default())
}

/// One chain as the connector serves it.
#[derive(Debug, Clone)]
pub struct Chain {
    /// Chain id.
    pub chain_id: String,
    /// Protocol generation.
    pub version: ProtocolVersion,
    /// The consensus public key.
    pub key: PubKey,
    /// Sign vote extensions.
    pub sign_extensions: bool,
    /// Highest height signed.
    pub max_height: Option<i64>,
    /// A consensus key rotation: from this height on, this key signs the
    /// chain and `key` is not used for it.
    pub next: Option<(PubKey, i64)>,
    /// The highest height this signer signed the chain at, shared by the
    /// chain's node threads (and started from the slashing database): the
    /// key `PubKey` answers is the one for the height after it.
    pub highest: Arc<std::sync::atomic::AtomicI64>,
}

impl Chain {
    /// The key that signs the chain at `height`.
    pub fn key_at(&self, height: i64) -> PubKey {
        match self.next {
            Some((next, from)) if height >= from => next,
            _ => self.key,
        }
    }

    /// The key for the next height: what `PubKey` answers. CometBFT asks it
    /// again after each commit, so a node moves to the new key by itself at
    /// the switch height.
    fn current_key(&self) -> PubKey {
        self.key_at(
            self.highest
                .load(std::sync::atomic::Ordering::Relaxed)
                .saturating_add(1),
        )
    }

    fn signed_at(&self, height: i64) {
        self.highest
            .fetch_max(height, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What every node thread needs.
#[derive(Clone)]
pub struct Context {
    /// The pipeline.
    pub pipeline: Arc<pipeline::Pipeline>,
    /// The worker pool (privval signs on its own threads; it stops with the pool).
    pub pool: Arc<Pool>,
    /// The signer's SecretConnection identity (Ed25519 seed).
    pub identity: Option<Arc<Zeroizing<[u8; 32]>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("privval::Context")
    }
}

/// The consensus public key of a loaded key, as privval sends it.
pub fn pub_key_of(key: &Key) -> Option<PubKey> {
    let pk = key.public_key();
    match key.scheme() {
        Scheme::Ed25519 => pk.try_into().ok().map(PubKey::Ed25519),
        Scheme::Secp256k1 => pk.try_into().ok().map(PubKey::Secp256k1),
        Scheme::Bls => None,
    }
}

fn public_key_bytes(k: &PubKey) -> Vec<u8> {
    match k {
        PubKey::Ed25519(b) => b.to_vec(),
        PubKey::Secp256k1(b) => b.to_vec(),
    }
}

fn remote(code: i32, description: impl Into<String>) -> RemoteError {
    RemoteError {
        code,
        description: description.into(),
    }
}

pub(crate) fn refusal_error(r: &Refusal) -> RemoteError {
    let code = match r {
        Refusal::Slashable(_) => code::DOUBLE_SIGN,
        Refusal::NotAllowed(_)
        | Refusal::UnknownKey
        | Refusal::OutOfScope(_)
        | Refusal::KeyDisabled(_)
        | Refusal::PolicyViolation(_) => code::NOT_ALLOWED,
        Refusal::InvalidRequest(_) => code::INVALID,
        Refusal::BackendUnavailable(_) | Refusal::RateLimited(_) => code::UNAVAILABLE,
    };
    remote(code, r.client_message())
}

/// Reads one uvarint-delimited message; `Ok(None)` at a clean end of stream.
/// (Public for the tests' node: the other side of the same protocol.)
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        match r.read(&mut b)? {
            0 if i == 0 => return Ok(None),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ => {}
        }
        len |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > MAX_FRAME {
                return Err(std::io::Error::other(format!(
                    "frame of {len} bytes (at most {MAX_FRAME})"
                )));
            }
            let mut buf = vec![0u8; len];
            r.read_exact(&mut buf)?;
            return Ok(Some(buf));
        }
    }
    Err(std::io::Error::other("length prefix longer than 10 bytes"))
}

/// SecretConnection's payload per encrypted frame (tendermint-p2p's
/// `DATA_MAX_SIZE`).
const SECRET_FRAME_DATA: usize = 1024;

/// Reads a SecretConnection one whole frame at a time.
///
/// tendermint-p2p 0.41's `Read` panics when the caller's buffer is smaller
/// than the decrypted frame (it copies the rest into an empty buffer). Every
/// read here asks for a full frame's worth, and hands it out from a buffer
/// of our own; writes pass through.
pub struct FrameReader<S> {
    inner: S,
    buf: Box<[u8; SECRET_FRAME_DATA]>,
    start: usize,
    end: usize,
}

impl<S> FrameReader<S> {
    /// Wraps a connection.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buf: Box::new([0; SECRET_FRAME_DATA]),
            start: 0,
            end: 0,
        }
    }
}

impl<S> std::fmt::Debug for FrameReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameReader")
    }
}

impl<S: Read> Read for FrameReader<S> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = self.inner.read(self.buf.as_mut_slice())?;
        }
        let available = self.buf.get(self.start..self.end).unwrap_or_default();
        let n = available.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), available.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.start += n;
        Ok(n)
    }
}

impl<S: Write> Write for FrameReader<S> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.inner.write(data)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes one uvarint-delimited message.
pub fn write_frame(w: &mut impl Write, msg: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(msg.len() + 5);
    let mut n = msg.len() as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(msg);
    w.write_all(&out)?;
    w.flush()
}

/// Serves one node forever: connect, answer, reconnect with backoff and jitter.
pub fn run_node(ctx: Context, chain: Chain, node: NodeAddr) {
    let label = node.label();
    let metrics = ctx.pipeline.metrics().clone();
    let labels = vec![("chain", chain.chain_id.clone()), ("node", label.clone())];
    let mut attempt: u32 = 0;
    loop {
        let started = Instant::now();
        let outcome = match &node {
            NodeAddr::Unix(path) => UnixStream::connect(path)
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    metrics.privval_connected.get_or_create(&labels).set(1);
                    tracing::info!(node = %label, chain = %chain.chain_id, "privval: connected");
                    serve(&ctx, &chain, &node, s)
                }),
            NodeAddr::Tcp { node_id, addr } => connect_tcp(&ctx, node_id, addr).and_then(|s| {
                metrics.privval_connected.get_or_create(&labels).set(1);
                tracing::info!(node = %label, chain = %chain.chain_id, "privval: connected (SecretConnection)");
                serve(&ctx, &chain, &node, s)
            }),
        };
        metrics.privval_connected.get_or_create(&labels).set(0);
        match outcome {
            Ok(()) => tracing::info!(node = %label, "privval: the node closed the connection"),
            Err(e) => {
                metrics.privval_failures.get_or_create(&labels).inc();
                tracing::warn!(node = %label, error = %e, "privval: connection failed");
            }
        }
        // A session that lasted resets the backoff; quick failures double it.
        if started.elapsed() > Duration::from_secs(10) {
            attempt = 0;
        }
        let base = Duration::from_millis(100).saturating_mul(1 << attempt.min(8));
        let base = base.min(Duration::from_secs(10));
        let mut r = [0u8; 2];
        let _ = getrandom::fill(&mut r);
        let jitter = base.mul_f64(f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX) / 2.0);
        attempt = attempt.saturating_add(1);
        std::thread::sleep(base + jitter);
    }
}

fn connect_tcp(
    ctx: &Context,
    node_id: &str,
    addr: &str,
) -> Result<FrameReader<tendermint_p2p::secret_connection::SecretConnection<TcpStream>>, String> {
    use tendermint_p2p::secret_connection::{SecretConnection, Version};
    let seed = ctx
        .identity
        .as_ref()
        .ok_or("no privval identity key configured")?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    // The handshake must not hang on a silent peer; afterwards reads block
    // (a timeout inside an encrypted frame would desynchronise the stream).
    let control = tcp.try_clone().map_err(|e| e.to_string())?;
    control
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let key = ed25519_consensus::SigningKey::from(**seed.as_ref());
    let conn = SecretConnection::new(tcp, key, Version::V0_34).map_err(|e| e.to_string())?;
    control.set_read_timeout(None).map_err(|e| e.to_string())?;
    let peer = conn
        .remote_pubkey()
        .peer_id()
        .to_string()
        .to_ascii_lowercase();
    if peer != node_id {
        return Err(format!(
            "the node at {addr} is {peer}, not the configured {node_id}: refused"
        ));
    }
    Ok(FrameReader::new(conn))
}

/// Answers requests until the node goes away or misbehaves.
fn serve(
    ctx: &Context,
    chain: &Chain,
    node: &NodeAddr,
    mut s: impl Read + Write,
) -> Result<(), String> {
    let identity = PeerIdentity {
        uris: vec![node.identity()],
        dns_names: Vec::new(),
        fingerprint: [0; 32],
    };
    loop {
        let frame = match read_frame(&mut s) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let started = Instant::now();
        let request = super::decode_request(chain.version, &frame)
            .map_err(|e| format!("undecodable request, disconnecting: {e}"))?;
        let signs = !matches!(request, Request::PubKey { .. } | Request::Ping);
        let response = answer(ctx, chain, &identity, request);
        let answered = Instant::now();
        let bytes = super::encode_response(chain.version, &response).map_err(|e| e.to_string())?;
        write_frame(&mut s, &bytes).map_err(|e| e.to_string())?;
        if signs {
            let metrics = ctx.pipeline.metrics();
            metrics.stage("total", answered.duration_since(started));
            metrics.stage("reply", answered.elapsed());
        }
    }
}

/// Runs one item through the pipeline on this connection's own thread.
///
/// Not through the worker pool: a node sends one request and waits for its
/// answer, so a queue batches nothing here and costs two thread hand-offs
/// per vote (~25 µs in the queue and ~15 µs waking the reader on this VM:
/// docs/performance.md, issue 21). The pipeline may be called from any
/// thread; the slashing database orders writers and group-commits
/// concurrent ones, so nodes of one chain still share commits with each
/// other and with the pool's batches. The threads are one per configured
/// node, so they add no unbounded concurrency; once shutdown begins
/// they refuse, as the pool does.
fn sign(ctx: &Context, item: pipeline::Request) -> Result<Signature, RemoteError> {
    if !ctx.pool.accepting() {
        ctx.pipeline
            .metrics()
            .request("privval", "any", "overloaded");
        return Err(remote(code::UNAVAILABLE, "the signer is stopping"));
    }
    ctx.pipeline
        .sign("privval", item)
        .map_err(|r| refusal_error(&r))
}

/// A request whose chain id is over CometBFT's 50 bytes: refused (and
/// audited) by the pipeline as an invalid request.
fn too_long(request: &'static str) -> Message {
    Message::Invalid {
        request,
        reason: crate::cometbft::CometError::ChainId.to_string(),
    }
}

fn answer(ctx: &Context, chain: &Chain, identity: &PeerIdentity, request: Request) -> Response {
    let wrong_chain = |asked: &str| {
        remote(
            code::NOT_ALLOWED,
            format!("this signer serves chain {}, not {asked}", chain.chain_id),
        )
    };
    let client = ctx.pipeline.identify(identity);
    // Who asks; what the connection may ask (this chain, up to its
    // max_height) the pipeline checks, audits and counts like any refusal.
    let admit = || -> Result<ClientId, RemoteError> {
        client
            .clone()
            .map_err(|e| remote(code::NOT_ALLOWED, e.to_string()))
    };
    let scope = Some(pipeline::Scope {
        chain_id: chain.chain_id.clone(),
        max_height: chain.max_height,
    });
    match request {
        Request::Ping => Response::Ping,
        Request::PubKey { chain_id } => Response::PubKey(if chain_id == chain.chain_id {
            Ok(chain.current_key())
        } else {
            Err(wrong_chain(&chain_id))
        }),
        Request::SignVote {
            chain_id,
            vote,
            skip_extension_signing,
        } => Response::SignedVote((move || {
            let client = admit()?;
            let height = vote.vote.height;
            let signature = sign(
                ctx,
                pipeline::Request {
                    client,
                    public_key: pipeline::KeyId::new(public_key_bytes(&chain.key_at(height))),
                    message: match ChainId::new(chain_id) {
                        Some(chain_id) => Message::CometVote {
                            version: chain.version,
                            chain_id,
                            vote: vote.vote.clone(),
                            sign_extension: chain.sign_extensions && !skip_extension_signing,
                        },
                        None => too_long("cometbft.vote"),
                    },
                    scope: scope.clone(),
                },
            )?;
            let Signature::CometBft {
                signature,
                timestamp,
                extension_signature,
            } = signature
            else {
                return Err(remote(code::INVALID, "unexpected signature kind"));
            };
            chain.signed_at(height);
            let mut signed = vote.vote.clone();
            signed.timestamp = timestamp;
            Ok(WireVote {
                vote: signed,
                validator_address: vote.validator_address.clone(),
                validator_index: vote.validator_index,
                signature,
                extension_signature: extension_signature.unwrap_or_default(),
            })
        })()),
        Request::SignProposal { chain_id, proposal } => Response::SignedProposal((move || {
            let client = admit()?;
            let height = proposal.proposal.height;
            let signature = sign(
                ctx,
                pipeline::Request {
                    client,
                    public_key: pipeline::KeyId::new(public_key_bytes(&chain.key_at(height))),
                    message: match ChainId::new(chain_id) {
                        Some(chain_id) => Message::CometProposal {
                            chain_id,
                            proposal: proposal.proposal.clone(),
                        },
                        None => too_long("cometbft.proposal"),
                    },
                    scope: scope.clone(),
                },
            )?;
            let Signature::CometBft {
                signature,
                timestamp,
                ..
            } = signature
            else {
                return Err(remote(code::INVALID, "unexpected signature kind"));
            };
            chain.signed_at(height);
            let mut signed = proposal.proposal.clone();
            signed.timestamp = timestamp;
            Ok(WireProposal {
                wire_type: proposal.wire_type,
                proposal: signed,
                signature,
            })
        })()),
        Request::SignBytes { value } => Response::SignBytes((|| {
            // The request names no chain: the connection's is implied.
            let client = admit()?;
            let signature = sign(
                ctx,
                pipeline::Request {
                    client,
                    public_key: pipeline::KeyId::new(public_key_bytes(&chain.current_key())),
                    message: Message::CometRaw(value),
                    scope: scope.clone(),
                },
            )?;
            Ok(signature.bytes().to_vec())
        })()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_parse_and_bad_ones_say_why() {
        let id = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            NodeAddr::parse(&format!("tcp://{id}@10.0.0.1:26659")),
            Ok(NodeAddr::Tcp {
                node_id: id.into(),
                addr: "10.0.0.1:26659".into()
            })
        );
        assert_eq!(
            NodeAddr::parse("unix:///run/node.sock"),
            Ok(NodeAddr::Unix("/run/node.sock".into()))
        );
        assert!(NodeAddr::parse("tcp://10.0.0.1:26659").is_err());
        assert!(NodeAddr::parse("tcp://abc@10.0.0.1:26659").is_err());
        assert!(NodeAddr::parse("http://x").is_err());
    }

    #[test]
    fn frames_are_uvarint_delimited() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &[7u8; 300]).unwrap_or_default();
        assert_eq!(buf.get(..2), Some(&[0xac, 0x02][..]));
        let mut r = buf.as_slice();
        assert_eq!(read_frame(&mut r).unwrap_or_default(), Some(vec![7u8; 300]));
        assert_eq!(read_frame(&mut r).unwrap_or_default(), None);
        let huge = [0xff, 0xff, 0xff, 0x7f];
        assert!(read_frame(&mut &huge[..]).is_err());
    }
}
