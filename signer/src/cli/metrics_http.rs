//! Talking to a running signer's metrics listener from the command line
//! (`signer reload`, `signer status`): plain HTTP/1.1 on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error>;

/// The daemon's metrics listener: `--metrics`, or `[server] metrics_listen`
/// of the configuration (a wildcard address is reached on loopback).
pub(super) fn address(config: &Path, given: Option<SocketAddr>) -> Result<SocketAddr, Error> {
    if let Some(m) = given {
        return Ok(m);
    }
    let c = signer::config::Config::load(config)?;
    let mut m = c.server.metrics_listen;
    if m.port() == 0 {
        return Err(format!(
            "{}: [server] metrics_listen has port 0 (the port is chosen at start): give --metrics HOST:PORT \
             (the signer prints it in its `ready` line: metrics=…)",
            config.display()
        )
        .into());
    }
    // A wildcard listener is reached on loopback (which is also what
    // [server] metrics_reload allows by default).
    if m.ip().is_unspecified() {
        m.set_ip(if m.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(m)
}

/// One HTTP/1.1 exchange with the metrics listener: (status, body). While
/// the answer takes long, says so every few seconds.
pub(super) fn exchange(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String), Error> {
    exchange_with(addr, method, path, &[], "")
}

/// [`exchange`] with request headers and a body.
pub(super) fn exchange_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String), Error> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| {
        format!("the signer's metrics listener at {addr}: {e} (is the signer running? is [server] metrics_listen right?)")
    })?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let started = Instant::now();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                eprintln!(
                    "waiting for the signer's answer ({} s)…",
                    started.elapsed().as_secs()
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{addr}: not an HTTP answer"))?;
    // hyper answers a fixed-size body without chunking here.
    Ok((status, body.to_owned()))
}
