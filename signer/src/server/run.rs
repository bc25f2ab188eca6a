//! Start-up (configuration to a serving daemon), serving, and shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use slashing_db::GenesisRoot;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::keys::{Backends, load_keys_with, record_keys};
use super::readiness::record_expiry;
use super::reload::{Reloads, load_policy};
use super::routes::Routes;
use super::starting::KeyLoad;
use super::{BoxError, Overrides, Shared, http};
use crate::api::grpc::SignerService;
use crate::audit::AuditLog;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::pool::Pool;
use crate::tls::listener;
use crate::tls::{self, ReloadableConfig};

/// Starts one connector thread per configured CometBFT node.
fn start_privval(
    config: &Config,
    pipeline: &Arc<Pipeline>,
    pool: &Arc<Pool>,
) -> Result<(), BoxError> {
    use crate::api::privval::PubKey;
    use crate::api::privval::connector::{self, Chain, Context};
    if config.cometbft.is_empty() {
        return Ok(());
    }
    let identity = match &config.privval {
        Some(p) => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(&p.identity_key)
                    .map_err(|e| format!("{}: {e}", p.identity_key.display()))?,
            );
            let bytes = zeroize::Zeroizing::new(
                hex::decode(text.trim().trim_start_matches("0x"))
                    .map_err(|_| format!("{}: expected 64 hex digits", p.identity_key.display()))?,
            );
            let seed: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| format!("{}: expected 64 hex digits", p.identity_key.display()))?;
            Some(Arc::new(zeroize::Zeroizing::new(seed)))
        }
        None => None,
    };
    let ctx = Context {
        pipeline: pipeline.clone(),
        pool: pool.clone(),
        identity,
    };
    let keys = pipeline.keys();
    for c in &config.cometbft {
        let find = |field: &str, hex_key: &str| -> Result<(Vec<u8>, PubKey), String> {
            let bytes = hex::decode(hex_key.trim_start_matches("0x"))
                .map_err(|_| format!("cometbft {}: {field} is not hex", c.chain_id))?;
            let key = keys
                .entries()
                .find(|(pk, _)| *pk == bytes.as_slice())
                .map(|(_, k)| k)
                .and_then(connector::pub_key_of)
                .ok_or_else(|| {
                    format!(
                        "cometbft {}: no Ed25519 or secp256k1 key {hex_key} ({field}) is loaded",
                        c.chain_id
                    )
                })?;
            Ok((bytes, key))
        };
        let (old_bytes, key) = find("key", &c.key)?;
        let next = match (&c.next_key, c.switch_height) {
            (Some(n), Some(h)) => Some((find("next_key", n)?, h)),
            _ => None,
        };
        let highest = rotation_state(
            pipeline.db(),
            &c.chain_id,
            &old_bytes,
            next.as_ref().map(|((b, _), h)| (b.as_slice(), *h)),
        )?;
        if let Some(((_, _), h)) = &next {
            tracing::info!(
                chain = %c.chain_id,
                key = %c.key,
                next_key = c.next_key.as_deref().unwrap_or_default(),
                switch_height = h,
                highest_signed = highest,
                "privval: consensus key rotation configured"
            );
        }
        let chain = Chain {
            chain_id: c.chain_id.clone(),
            version: c.protocol,
            key,
            sign_extensions: c.sign_extensions,
            max_height: c.max_height,
            next: next.map(|((_, k), h)| (k, h)),
            highest: Arc::new(std::sync::atomic::AtomicI64::new(highest)),
        };
        for node in c.nodes.iter().cloned() {
            let (ctx, chain) = (ctx.clone(), chain.clone());
            std::thread::Builder::new()
                .name(format!("privval-{}", c.chain_id))
                .spawn(move || connector::run_node(ctx, chain, node))?;
        }
        tracing::info!(chain = %c.chain_id, nodes = c.nodes.len(), "privval: dialing nodes");
    }
    Ok(())
}

/// The highest height the chain was signed at by its key or its next key
/// (0: never). With a rotation, first makes sure the next key cannot sign
/// at or below the last height its predecessor signed, nor below the switch
/// height: its record is raised to the higher of the two, position only, so
/// that the two keys never both sign one height. Idempotent; never lowers.
fn rotation_state(
    db: &slashing_db::SlashingDb,
    chain_id: &str,
    key: &[u8],
    next: Option<(&[u8], i64)>,
) -> Result<i64, String> {
    use slashing_db::{ChainId, CometRecord, ConsensusKey, Height, Hrs, Step};
    let states = db
        .cometbft_states()
        .map_err(|e| format!("cometbft {chain_id}: reading the slashing database: {e}"))?;
    let last = |k: &[u8]| {
        states
            .iter()
            .filter(|(sk, c, _)| sk.as_bytes() == k && c.as_str() == chain_id)
            .map(|(_, _, r)| r.hrs.height.0)
            .max()
    };
    let old_last = last(key).unwrap_or(0);
    let Some((next, switch)) = next else {
        return Ok(i64::try_from(old_last).unwrap_or(i64::MAX));
    };
    let floor = old_last.max(u64::try_from(switch.saturating_sub(1)).unwrap_or(0));
    if floor > 0 {
        let chain = ChainId::new(chain_id.to_owned())
            .ok_or_else(|| format!("cometbft {chain_id}: chain id over 50 bytes"))?;
        let consensus = ConsensusKey::new(next.to_vec())
            .ok_or_else(|| format!("cometbft {chain_id}: next_key is not a consensus key"))?;
        let record = CometRecord {
            // Every round and step of the floor height is taken.
            hrs: Hrs {
                height: Height(floor),
                round: i32::MAX.unsigned_abs(),
                step: Step::Precommit,
            },
            sign_bytes: Vec::new(),
            signature: None,
        };
        let raised = db
            .import_cometbft_state(consensus, chain, record)
            .map_err(|e| format!("cometbft {chain_id}: raising next_key's record: {e}"))?;
        if raised {
            tracing::info!(chain = %chain_id, height = floor, "privval: next_key's record raised: it signs only above this height");
        }
    }
    let highest = last(key).into_iter().chain(last(next)).max().unwrap_or(0);
    Ok(i64::try_from(highest).unwrap_or(i64::MAX))
}

fn genesis_root(config: &Config) -> Result<Option<GenesisRoot>, String> {
    config
        .slashing
        .genesis_validators_root
        .as_deref()
        .map(|s| GenesisRoot::from_hex(s).map_err(|e| e.to_string()))
        .transpose()
}

/// SIGHUP, SIGTERM and SIGINT, caught from the start: a signal that
/// arrives while keys load (or between `ready` and serving) is kept and
/// acted on once serving, instead of killing the process uncleanly.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (inside the runtime).
    fn catch() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

async fn wait_for_signals(
    shared: Arc<Shared>,
    systemd: Option<Arc<super::systemd::Notifier>>,
    signals: Signals,
) -> Result<(), BoxError> {
    let Signals {
        mut hup,
        mut term,
        mut int,
    } = signals;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading TLS material, policy and keys");
                let (s, sd) = (shared.clone(), systemd.clone());
                // Not awaited: a long reload must not hold back SIGTERM.
                tokio::task::spawn_blocking(move || {
                    if let Some(n) = &sd {
                        n.notify("RELOADING=1\nSTATUS=reloading TLS material, policy and keys");
                    }
                    s.reload_on_signal();
                    if let Some(n) = &sd {
                        n.notify("READY=1\nSTATUS=serving");
                    }
                });
            }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(()); }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(()); }
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT. Prints `ready grpc=ADDR
/// metrics=ADDR` on stdout once both listeners accept.
pub fn run(mut config: Config, overrides: Overrides) -> Result<(), BoxError> {
    if let Some(a) = overrides.grpc_listen {
        config.server.grpc_listen = a;
    }
    if let Some(a) = overrides.metrics_listen {
        config.server.metrics_listen = a;
    }
    if let Some(listen) = overrides.http_listen {
        match &mut config.http {
            Some(h) => h.listen = listen,
            None => {
                config.http = Some(crate::config::Http {
                    listen,
                    known_clients_file: None,
                    insecure_plaintext: false,
                })
            }
        }
    }
    tls::install_crypto_provider();

    // Everything cheap first — policy, TLS material, the slashing database,
    // the audit log, the listening ports — so that a mistake in any of them
    // is reported at once, not after minutes of keystore decryption.
    let policy_file = config.policy.file.clone();
    let policy =
        load_policy(&policy_file).map_err(|e| format!("policy {}: {e}", policy_file.display()))?;
    // The Keymanager store is a key source: it must exist before keys load.
    if let Some(k) = &config.keymanager {
        super::keymanager::prepare(k, &policy)?;
    }
    let tls_files = config.tls.files();
    let tls = Arc::new(ReloadableConfig::load(tls_files.clone())?);
    let http_tls = match &config.http {
        Some(h) if !h.insecure_plaintext => Some(Arc::new(ReloadableConfig::load_for(
            tls_files.clone(),
            tls::ListenerTls {
                alpn: vec![b"http/1.1".to_vec()],
                known_clients: h.known_clients_file.clone(),
            },
        )?)),
        _ => None,
    };
    let network = config
        .ethereum
        .network()
        .ok_or("ethereum: invalid genesis_fork_version")?;
    let db = crate::storage::open(&config.slashing, genesis_root(&config)?)
        .map_err(|e| format!("slashing database: {e}"))?;
    let audit_config = config.audit.clone().ok_or("audit: no file")?;
    let audit_file = audit_config.file.clone();
    let anchor_name = audit_config.anchor_name();
    let anchored = check_audit_anchor(
        &db,
        &audit_file,
        &anchor_name,
        overrides.config_file.as_deref(),
    )?;
    let audit = AuditLog::open(&audit_file).map_err(|e| format!("audit log: {e}"))?;
    check_free(config.server.grpc_listen, "grpc listener")?;
    if let Some(h) = &config.http {
        check_free(h.listen, "http listener")?;
    }

    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.clamp(1, 4))
        .thread_name("signer-net")
        .enable_all()
        .build()?;
    let signals = {
        let _inside = runtime.enter();
        Signals::catch()?
    };

    // The operations listener answers from here on: alive, not ready, and
    // how far key loading has come (`signer status`, `/readyz`).
    let metrics = Arc::new(Metrics::new());
    let load = Arc::new(KeyLoad::new(&config.keys));
    let metrics_listener = runtime
        .block_on(TcpListener::bind(config.server.metrics_listen))
        .map_err(|e| format!("metrics listener {}: {e}", config.server.metrics_listen))?;
    let metrics_addr = metrics_listener.local_addr()?;
    // SQLite is this process's alone: `signer keys disable` asks the daemon.
    let control = match (&config.slashing.postgres, &config.slashing.database) {
        (None, Some(path)) => Some(super::control::Control::create(path, metrics_addr)?),
        _ => None,
    };
    // Descriptors: the soft limit raised, then shared between the listeners.
    let budget = crate::net::descriptor_budget();
    let ops = Arc::new(http::Ops::new(
        load.clone(),
        metrics.clone(),
        config.server.http_timeouts().header,
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let ops_task = runtime.spawn(http::serve(
        metrics_listener,
        ops.clone(),
        crate::net::Slots::new(
            "metrics listener connections",
            crate::net::metrics_slots(budget),
        ),
        stop_rx.clone(),
    ));
    let systemd = super::systemd::Notifier::from_env().map(Arc::new);
    tracing::info!(metrics = %metrics_addr, keys = load.progress().total, "loading keys (signer status shows the progress)");
    let reporter = runtime.spawn(report_progress(load.clone(), systemd.clone()));
    // A stop asked for while keys load (minutes with many keystores) is
    // honoured at once; the signals go back to serving afterwards.
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel::<()>();
    let token_file = control.as_ref().map(|c| c.file().to_owned());
    let watcher = runtime.spawn(async move {
        let mut signals = signals;
        let name = tokio::select! {
            _ = loaded_rx => return signals,
            _ = signals.term.recv() => "SIGTERM",
            _ = signals.int.recv() => "SIGINT",
        };
        tracing::info!("{name} while keys load: stopping before serving");
        if let Some(f) = token_file {
            let _ = std::fs::remove_file(f);
        }
        std::process::exit(0);
    });

    // At start every configured key must load: a signer running with fewer
    // keys than configured would miss duties silently.
    let backends = Backends::start(&config, &metrics)?;
    let mut memo = crate::backend::soft::keystore::KdfMemo::default();
    let start_cache = config
        .start_cache
        .clone()
        .map(|c| super::start_cache::StartCache::new(c, backends.clone()));
    if let Some(cache) = &start_cache {
        cache.prime(&mut memo);
    }
    let (keys, errors) = load_keys_with(&config.keys, &backends, &mut memo, &load);
    // Also when a key failed: what did open need no KDF run next time.
    if let Some(cache) = &start_cache {
        cache.store(&memo);
    }
    reporter.abort();
    let _ = loaded_tx.send(());
    let signals = runtime.block_on(watcher)?;
    if let Some(first) = errors.first() {
        return Err(format!("keys: {first} ({} key source error(s))", errors.len()).into());
    }
    record_keys(&metrics, &keys);
    let (from_memo, decrypted) = memo.last_round();
    tracing::info!(
        keys = keys.len(),
        took = %super::starting::human(load.progress().elapsed),
        keystores_decrypted = decrypted,
        keystores_from_cache = from_memo,
        "keys loaded"
    );
    let genesis_fork_version = network.genesis_fork_version;
    let mut pipeline = Pipeline::new(policy, keys, db, audit, network)
        .and_then(|p| p.with_audit_anchor(anchor_name, anchored))
        .map_err(|e| format!("audit log: {e}"))?
        .with_audit_flush_interval(audit_config.flush_interval())
        .with_metrics(metrics.clone());
    if let Some(cb) = &config.commit_boost {
        // A module whose client the policy does not know could never be served.
        let policy = pipeline.policy();
        if let Some(m) = cb
            .modules
            .iter()
            .find(|m| policy.client(&m.client).is_none())
        {
            return Err(format!(
                "commit_boost module {:?}: client {:?} is not a client of the policy ({}): add [clients.{}] with its certificate's identity, or fix the name",
                m.id,
                m.client,
                policy_file.display(),
                m.client
            )
            .into());
        }
        let settings = super::commit_boost::settings(cb, genesis_fork_version, &backends)?;
        pipeline = pipeline.with_commit_boost(settings);
        // Configured but granted nothing: the module would list no key and
        // sign nothing, which looks like an outage from its side.
        for m in &cb.modules {
            let granted = pipeline
                .list_keys(&crate::policy::ClientId::new(m.client.clone()))
                .iter()
                .any(|k| {
                    k.operations
                        .iter()
                        .any(|o| o.name().starts_with("commit_boost."))
                });
            if !granted {
                tracing::warn!(
                    module = m.id,
                    client = m.client,
                    "Commit-Boost module: the policy grants its client no commit_boost.* on any loaded key; get_pubkeys lists nothing and every request is refused (grant \"commit_boost\" in {})",
                    policy_file.display()
                );
            }
        }
    }
    let pipeline = Arc::new(pipeline);
    // Keys an operator took out of service refuse from the first request.
    pipeline
        .refresh_key_states(true)
        .map_err(|e| format!("slashing database: reading key states: {e}"))?;
    // Only a shared database can change under a running instance (SQLite is
    // held by this process alone).
    let key_states = match config.slashing.postgres {
        Some(_) => Some(KeyStatePoller::start(pipeline.clone())?),
        None => None,
    };
    record_expiry(&metrics, &tls_files);

    let pool = Arc::new(Pool::start(
        pipeline.clone(),
        workers,
        config.server.queue_capacity,
        config.server.max_batch,
    )?);

    start_privval(&config, &pipeline, &pool)?;

    let result = runtime.block_on(serve(
        config,
        workers,
        pipeline.clone(),
        pool.clone(),
        Loaded {
            tls,
            http_tls,
            tls_files,
            policy_file,
            backends,
            memo,
            start_cache,
            announce: overrides.announce.clone(),
            ops,
            ops_task,
            metrics_addr,
            budget,
            stop: (stop_tx, stop_rx),
            systemd,
            control,
            signals,
        },
    ));
    // In-flight calls have been answered; let the workers finish, then the
    // last reference to the pipeline closes the database (WAL checkpoint).
    pool.shutdown();
    if let Some(k) = key_states {
        k.stop();
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(pool);
    drop(pipeline);
    tracing::info!("stopped");
    result
}

/// Compares the audit log with its anchor in the slashing database before
/// anything is appended: a log that lost records, or was replaced, is not
/// continued (decision 0008). Returns the anchor to continue from.
fn check_audit_anchor(
    db: &slashing_db::SlashingDb,
    file: &Path,
    name: &str,
    config_file: Option<&Path>,
) -> Result<Option<slashing_db::AuditAnchor>, BoxError> {
    let anchored = db
        .audit_anchor(name)
        .map_err(|e| format!("slashing database: reading the audit log's anchor: {e}"))?;
    let check = crate::audit::check_anchor(file, anchored.as_ref())
        .map_err(|e| format!("audit log: {e}"))?;
    if check.is_ok() {
        tracing::info!(log = %file.display(), name, "audit log: {check}");
        return Ok(anchored);
    }
    let config =
        config_file.map_or_else(|| "<signer.toml>".to_owned(), |p| p.display().to_string());
    Err(format!(
        "audit log {}: {check}. The signer does not continue a log that lost records. \
         Keep what is left as evidence (move a broken file aside); once the loss is understood, \
         record it — an audited event — with `signer audit acknowledge --config {config} --reason \"…\"`, then start again",
        file.display()
    )
    .into())
}

/// Re-reads the key states (`signer keys disable|enable|retire`) from the
/// slashing database about once a second, so that a change made through
/// another instance or the CLI takes effect here.
struct KeyStatePoller {
    stop: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: std::thread::JoinHandle<()>,
}

/// How often the key states are read.
const KEY_STATE_INTERVAL: Duration = Duration::from_secs(1);

/// After a failed read, how long until the next: a stalled database must
/// not have signing batches queue behind this bookkeeping every second.
const KEY_STATE_RETRY: Duration = Duration::from_secs(10);

impl KeyStatePoller {
    fn start(pipeline: Arc<Pipeline>) -> Result<Self, BoxError> {
        let stop = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("signer-key-states".into())
            .spawn(move || {
                let mut failing = false;
                loop {
                    let Ok(g) = s.0.lock() else { return };
                    let wait = if failing { KEY_STATE_RETRY } else { KEY_STATE_INTERVAL };
                    let Ok((g, _)) = s.1.wait_timeout_while(g, wait, |stop| !*stop)
                    else {
                        return;
                    };
                    if *g {
                        return;
                    }
                    drop(g);
                    match pipeline.refresh_key_states(false) {
                        Ok(_) if failing => {
                            failing = false;
                            tracing::info!("key states: read from the slashing database again");
                        }
                        Ok(_) => {}
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(error = %e, "key states: the slashing database could not be read; the last states stay in force, retrying every 10 s");
                        }
                        Err(_) => {}
                    }
                }
            })?;
        Ok(Self { stop, thread })
    }

    fn stop(self) {
        if let Ok(mut g) = self.stop.0.lock() {
            *g = true;
        }
        self.stop.1.notify_all();
        let _ = self.thread.join();
    }
}

/// What `run` loaded and started before serving.
struct Loaded {
    tls: Arc<ReloadableConfig>,
    /// The HTTPS listener's TLS (none without `[http]` or in plaintext).
    http_tls: Option<Arc<ReloadableConfig>>,
    tls_files: tls::TlsFiles,
    policy_file: PathBuf,
    backends: Backends,
    /// The keystores decrypted at start, for the first reload to reuse.
    memo: crate::backend::soft::keystore::KdfMemo,
    /// `[start_cache]`, rewritten when a reload changes the keystores.
    start_cache: Option<super::start_cache::StartCache>,
    /// Said on standard error once serving ([`super::Overrides::announce`]).
    announce: Option<String>,
    /// The operations listener, answering since before the keys loaded.
    ops: Arc<http::Ops>,
    ops_task: tokio::task::JoinHandle<()>,
    metrics_addr: std::net::SocketAddr,
    /// File descriptors the listeners share.
    budget: u64,
    /// Turned true to stop every listener.
    stop: (watch::Sender<bool>, watch::Receiver<bool>),
    systemd: Option<Arc<super::systemd::Notifier>>,
    control: Option<super::control::Control>,
    signals: Signals,
}

/// Binds `addr` for a moment: a port already taken is reported before the
/// keys load rather than after. Port 0 (any free port) cannot be taken.
fn check_free(addr: std::net::SocketAddr, what: &str) -> Result<(), String> {
    if addr.port() == 0 {
        return Ok(());
    }
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| format!("{what} {addr}: {e}"))
}

/// Every 5 s while keys load: a log line, and systemd's status line (with
/// more start-up time granted while keys keep loading, so that a start with
/// thousands of keystores is not killed by `TimeoutStartSec`, and a stuck
/// one still is).
async fn report_progress(load: Arc<KeyLoad>, systemd: Option<Arc<super::systemd::Notifier>>) {
    const EVERY: Duration = Duration::from_secs(5);
    let mut tick = tokio::time::interval(EVERY);
    tick.tick().await;
    let mut last_seen = 0;
    loop {
        tick.tick().await;
        let p = load.progress();
        tracing::info!("loading keys: {}", p.line());
        if let Some(n) = &systemd {
            let seen = p.loaded + p.failed;
            let extend = if seen > last_seen {
                "\nEXTEND_TIMEOUT_USEC=60000000"
            } else {
                ""
            };
            last_seen = seen;
            n.notify(&format!("STATUS=loading keys: {}{extend}", p.line()));
        }
    }
}

/// HTTP/2 streams one gRPC connection may have open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;

async fn serve(
    config: Config,
    workers: usize,
    pipeline: Arc<Pipeline>,
    pool: Arc<Pool>,
    loaded: Loaded,
) -> Result<(), BoxError> {
    let Loaded {
        tls,
        http_tls,
        tls_files,
        policy_file,
        backends,
        memo,
        start_cache,
        announce,
        ops,
        ops_task,
        metrics_addr,
        budget,
        stop: (stop_tx, stop_rx),
        systemd,
        control,
        signals,
    } = loaded;
    let grpc_listener = TcpListener::bind(config.server.grpc_listen)
        .await
        .map_err(|e| format!("grpc listener {}: {e}", config.server.grpc_listen))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_listener = match &config.http {
        Some(h) => Some(
            TcpListener::bind(h.listen)
                .await
                .map_err(|e| format!("http listener {}: {e}", h.listen))?,
        ),
        None => None,
    };
    // The HTTP listener shares the server certificate and client CAs, speaks
    // HTTP/1.1 only, and may accept Web3Signer's known clients.
    let http_addr = http_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let max_wait = Duration::from_millis(config.server.max_queue_wait_ms);

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<proto::v1::signer_server::SignerServer<SignerService>>()
        .await;
    let shared = Arc::new(Shared {
        pipeline: pipeline.clone(),
        tls: tls.clone(),
        tls_files,
        policy_file,
        stopping: AtomicBool::new(false),
        health: health.clone(),
        pool: pool.clone(),
        max_wait,
        http_tls: http_tls.clone(),
        key_sources: config.keys.clone(),
        backends,
        reloads: Reloads::new(memo, start_cache),
        metrics_reload: config.server.metrics_reload,
        http_timeouts: config.server.http_timeouts(),
        privval_nodes: config
            .cometbft
            .iter()
            .map(|c| {
                let nodes = c.nodes.iter().map(|n| n.label()).collect();
                (c.chain_id.clone(), nodes)
            })
            .collect(),
        control,
        keymanager: config.keymanager.clone(),
        commit_boost: config.commit_boost.clone(),
    });
    let _ = shared.readiness();
    ops.serving(shared.clone());

    let tls_listeners = if http_listener.is_some() { 2 } else { 1 };
    let limits = crate::net::ListenerLimits::share(budget, tls_listeners);
    tracing::info!(
        descriptors = budget,
        handshakes = limits.handshakes,
        strangers = limits.strangers,
        clients = limits.clients,
        metrics = crate::net::metrics_slots(budget),
        "connection limits per listener"
    );
    let admit_pipeline = pipeline.clone();
    let admit: listener::Admit =
        Arc::new(move |peer: &listener::PeerInfo| admit_pipeline.identify(&peer.identity).is_ok());
    let incoming = listener::incoming(
        grpc_listener,
        tls,
        pipeline.metrics().clone(),
        limits,
        admit,
        stop_rx.clone(),
    );
    let service = SignerService::new(pipeline.clone(), pool, max_wait);
    let routes = Routes {
        health: health_service,
        signer: proto::v1::signer_server::SignerServer::new(service),
    };
    let mut grpc_stop = stop_rx.clone();
    let grpc = tokio::spawn(
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            // A peer that does not answer a keepalive ping is gone.
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            // Streams per connection: SignBatch carries up to 4,096 items,
            // so a client never needs many; unlimited (h2's default) let one
            // connection open thousands of half-sent requests.
            .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
            .serve_with_incoming_shutdown(
                routes,
                tokio_stream::wrappers::ReceiverStream::new(incoming),
                async move {
                    let _ = grpc_stop.changed().await;
                },
            ),
    );
    let web3signer = http_listener.map(|l| {
        tokio::spawn(crate::api::web3signer::serve(
            l,
            shared.clone() as Arc<dyn crate::api::web3signer::Host>,
            http_tls,
            limits,
            stop_rx,
        ))
    });

    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let http = http_addr.map(|a| format!(" http={a}")).unwrap_or_default();
        writeln!(out, "ready grpc={grpc_addr} metrics={metrics_addr}{http}")?;
        out.flush()?;
    }
    if let Some(a) = announce {
        eprintln!("{a}");
    }
    let http_log = http_addr.map_or_else(|| "off".to_owned(), |a| a.to_string());
    tracing::info!(grpc = %grpc_addr, metrics = %metrics_addr, http = %http_log, workers, "ready");
    let watchdog = systemd.as_ref().map(|n| {
        n.notify(&format!(
            "READY=1\nSTATUS=serving: gRPC {grpc_addr}, metrics {metrics_addr}{}",
            http_addr
                .map(|a| format!(", HTTPS {a}"))
                .unwrap_or_default()
        ));
        let n = n.clone();
        tokio::spawn(async move {
            let Some(every) = n.watchdog_interval() else {
                return;
            };
            tracing::info!(every_ms = every.as_millis(), "systemd watchdog: pinging");
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                n.notify("WATCHDOG=1");
            }
        })
    });

    let signals = wait_for_signals(shared.clone(), systemd.clone(), signals).await;
    if let Some(n) = &systemd {
        n.notify("STOPPING=1\nSTATUS=stopping: answering the calls in flight");
    }
    // The watchdog keeps pinging while calls in flight are answered; the
    // runtime's shutdown ends it.
    drop(watchdog);
    shared.stopping.store(true, Ordering::Relaxed);
    shared
        .health
        .set_not_serving::<proto::v1::signer_server::SignerServer<SignerService>>()
        .await;
    let _ = stop_tx.send(true);
    // tonic stops accepting and waits for in-flight calls to be answered.
    match tokio::time::timeout(Duration::from_secs(30), grpc).await {
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "gRPC server error"),
        Err(_) => tracing::warn!("in-flight calls did not finish within 30 s"),
        _ => {}
    }
    ops_task.abort();
    if let Some(w) = web3signer {
        // The accept loop has stopped; connections finish on the runtime.
        let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
    }
    signals
}
