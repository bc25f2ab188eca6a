//! `signer reload --config FILE`: asks the running signer (its metrics
//! listener, from this host) to re-read TLS material, the policy and the key
//! sources, and prints what changed — keys added, removed (refused from now
//! on), unchanged, and sources that failed with why.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

type Error = Box<dyn std::error::Error>;

#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// The daemon's configuration (to find its metrics listener).
    #[arg(long)]
    config: PathBuf,
    /// The metrics listener to ask instead (`host:port`).
    #[arg(long)]
    metrics: Option<SocketAddr>,
}

/// One HTTP/1.1 exchange with the metrics listener: (status, body). While
/// the answer takes long, says so every few seconds.
fn exchange(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String), Error> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| {
        format!("the signer's metrics listener at {addr}: {e} (is the signer running? is [server] metrics_listen right?)")
    })?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
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
                eprintln!("reload running for {} s…", started.elapsed().as_secs());
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

pub fn run(a: ReloadArgs) -> Result<ExitCode, Error> {
    let addr = match a.metrics {
        Some(m) => m,
        None => {
            let c = signer::config::Config::load(&a.config)?;
            let mut m = c.server.metrics_listen;
            if m.port() == 0 {
                return Err(format!(
                    "{}: [server] metrics_listen has port 0 (the port is chosen at start): give --metrics HOST:PORT \
                     (the signer prints it in its `ready` line: metrics=…)",
                    a.config.display()
                )
                .into());
            }
            // A wildcard listener is reached on loopback (which is also
            // what [server] metrics_reload allows by default).
            if m.ip().is_unspecified() {
                m.set_ip(if m.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            m
        }
    };
    let (status, body) = exchange(addr, "POST", "/reload")?;
    print!("{body}");
    Ok(match status {
        200 => ExitCode::SUCCESS,
        409 => {
            eprintln!("nothing reloaded: ask again when the running reload has ended");
            ExitCode::FAILURE
        }
        _ => ExitCode::FAILURE,
    })
}
