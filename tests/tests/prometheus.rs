//! The Prometheus rules in deploy/prometheus (issue 19, parts 1–2): they
//! load and their unit tests pass in promtool; every metric they name
//! exists in a live daemon's /metrics; and a real Prometheus scraping a
//! real daemon records the rules and raises the alerts the daemon's state
//! calls for (a chain with no node connected: not ready).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use signer::cometbft::ProtocolVersion;
use tests::daemon::Setup;
use tests::privval_node::TestNode;

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy())
        .output()
        .unwrap_or_else(|e| panic!("this test needs promtool (Debian package prometheus): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_rules_load_and_their_unit_tests_pass() {
    let out = promtool(&["check", "rules", "alerts.yml", "recording.yml"]);
    assert!(
        out.contains("SUCCESS: 17 rules found") && out.contains("SUCCESS: 8 rules found"),
        "{out}"
    );
    let out = promtool(&["test", "rules", "tests/alerts_test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

fn dashboard() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/signer.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every query of the dashboard, with its variables given values.
fn dashboard_queries() -> Vec<(String, String)> {
    let d = dashboard();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap().replace("$instance", ".*");
            out.push((p["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    out
}

#[test]
fn the_dashboard_is_well_formed_and_its_queries_parse() {
    let d = dashboard();
    assert_eq!(d["uid"], "signer-overview");
    let panels = d["panels"].as_array().unwrap();
    let ids: BTreeSet<i64> = panels.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for p in panels {
        let g = &p["gridPos"];
        assert!(
            g["x"].as_i64().unwrap() + g["w"].as_i64().unwrap() <= 24,
            "{}",
            p["title"]
        );
        assert!(
            !p["targets"].as_array().unwrap().is_empty(),
            "{}",
            p["title"]
        );
    }
    // promtool parses every query (as a recording rule).
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (title, expr)) in dashboard_queries().iter().enumerate() {
        rules.push_str(&format!(
            "      # {title}\n      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, rules).unwrap();
    let out = promtool(&["check", "rules", file.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
    // Every recorded series it reads is one recording.yml makes.
    let recorded = std::fs::read_to_string(deploy().join("recording.yml")).unwrap();
    for (title, expr) in dashboard_queries() {
        for (i, _) in expr.match_indices("signer:") {
            let name: String = expr[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            assert!(
                recorded.contains(&format!("record: {name}\n")),
                "{title}: {name} is not recorded"
            );
        }
    }
    println!("{} dashboard queries parse", dashboard_queries().len());
}

fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// Metric families a daemon exports (`# TYPE name kind`).
fn families(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// `signer_*` metric names the rule files and the dashboard use, as families.
fn referenced() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let queries: String = dashboard_queries()
        .into_iter()
        .map(|(_, e)| e + "\n")
        .collect();
    for file in ["alerts.yml", "recording.yml", "dashboard"] {
        let text = if file == "dashboard" {
            queries.clone()
        } else {
            std::fs::read_to_string(deploy().join(file)).unwrap()
        };
        for (i, _) in text.match_indices("signer_") {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..end];
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(family.to_owned());
        }
    }
    names
}

struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// A real Prometheus scraping `target` every second, with the rules
    /// (evaluated every second here).
    fn start(target: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for file in ["alerts.yml", "recording.yml"] {
            let text = std::fs::read_to_string(deploy().join(file)).unwrap();
            std::fs::write(
                dir.path().join(file),
                text.replace("interval: 30s", "interval: 1s"),
            )
            .unwrap();
        }
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [alerts.yml, recording.yml]\n\
                 scrape_configs:\n  - job_name: signer\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("this test needs prometheus (Debian package prometheus): {e}")
            });
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Polls the API at `path` until `ok` accepts the answer's `data[field]`
    /// (bounded: a hang guard); returns it.
    fn poll(
        &self,
        path: &str,
        field: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        for _ in 0..600 {
            if let Ok(mut s) = TcpStream::connect(&self.addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = write!(
                    s,
                    "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                );
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if let Some((_, body)) = out.split_once("\r\n\r\n")
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(body.trim())
                {
                    if ok(&v["data"][field]) {
                        return v["data"][field].clone();
                    }
                    last = v;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{path}: never as expected; last answer: {last}");
    }

    /// Polls `query` until `ok` accepts its result.
    fn until(&self, query: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        self.poll(
            &format!("/api/v1/query?query={}", urlencode(query)),
            "result",
            ok,
        )
    }

    /// Polls `/api/v1/alerts` until `ok` accepts the list.
    fn alerts_until(&self, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        self.poll("/api/v1/alerts", "alerts", ok)
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn a_real_prometheus_scrapes_the_daemon_and_evaluates_the_rules() {
    let setup = Setup::new();
    // A chain whose one node is not there yet: the daemon is up but not
    // ready (the fault); later the node takes the connection (recovery).
    let sock = setup.path("node.sock");
    let addr = format!("unix://{}", sock.display());
    setup.enable_cometbft("prom-chain", "v0.38", &[(addr.clone(), addr)]);
    let d = setup.start();
    // A family appears in /metrics once it has a series: what the live
    // daemon shows, plus a registry whose every labelled family has one.
    let mut exported = families(&get(&d.metrics.to_string(), "/metrics"));
    let m = signer::metrics::Metrics::new();
    let l = |pairs: &[(&'static str, &str)]| -> signer::metrics::Labels {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    };
    m.request("grpc", "eth2.attestation", "signed");
    m.reload("keys", true);
    m.tls_failures.get_or_create(&l(&[("reason", "x")])).inc();
    m.cert_expiry
        .get_or_create(&l(&[("certificate", "server")]))
        .set(1.0);
    m.privval_failures
        .get_or_create(&l(&[("chain", "c")]))
        .inc();
    m.backend_up
        .get_or_create(&l(&[("backend", "pkcs11"), ("name", "t")]))
        .set(1);
    m.backend_operations
        .get_or_create(&l(&[
            ("backend", "pkcs11"),
            ("name", "t"),
            ("outcome", "ok"),
        ]))
        .inc();
    m.backend_seconds
        .get_or_create(&l(&[("backend", "pkcs11"), ("name", "t")]))
        .observe(0.001);
    exported.extend(families(&m.encode()));
    let missing: Vec<String> = referenced().difference(&exported).cloned().collect();
    assert!(
        missing.is_empty(),
        "the rules name metrics the daemon does not export: {missing:?}\nexported: {exported:?}"
    );
    println!(
        "{} metric families referenced by the rules, all exported",
        referenced().len()
    );

    let p = Prometheus::start(&d.metrics.to_string());
    // Scraped (the OpenMetrics exposition parses) and recorded.
    p.until("signer_ready", |r| r[0]["value"][1] == "0");
    p.until("signer:ready_instances", |r| r[0]["value"][1] == "0");
    // The alerts the state calls for are pending (their `for` has not run out).
    for alert in ["SignerNotReady", "SignerChainWithoutNode"] {
        let r = p.until(&format!("ALERTS{{alertname=\"{alert}\"}}"), |r| {
            r.as_array().is_some_and(|a| !a.is_empty())
        });
        assert_eq!(r[0]["metric"]["alertstate"], "pending", "{alert}: {r}");
        assert_eq!(r[0]["metric"]["job"], "signer", "{alert}: {r}");
    }
    let r = p.until("ALERTS{alertname=\"SignerChainWithoutNode\"}", |r| {
        r.as_array().is_some_and(|a| !a.is_empty())
    });
    assert_eq!(r[0]["metric"]["chain"], "prom-chain");
    // Every dashboard query runs on the real server (an answer, maybe empty).
    for (_, expr) in dashboard_queries() {
        p.until(&expr, |r| r.is_array());
    }
    // The alerts API shows them; after recovery (the node connects) they clear.
    let firing = |a: &serde_json::Value, name: &str| {
        a.as_array()
            .is_some_and(|a| a.iter().any(|x| x["labels"]["alertname"] == name))
    };
    p.alerts_until(|a| firing(a, "SignerChainWithoutNode") && firing(a, "SignerNotReady"));
    let node = TestNode::unix(sock, ProtocolVersion::V0_38).unwrap();
    let conn = node.accept(Duration::from_secs(60)).unwrap();
    let a =
        p.alerts_until(|a| !firing(a, "SignerChainWithoutNode") && !firing(a, "SignerNotReady"));
    println!("after the node connected, alerts: {a}");
    drop(conn);
    assert!(d.stop().success());
}
