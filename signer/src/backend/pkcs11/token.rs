//! One PKCS#11 token and its session pool.
//!
//! Each session belongs to one thread (cryptoki's `Session` is `Send` but not
//! `Sync`, and a shared session serialises the token's work). Callers hand
//! a job to the pool and wait at most until their deadline: an HSM call that
//! hangs cannot hang a request. The thread stuck in it is written off (it
//! leaves when the call returns) and a fresh one takes its place, up to a
//! bound. Threads re-open their session and log in again after the errors
//! that mean the session or device went away, retrying the job once; idle
//! sessions are kept alive with `C_GetSessionInfo` for tokens that drop them.
//!
//! One concept, a token and its session threads: login, the job queue, the
//! re-open and retry rules and keep-alive act on the same state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::metrics::Metrics;

/// How a token is found among a module's slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// By `CKA_LABEL` of the token (trailing blanks ignored).
    Label(String),
    /// By serial number.
    Serial(String),
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Label(l) => write!(f, "with label {l:?}"),
            Self::Serial(s) => write!(f, "with serial {s:?}"),
        }
    }
}

/// How a key object is found on a token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Locator {
    /// By `CKA_LABEL`.
    Label(String),
    /// By `CKA_ID`.
    Id(Vec<u8>),
}

impl Locator {
    pub(super) fn attribute(&self) -> Attribute {
        match self {
            Self::Label(l) => Attribute::Label(l.as_bytes().to_vec()),
            Self::Id(id) => Attribute::Id(id.clone()),
        }
    }
}

impl std::fmt::Display for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Label(l) => write!(f, "label {l:?}"),
            Self::Id(id) => write!(f, "id {}", hex::encode(id)),
        }
    }
}

/// The signing mechanisms the pool runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    /// `CKM_EDDSA`, pure Ed25519.
    Eddsa,
    /// `CKM_ECDSA` over a digest we computed.
    Ecdsa,
}

/// A PKCS#11 failure in words: the function and the `CKR_` name.
pub fn describe(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("{function}: {}", ckr_name(*rv)),
        other => other.to_string(),
    }
}

/// `DeviceError` → `CKR_DEVICE_ERROR`.
pub fn ckr_name(rv: RvError) -> String {
    let mut out = String::from("CKR_");
    for (i, c) in format!("{rv:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Errors after which the session (or the whole device) is gone: re-open,
/// log in again, retry once.
fn session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::DeviceError
                | RvError::UserNotLoggedIn
                | RvError::CryptokiNotInitialized,
            _
        )
    )
}

/// Pool settings.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Sessions (threads) per token.
    pub sessions: usize,
    /// Idle sessions are probed this often.
    pub keepalive: Duration,
}

/// Why a token is marked down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Down {
    /// An operation failed (the token answers): still worth trying.
    Failing,
    /// No session could be opened: fail fast until a session thread gets
    /// through again (or, after [`HALF_OPEN_AFTER`], one request tries).
    Unreachable,
}

#[derive(Debug)]
struct Health {
    down: Option<(Down, String)>,
    last_failure: Option<Instant>,
}

/// A job's life: queued → running → done; the caller moves it to
/// `ABANDONED` when it stops waiting.
const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
const ABANDONED: u8 = 3;

struct Job {
    state: Arc<AtomicU8>,
    locator: Arc<Locator>,
    mech: Mech,
    data: Vec<u8>,
    deadline: Instant,
    reply: mpsc::SyncSender<Result<Vec<u8>, String>>,
}

/// A token: where it is, how to log in, its sessions and its health.
pub struct Token {
    /// The name operators gave it (logs, metrics, `tokens = [...]`).
    pub name: String,
    ctx: Pkcs11,
    selector: Selector,
    pin: Zeroizing<String>,
    settings: PoolSettings,
    jobs: mpsc::Sender<Job>,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    /// Threads written off after a timeout and not yet returned.
    stuck: AtomicUsize,
    health: Mutex<Health>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

/// How long an unreachable token fails fast before a request may try it.
pub const HALF_OPEN_AFTER: Duration = Duration::from_millis(500);

/// Written-off threads allowed per session before no more are replaced.
const MAX_STUCK_PER_SESSION: usize = 4;

impl Token {
    /// A token on `ctx`; its session threads start with [`Token::start`].
    pub fn new(
        name: String,
        ctx: Pkcs11,
        selector: Selector,
        pin: Zeroizing<String>,
        settings: PoolSettings,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        let (jobs, queue) = mpsc::channel();
        Self {
            name,
            ctx,
            selector,
            pin,
            settings,
            jobs,
            queue: Arc::new(Mutex::new(queue)),
            stuck: AtomicUsize::new(0),
            health: Mutex::new(Health {
                down: None,
                last_failure: None,
            }),
            metrics,
        }
    }

    /// Starts the session threads.
    pub fn start(self: &Arc<Self>) {
        for _ in 0..self.settings.sessions.max(1) {
            self.spawn_session();
        }
        self.set_up_gauge();
    }

    fn spawn_session(self: &Arc<Self>) {
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("pkcs11-{}", self.name))
            .spawn(move || me.session_loop());
        if let Err(e) = spawned {
            tracing::error!(token = %self.name, error = %e, "cannot start a PKCS#11 session thread");
        }
    }

    /// The slot holding this token now (searched each time: a re-inserted
    /// token may come back elsewhere).
    pub fn slot(&self) -> Result<Slot, String> {
        let slots = self.ctx.get_slots_with_token().map_err(|e| describe(&e))?;
        for slot in slots {
            let Ok(info) = self.ctx.get_token_info(slot) else {
                continue;
            };
            let hit = match &self.selector {
                Selector::Label(l) => info.label().trim_end() == l,
                Selector::Serial(s) => info.serial_number().trim_end() == s,
            };
            if hit {
                return Ok(slot);
            }
        }
        Err(format!(
            "token {} not present (removed, or its slot is empty)",
            self.selector
        ))
    }

    /// Opens a session and logs in (an already logged-in token is fine: the
    /// login state is shared by the application's sessions).
    pub fn open_session(&self, read_write: bool) -> Result<Session, String> {
        let slot = self.slot()?;
        let session = if read_write {
            self.ctx.open_rw_session(slot)
        } else {
            self.ctx.open_ro_session(slot)
        }
        .map_err(|e| describe(&e))?;
        let pin = AuthPin::new(self.pin.as_str().into());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(describe(&e)),
        }
    }

    fn session_loop(self: &Arc<Self>) {
        let mut session: Option<Session> = None;
        let mut handles: HashMap<Arc<Locator>, ObjectHandle> = HashMap::new();
        let mut backoff = Duration::from_millis(50);
        loop {
            if session.is_none() {
                match self.open_session(false) {
                    Ok(s) => {
                        session = Some(s);
                        handles.clear();
                        backoff = Duration::from_millis(50);
                        self.recovered_unreachable();
                    }
                    Err(e) => {
                        let why = format!("cannot open a session: {e}");
                        self.mark_down(Down::Unreachable, why.clone());
                        // Whoever is waiting gets the reason now, not at
                        // their deadline.
                        if let Ok(queue) = self.queue.try_lock() {
                            while let Ok(job) = queue.try_recv() {
                                let _ = job.reply.send(Err(why.clone()));
                            }
                        }
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                }
            }
            let job = {
                let Ok(queue) = self.queue.lock() else { return };
                queue.recv_timeout(self.settings.keepalive)
            };
            let Some(s) = session.as_ref() else { continue };
            match job {
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = s.get_session_info() {
                        tracing::info!(token = %self.name, error = %describe(&e), "idle session lost; re-opening");
                        session = None;
                    }
                }
                Ok(job) => {
                    if Instant::now() >= job.deadline
                        || job
                            .state
                            .compare_exchange(QUEUED, RUNNING, Ordering::SeqCst, Ordering::SeqCst)
                            .is_err()
                    {
                        continue; // its caller has given up
                    }
                    let started = Instant::now();
                    let mut result = run(s, &mut handles, &job);
                    if let Err(e) = &result
                        && session_lost(e)
                    {
                        self.count("retried");
                        tracing::warn!(token = %self.name, error = %describe(e), "session lost; re-opening and retrying once");
                        session = None;
                        handles.clear();
                        std::thread::sleep(Duration::from_millis(10));
                        if Instant::now() < job.deadline {
                            match self.open_session(false) {
                                Ok(fresh) => {
                                    result = run(&fresh, &mut handles, &job);
                                    session = Some(fresh);
                                }
                                Err(e) => {
                                    self.mark_down(Down::Unreachable, e.clone());
                                    let _ = job.reply.send(Err(e));
                                    continue;
                                }
                            }
                        }
                    }
                    let answer = match result {
                        Ok(sig) => {
                            self.mark_up();
                            if let Some(m) = &self.metrics {
                                m.backend_seconds
                                    .get_or_create(&self.labels())
                                    .observe(started.elapsed().as_secs_f64());
                            }
                            Ok(sig)
                        }
                        Err(e) => {
                            let e = describe(&e);
                            self.mark_down(Down::Failing, e.clone());
                            Err(e)
                        }
                    };
                    if job
                        .state
                        .compare_exchange(RUNNING, DONE, Ordering::SeqCst, Ordering::SeqCst)
                        .is_err()
                    {
                        // Written off while in the call; a fresh thread has
                        // taken this one's place.
                        self.stuck.fetch_sub(1, Ordering::SeqCst);
                        tracing::info!(token = %self.name, "a PKCS#11 call that timed out has returned; its session is closed");
                        return;
                    }
                    let _ = job.reply.send(answer);
                }
            }
        }
    }

    /// Signs with the key at `locator`, waiting at most until `deadline`.
    pub fn sign(
        self: &Arc<Self>,
        locator: &Arc<Locator>,
        mech: Mech,
        data: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, SignFailure> {
        if self.unreachable() {
            self.count("skipped");
            return Err(SignFailure::Error(format!(
                "token {} is down: {}",
                self.name,
                self.down_reason().unwrap_or_default()
            )));
        }
        let (reply, answer) = mpsc::sync_channel(1);
        let state = Arc::new(AtomicU8::new(QUEUED));
        let job = Job {
            state: Arc::clone(&state),
            locator: Arc::clone(locator),
            mech,
            data: data.to_vec(),
            deadline,
            reply,
        };
        if self.jobs.send(job).is_err() {
            return Err(SignFailure::Error("session pool stopped".into()));
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match answer.recv_timeout(wait) {
            Ok(Ok(sig)) => {
                self.count("ok");
                Ok(sig)
            }
            Ok(Err(e)) => {
                self.count("error");
                Err(SignFailure::Error(format!("token {}: {e}", self.name)))
            }
            Err(_) => {
                self.count("timeout");
                let was = state.swap(ABANDONED, Ordering::SeqCst);
                self.timed_out(wait, was == RUNNING);
                Err(SignFailure::Timeout)
            }
        }
    }

    /// A call did not come back in time. If a session thread is inside it,
    /// that thread is written off and replaced (it leaves when the call
    /// returns). The token is down until an operation succeeds, but is not
    /// skipped: one hung call says little about the next, and a request
    /// that waits is bounded by its deadline anyway.
    fn timed_out(self: &Arc<Self>, waited: Duration, thread_stuck: bool) {
        self.mark_down(
            Down::Failing,
            format!("no answer within {} ms", waited.as_millis()),
        );
        if !thread_stuck {
            return;
        }
        let stuck = self.stuck.fetch_add(1, Ordering::SeqCst) + 1;
        if stuck <= self.settings.sessions.max(1) * MAX_STUCK_PER_SESSION {
            self.spawn_session();
        } else {
            tracing::error!(token = %self.name, stuck, "too many PKCS#11 calls stuck; not replacing more sessions");
        }
    }

    fn labels(&self) -> Vec<(&'static str, String)> {
        vec![("backend", "pkcs11".into()), ("name", self.name.clone())]
    }

    fn count(&self, outcome: &'static str) {
        if let Some(m) = &self.metrics {
            let mut l = self.labels();
            l.push(("outcome", outcome.into()));
            m.backend_operations.get_or_create(&l).inc();
        }
    }

    fn set_up_gauge(&self) {
        if let Some(m) = &self.metrics {
            m.backend_up
                .get_or_create(&self.labels())
                .set(i64::from(self.is_up()));
        }
    }

    fn mark_down(&self, why: Down, reason: String) {
        if let Ok(mut h) = self.health.lock() {
            let was_up = h.down.is_none();
            // A failing operation does not hide that the token is unreachable.
            if !(why == Down::Failing && matches!(h.down, Some((Down::Unreachable, _)))) {
                h.down = Some((why, reason.clone()));
            }
            h.last_failure = Some(Instant::now());
            if was_up {
                tracing::warn!(token = %self.name, reason = %reason, "PKCS#11 token down");
            }
        }
        self.set_up_gauge();
    }

    fn mark_up(&self) {
        if let Ok(mut h) = self.health.lock()
            && h.down.take().is_some()
        {
            tracing::info!(token = %self.name, "PKCS#11 token up again");
        }
        self.set_up_gauge();
    }

    /// A session opened: the token is reachable again (an operation failure,
    /// if any, stands until an operation succeeds).
    fn recovered_unreachable(&self) {
        if let Ok(mut h) = self.health.lock()
            && matches!(h.down, Some((Down::Unreachable, _)))
        {
            h.down = None;
            tracing::info!(token = %self.name, "PKCS#11 token reachable again");
        }
        self.set_up_gauge();
    }

    /// True while no operation failure stands.
    pub fn is_up(&self) -> bool {
        self.health.lock().is_ok_and(|h| h.down.is_none())
    }

    /// Fail fast: unreachable, and the last failure is recent. After
    /// [`HALF_OPEN_AFTER`] one request goes through again (a circuit
    /// breaker's half-open state), besides the session threads' own probes.
    fn unreachable(&self) -> bool {
        self.health.lock().map_or(true, |h| {
            matches!(h.down, Some((Down::Unreachable, _)))
                && h.last_failure
                    .is_some_and(|t| t.elapsed() < HALF_OPEN_AFTER)
        })
    }

    /// Why the token is down, if it is.
    pub fn down_reason(&self) -> Option<String> {
        self.health
            .lock()
            .ok()
            .and_then(|h| h.down.as_ref().map(|(_, r)| r.clone()))
    }

    /// How long ago the last failure was (for half-open retries).
    pub fn since_failure(&self) -> Option<Duration> {
        self.health
            .lock()
            .ok()
            .and_then(|h| h.last_failure.map(|t| t.elapsed()))
    }
}

/// A failed pool operation.
#[derive(Debug)]
pub enum SignFailure {
    /// The token answered with an error (or was skipped as down).
    Error(String),
    /// No answer in time.
    Timeout,
}

/// Runs one job on a session.
fn run(
    s: &Session,
    handles: &mut HashMap<Arc<Locator>, ObjectHandle>,
    job: &Job,
) -> Result<Vec<u8>, CkError> {
    let key = match handles.get(&job.locator) {
        Some(h) => *h,
        None => {
            let found = s.find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                job.locator.attribute(),
            ])?;
            let h = *found.first().ok_or(CkError::Pkcs11(
                RvError::KeyHandleInvalid,
                cryptoki::context::Function::FindObjects,
            ))?;
            handles.insert(Arc::clone(&job.locator), h);
            h
        }
    };
    // Mechanisms are `!Send`: built here, on the session's thread.
    let mechanism = match job.mech {
        Mech::Eddsa => Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
        Mech::Ecdsa => Mechanism::Ecdsa,
    };
    s.sign(&mechanism, key, &job.data)
}
