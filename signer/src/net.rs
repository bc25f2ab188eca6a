//! Bounds on connections, shared by the listeners.
//!
//! Every accepted connection holds a file descriptor. Without bounds, idle
//! connections — on the metrics listener, or handshakes that never finish —
//! took every descriptor the process had and locked validator clients out.
//! Each listener gives connections a [`Slot`] from fixed-size [`Slots`]:
//!
//! - connections nobody has authenticated yet (TLS handshakes, the metrics
//!   listener, certificates that name no policy client) take slots that
//!   *evict the oldest holder* when all are taken: anyone can open them, so
//!   a flood must push out the flood, not lock out the next real client;
//! - connections of policy clients take slots that are simply refused when
//!   all are taken (a client's own connection is never pushed out by
//!   strangers).
//!
//! [`descriptor_budget`] raises the soft descriptor limit to the hard one at
//! start and says how many descriptors the listeners may use in all.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// A fixed number of connection slots.
#[derive(Debug)]
pub struct Slots {
    name: &'static str,
    capacity: usize,
    /// Holders, oldest first, with the sender that tells them to go.
    held: Mutex<VecDeque<(u64, Option<oneshot::Sender<()>>)>>,
    next: AtomicU64,
    evictions: AtomicU64,
}

/// One connection's place; gives it back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    evicted: Option<oneshot::Receiver<()>>,
}

impl Slots {
    /// `capacity` slots (at least one), named for logs.
    pub fn new(name: &'static str, capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            name,
            capacity: capacity.max(1),
            held: Mutex::new(VecDeque::new()),
            next: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        })
    }

    /// How many slots there are.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Slots taken now.
    pub fn held(&self) -> usize {
        self.held.lock().map_or(0, |h| h.len())
    }

    /// Holders told to go so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// A slot, always: when all are taken, the oldest holder is told to go
    /// (its [`Slot::evicted`] resolves) and this one takes its place.
    pub fn take_evicting(self: &Arc<Self>) -> Slot {
        let (tx, rx) = oneshot::channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut held) = self.held.lock() {
            while held.len() >= self.capacity {
                // (A slot that cannot be evicted is never in an evicting set.)
                if let Some((_, Some(go))) = held.pop_front() {
                    let _ = go.send(());
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
            }
            held.push_back((id, Some(tx)));
        }
        if self.evictions() > 0 && self.evictions().is_power_of_two() {
            tracing::warn!(
                listener = self.name,
                evicted = self.evictions(),
                capacity = self.capacity,
                "connection slots full: closing the oldest unauthenticated connections (a flood of idle connections?)"
            );
        }
        Slot {
            slots: self.clone(),
            id,
            evicted: Some(rx),
        }
    }

    /// A slot if one is free.
    pub fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut held = self.held.lock().ok()?;
        if held.len() >= self.capacity {
            return None;
        }
        held.push_back((id, None));
        Some(Slot {
            slots: self.clone(),
            id,
            evicted: None,
        })
    }
}

impl Slot {
    /// Resolves when the slot's connection must close to make room (never,
    /// for a slot from [`Slots::try_take`]).
    pub async fn evicted(&mut self) {
        std::future::poll_fn(|cx| self.poll_evicted(cx)).await
    }

    /// [`Slot::evicted`] for an I/O wrapper's `poll_read`.
    pub fn poll_evicted(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        use std::task::Poll;
        let Some(rx) = self.evicted.as_mut() else {
            return Poll::Pending;
        };
        match std::pin::Pin::new(rx).poll(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(()),
            // The sender went away without a word: never evicted.
            Poll::Ready(Err(_)) => {
                self.evicted = None;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut held) = self.slots.held.lock()
            && let Some(i) = held.iter().position(|(id, _)| *id == self.id)
        {
            held.remove(i);
        }
    }
}

/// How long an HTTP/1 peer may take (the HTTPS and metrics listeners).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// To send a request's headers — and, between requests, how long an
    /// idle keep-alive connection stays open.
    pub header: std::time::Duration,
    /// To send a request's body once its headers arrived.
    pub body: std::time::Duration,
}

/// Descriptors kept out of every listener's budget: the database, the audit
/// log, key files, backends' sockets, privval connections, the runtime.
pub const RESERVED_DESCRIPTORS: u64 = 128;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (the common soft
/// default, 1,024, is far below what a signer serving many clients needs)
/// and returns the descriptors the listeners may use in all.
pub fn descriptor_budget() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let before = limit.current;
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        match setrlimit(Resource::Nofile, limit) {
            Ok(()) => tracing::info!(
                from = ?before,
                to = ?limit.current,
                "file descriptors: soft limit raised to the hard limit"
            ),
            Err(e) => {
                limit.current = before;
                tracing::warn!(error = %e, "file descriptors: could not raise the soft limit");
            }
        }
    }
    // `None` is unlimited; count it as plenty.
    let soft = limit.current.unwrap_or(1 << 20);
    if soft < 4 * RESERVED_DESCRIPTORS {
        tracing::warn!(
            limit = soft,
            "file descriptors: the limit is very low; raise it (LimitNOFILE= in systemd, ulimit -n)"
        );
    }
    soft.saturating_sub(RESERVED_DESCRIPTORS).max(64)
}

/// How a listener divides its share of the descriptor budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// TLS handshakes in progress (evicting).
    pub handshakes: usize,
    /// Connections whose certificate names no policy client (evicting):
    /// they get a clear refusal per request, and cannot crowd out clients.
    pub strangers: usize,
    /// Connections of policy clients (refused when full).
    pub clients: usize,
}

impl ListenerLimits {
    /// Limits for one of `listeners` TLS listeners sharing `budget`
    /// descriptors with the metrics listener (which takes [`metrics_slots`]).
    pub fn share(budget: u64, listeners: u64) -> Self {
        let each =
            (budget.saturating_sub(metrics_slots(budget) as u64) / listeners.max(1)) as usize;
        let handshakes = (each / 4).clamp(8, 1024);
        let strangers = (each / 16).clamp(4, 64);
        Self {
            handshakes,
            strangers,
            clients: each
                .saturating_sub(handshakes + strangers)
                .clamp(16, 65_536),
        }
    }
}

/// Slots of the metrics listener (evicting): scrapes and probes are short.
pub fn metrics_slots(budget: u64) -> usize {
    (budget / 16).clamp(8, 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_evicting_set_tells_its_oldest_holder_to_go() {
        let slots = Slots::new("test", 2);
        let mut a = slots.take_evicting();
        let b = slots.take_evicting();
        assert_eq!(slots.held(), 2);
        let mut c = slots.take_evicting();
        assert_eq!((slots.held(), slots.evictions()), (2, 1));
        a.evicted().await; // resolves: a was the oldest
        drop(a);
        assert_eq!(slots.held(), 2, "a's place was already given to c");
        drop(b);
        assert_eq!(slots.held(), 1);
        let _d = slots.take_evicting();
        assert_eq!(
            (slots.held(), slots.evictions()),
            (2, 1),
            "a free slot evicts nobody"
        );
        let not_c = tokio::time::timeout(std::time::Duration::from_millis(10), c.evicted()).await;
        assert!(not_c.is_err(), "c was not told to go");
    }

    #[test]
    fn a_full_refusing_set_refuses_and_frees_on_drop() {
        let slots = Slots::new("test", 2);
        let a = slots.try_take().unwrap();
        let _b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        drop(a);
        assert!(slots.try_take().is_some());
        assert_eq!(slots.evictions(), 0);
    }

    #[test]
    fn the_budget_is_shared_without_overcommitting() {
        for budget in [64u64, 896, 10_000, 1 << 20] {
            for listeners in [1u64, 2] {
                let l = ListenerLimits::share(budget, listeners);
                let total = metrics_slots(budget) as u64
                    + listeners * (l.handshakes + l.strangers + l.clients) as u64;
                // Small budgets hit the floors; from a common 1,024 limit on,
                // everything fits.
                if budget >= 896 {
                    assert!(total <= budget, "{budget}/{listeners}: {l:?} = {total}");
                }
                assert!(
                    l.handshakes >= 8 && l.strangers >= 4 && l.clients >= 16,
                    "{l:?}"
                );
            }
        }
    }
}
