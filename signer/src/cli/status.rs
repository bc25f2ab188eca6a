//! `signer status --config FILE [--json]`: what the running signer sees, from
//! its metrics listener (`GET /status`) — readiness and why not, keys by
//! backend and those out of service, chains and their nodes, the slashing
//! database and its durability, the audit log's anchor, certificate expiry,
//! the last reload. Exit 0 when ready, 1 when not, 2 when it cannot be asked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

type Error = Box<dyn std::error::Error>;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The daemon's configuration (to find its metrics listener).
    #[arg(long)]
    config: PathBuf,
    /// The metrics listener to ask instead (`host:port`).
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Print the status document as JSON (for scripts).
    #[arg(long)]
    json: bool,
}

/// Certificates closer than this to expiry are flagged.
const WARN_DAYS: i64 = 14;

fn counts(v: &Value) -> String {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn date(unix: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    signer::audit::rfc3339(t)
        .get(..10)
        .unwrap_or_default()
        .to_owned()
}

fn seconds(s: u64) -> String {
    signer::server::starting::human(std::time::Duration::from_secs(s))
}

/// The human-readable page.
fn render(s: &Value) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    // Still loading its keys: how far it has come, nothing else to show yet.
    if let Some(k) = s.get("starting").map(|st| &st["keys"]) {
        let _ = writeln!(
            o,
            "signer {}: STARTING (not ready yet)",
            s["version"].as_str().unwrap_or("?")
        );
        let _ = write!(
            o,
            "  loading keys: {} of {} loaded, {} failed, {} so far",
            k["loaded"],
            k["total"],
            k["failed"],
            seconds(k["elapsed_seconds"].as_u64().unwrap_or(0))
        );
        if let Some(left) = k["left_seconds"].as_u64() {
            let _ = write!(o, ", about {} left", seconds(left));
        }
        o.push('\n');
        return o;
    }
    let ready = s["ready"].as_bool() == Some(true);
    let _ = writeln!(
        o,
        "signer {}: {}",
        s["version"].as_str().unwrap_or("?"),
        if ready { "READY" } else { "NOT READY" }
    );
    for c in s["checks"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or("?");
        match c["why"].as_str() {
            None => {
                let _ = writeln!(o, "  {name:<44} ok");
            }
            Some(why) => {
                let _ = writeln!(o, "  {name:<44} NOT OK: {why}");
            }
        }
    }
    let k = &s["keys"];
    let _ = writeln!(
        o,
        "keys: {} loaded ({}; {})",
        k["loaded"],
        counts(&k["by_scheme"]),
        counts(&k["by_backend"])
    );
    for d in k["out_of_service"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "  out of service: {} {} {} by {}: {}{}",
            d["key"].as_str().unwrap_or("?"),
            d["state"].as_str().unwrap_or("?"),
            d["at"].as_str().unwrap_or("?"),
            d["by"].as_str().unwrap_or("?"),
            d["reason"].as_str().unwrap_or(""),
            if d["loaded"].as_bool() == Some(true) {
                ""
            } else {
                " (not loaded here)"
            }
        );
    }
    for b in s["backends"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "backend {} {}: {}",
            b["backend"].as_str().unwrap_or("?"),
            b["target"].as_str().unwrap_or("?"),
            match b["why"].as_str() {
                None => "up".to_owned(),
                Some(why) => format!("DOWN ({why})"),
            }
        );
    }
    for c in s["chains"].as_array().into_iter().flatten() {
        let nodes: Vec<&Value> = c["nodes"].as_array().into_iter().flatten().collect();
        let up = nodes
            .iter()
            .filter(|n| n["connected"].as_bool() == Some(true))
            .count();
        let _ = writeln!(
            o,
            "chain {}: {up}/{} nodes connected",
            c["chain"].as_str().unwrap_or("?"),
            nodes.len()
        );
        for n in nodes {
            let _ = writeln!(
                o,
                "  {} {}",
                n["node"].as_str().unwrap_or("?"),
                if n["connected"].as_bool() == Some(true) {
                    "connected"
                } else {
                    "NOT connected"
                }
            );
        }
    }
    let db = &s["database"];
    let _ = writeln!(
        o,
        "slashing database: {}, durability {}{}",
        db["engine"].as_str().unwrap_or("?"),
        db["durability"].as_str().unwrap_or("?"),
        db["why"]
            .as_str()
            .map(|w| format!(" ({w})"))
            .unwrap_or_default()
    );
    let a = &s["audit"];
    let _ = writeln!(
        o,
        "audit log: {} records, {} anchored in the database",
        a["records"],
        a["anchored"]
            .as_u64()
            .map_or_else(|| "none yet".to_owned(), |n| n.to_string())
    );
    for c in s["certificates"].as_array().into_iter().flatten() {
        let days = c["days_left"].as_i64().unwrap_or(0);
        let _ = writeln!(
            o,
            "certificate {}: expires {} ({days} days){}",
            c["certificate"].as_str().unwrap_or("?"),
            date(c["not_after"].as_i64().unwrap_or(0)),
            if days < WARN_DAYS { "  RENEW SOON" } else { "" }
        );
    }
    let r = &s["last_reload"];
    let _ = write!(o, "last reload: {}", r["status"].as_str().unwrap_or("?"));
    if let Some(t) = r["lastOperationTime"].as_str() {
        let _ = write!(o, " at {t}");
    }
    if let Some(d) = r.get("keys").filter(|d| d.is_object()) {
        let len = |f: &str| d[f].as_array().map_or(0, Vec::len);
        let _ = write!(
            o,
            " ({} keys loaded: {} added, {} removed, {} unchanged, {} failed)",
            d["loaded"],
            len("added"),
            len("removed"),
            d["unchanged"],
            len("failed")
        );
    }
    if let Some(e) = r["lastError"].as_str() {
        let _ = write!(o, "\n  last error: {e}");
    }
    o.push('\n');
    o
}

pub fn run(a: StatusArgs) -> Result<ExitCode, Error> {
    let addr = super::metrics_http::address(&a.config, a.metrics)?;
    let (status, body) = match super::metrics_http::exchange(addr, "GET", "/status") {
        Ok(x) => x,
        Err(e) => {
            eprintln!("signer: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if status != 200 {
        eprintln!("signer: {addr} answered {status}: {}", body.trim());
        return Ok(ExitCode::from(2));
    }
    let v: Value = serde_json::from_str(body.trim()).map_err(|e| {
        format!("{addr}: the status is not JSON ({e}); is this a signer's metrics listener?")
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render(&v));
    }
    Ok(if v.get("ready").and_then(Value::as_bool) == Some(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
