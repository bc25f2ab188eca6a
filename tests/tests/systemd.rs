//! The systemd unit and the notify protocol (issue 19, part 3): the unit in
//! deploy/systemd/ passes `systemd-analyze verify` and keeps its sandbox
//! (`systemd-analyze security` exposure), and the daemon speaks `Type=notify`
//! to a real datagram socket: READY=1 once serving, WATCHDOG=1 at half the
//! watchdog period, RELOADING=1/READY=1 around a SIGHUP, STOPPING=1.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tests::daemon::{Daemon, Setup, signer_bin};

fn unit() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/signer.service")
}

fn systemd_analyze(args: &[&str]) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs systemd-analyze (Debian package systemd): {e}")
        });
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_unit_verifies_and_keeps_its_sandbox() {
    // verify needs the ExecStart binary to exist: point it at this build.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(unit()).unwrap();
    assert!(text.contains("Type=notify") && text.contains("WatchdogSec="));
    let local = dir.path().join("signer.service");
    std::fs::write(
        &local,
        text.replace("/usr/local/bin/signer", &signer_bin().display().to_string()),
    )
    .unwrap();
    let (ok, out) = systemd_analyze(&["verify", local.to_str().unwrap()]);
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify: {out}");

    let (_, out) = systemd_analyze(&["security", "--offline=yes", unit().to_str().unwrap()]);
    let level: f64 = out
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for signer.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {out}"));
    println!("systemd-analyze security: exposure {level} (0 = locked down, 10 = none)");
    // 1.6 when written; the network, AF_UNIX and CAP_IPC_LOCK are needed.
    assert!(
        level <= 2.0,
        "the unit's sandbox got weaker: exposure {level}\n{out}"
    );
}

fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notify message within the read timeout: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Reads messages (watchdog pings in between) until one starts with `prefix`.
fn until(socket: &UnixDatagram, prefix: &str) -> String {
    for _ in 0..10_000 {
        let m = next(socket);
        if m.starts_with(prefix) {
            return m;
        }
        assert_eq!(
            m, "WATCHDOG=1",
            "unexpected notify message before {prefix:?}"
        );
    }
    panic!("{prefix:?} never came");
}

#[test]
fn the_daemon_speaks_the_notify_protocol() {
    let setup = Setup::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    // Only a hang guard: a missing message fails instead of blocking.
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let env = [
        ("NOTIFY_SOCKET".to_owned(), path.display().to_string()),
        ("WATCHDOG_USEC".to_owned(), "100000".to_owned()),
    ];
    let d = Daemon::start_with_env(&setup.path("signer.toml"), &setup.path("daemon.log"), &env);
    let ready = next(&socket);
    assert!(
        ready.starts_with("READY=1\nSTATUS=serving: gRPC "),
        "{ready}"
    );
    // Pings at half the period, from the serving runtime.
    let mut pings = 0;
    while pings < 3 {
        assert_eq!(next(&socket), "WATCHDOG=1");
        pings += 1;
    }
    d.signal("HUP");
    let reloading = until(&socket, "RELOADING=1");
    assert_eq!(
        reloading,
        "RELOADING=1\nSTATUS=reloading TLS material, policy and keys"
    );
    let ready = until(&socket, "READY=1");
    assert_eq!(ready, "READY=1\nSTATUS=serving");
    d.signal("TERM");
    let stopping = until(&socket, "STOPPING=1");
    assert_eq!(
        stopping,
        "STOPPING=1\nSTATUS=stopping: answering the calls in flight"
    );
    assert!(
        d.log().contains("systemd watchdog: pinging every_ms=50"),
        "{}",
        d.log()
    );
    assert!(d.stop().success());
}
