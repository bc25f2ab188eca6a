//! A TCP proxy that misbehaves on demand, between signer instances and
//! PostgreSQL: it can stall every connection (bytes held, delivered on
//! resume), blackhole them (bytes read and dropped, connections left open,
//! as a firewall that silently drops would), or reset them all at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::daemon::panic_str;

const PASS: u8 = 0;
const PAUSE: u8 = 1;
const BLACKHOLE: u8 = 2;

/// The proxy; it runs on a thread of its own until dropped.
#[derive(Debug)]
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    /// Bumped to reset every connection open at that moment.
    generation: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let mode = Arc::new(AtomicU8::new(PASS));
        let generation = Arc::new(AtomicU64::new(0));
        let (m, g) = (mode.clone(), generation.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::bind("127.0.0.1:0").await else {
                    return;
                };
                let _ = tx.send(listener.local_addr());
                let accept = async {
                    while let Ok((client, _)) = listener.accept().await {
                        let (m, g) = (m.clone(), g.clone());
                        tokio::spawn(async move {
                            // A new connection waits out a stall or blackhole first.
                            while m.load(Ordering::Relaxed) != PASS {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            if let Ok(server) = TcpStream::connect(upstream).await {
                                relay(client, server, m, g).await;
                            }
                        });
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
        });
        let addr = match rx.recv() {
            Ok(Ok(a)) => a,
            other => panic_str(&format!("the fault proxy did not start: {other:?}")),
        };
        Self {
            addr,
            mode,
            generation,
            stop: Some(stop),
        }
    }

    /// Bytes are held (not read) until [`FaultProxy::pass`].
    pub fn pause(&self) {
        self.mode.store(PAUSE, Ordering::Relaxed);
    }

    /// Bytes are read and dropped; connections stay open.
    pub fn blackhole(&self) {
        self.mode.store(BLACKHOLE, Ordering::Relaxed);
    }

    /// Back to forwarding.
    pub fn pass(&self) {
        self.mode.store(PASS, Ordering::Relaxed);
    }

    /// Resets (RST) every connection open now; new ones pass.
    pub fn reset_all(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    mode: Arc<AtomicU8>,
    generation: Arc<AtomicU64>,
) {
    let born = generation.load(Ordering::Relaxed);
    // Linger 0: dropping the socket sends RST, not FIN.
    #[allow(deprecated)]
    let _ = (
        client.set_linger(Some(Duration::ZERO)),
        server.set_linger(Some(Duration::ZERO)),
    );
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = pump(&mut cr, &mut sw, &mode, &generation, born);
    let down = pump(&mut sr, &mut cw, &mode, &generation, born);
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

/// Copies until EOF, an error or a reset; honours pause and blackhole.
async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    mode: &AtomicU8,
    generation: &AtomicU64,
    born: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if generation.load(Ordering::Relaxed) != born {
            return;
        }
        if mode.load(Ordering::Relaxed) == PAUSE {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            () = tokio::time::sleep(Duration::from_millis(20)) => continue,
        };
        if mode.load(Ordering::Relaxed) == BLACKHOLE {
            continue;
        }
        if to
            .write_all(buf.get(..n).unwrap_or_default())
            .await
            .is_err()
        {
            return;
        }
    }
}
