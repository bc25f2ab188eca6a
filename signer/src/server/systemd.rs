//! systemd's notify protocol (`Type=notify`), written here rather than
//! pulled in: one datagram per state to the socket in `$NOTIFY_SOCKET`
//! (`READY=1` once every listener accepts, `RELOADING=1`/`READY=1` around a
//! SIGHUP reload, `STOPPING=1` at shutdown, `STATUS=…` for `systemctl
//! status`), and `WATCHDOG=1` at half of `$WATCHDOG_USEC` when the unit sets
//! `WatchdogSec=` — sent from the async runtime that serves the requests,
//! so a runtime that stalls stops the pings and systemd restarts the
//! daemon. Without `$NOTIFY_SOCKET` (not under systemd) everything here is
//! a no-op.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// The connection to systemd, when it asked for one.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
    /// namespace) and `$WATCHDOG_USEC` (honoured when `$WATCHDOG_PID` is
    /// unset or this process). `None` when not run by systemd.
    pub fn from_env() -> Option<Self> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_str()?;
        let addr = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            }
            None => std::os::unix::net::SocketAddr::from_pathname(path).ok()?,
        };
        let socket = UnixDatagram::unbound().ok()?;
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(Duration::from_micros);
        Some(Self {
            socket,
            addr,
            watchdog,
        })
    }

    /// Sends `state` (newline-separated `KEY=value` lines). Failures are
    /// logged once per call and otherwise ignored: systemd going away must
    /// not stop signing.
    pub fn notify(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.addr) {
            tracing::warn!(error = %e, state, "systemd notify failed");
        }
    }

    /// How often to send `WATCHDOG=1` (half the unit's `WatchdogSec=`).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }
}
