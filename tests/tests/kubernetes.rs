//! The Kubernetes manifests in deploy/kubernetes (issue 19, part 4):
//! valid against the Kubernetes API schemas (kubernetes-validate, strict:
//! no unknown fields), with what an operator relies on — two replicas,
//! probes on /healthz and /readyz, a disruption budget, a network policy —
//! and a configuration the signer itself accepts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

#[test]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    let out = Command::new("kubernetes-validate")
        .args(["-k", "1.30.0", "--strict"])
        .arg(dir().join("signer.yaml"))
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs kubernetes-validate (pip install kubernetes-validate): {e}")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for kind in [
        "serviceaccount/signer",
        "configmap/signer-config",
        "service/signer",
        "statefulset/signer",
        "poddisruptionbudget/signer",
        "networkpolicy/signer",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{kind}: {text}"
        );
    }
    println!("{}", text.trim());
}

#[test]
fn the_manifests_say_what_operators_rely_on() {
    let text = std::fs::read_to_string(dir().join("signer.yaml")).unwrap();
    for needed in [
        "replicas: 2",
        "path: /healthz",
        "path: /readyz",
        "kind: PodDisruptionBudget",
        "minAvailable: 1",
        "kind: NetworkPolicy",
        "policyTypes: [Ingress, Egress]",
        "readOnlyRootFilesystem: true",
        "drop: [ALL]",
        "add: [IPC_LOCK]",
        "engine = \"postgres\"",
    ] {
        assert!(text.contains(needed), "signer.yaml lost {needed:?}");
    }
    let sm = std::fs::read_to_string(dir().join("servicemonitor.yaml")).unwrap();
    for needed in ["kind: ServiceMonitor", "port: metrics", "path: /metrics"] {
        assert!(sm.contains(needed), "servicemonitor.yaml lost {needed:?}");
    }
    // The ConfigMap's signer.toml is one the signer accepts.
    let start = text.find("  signer.toml: |\n").unwrap() + "  signer.toml: |\n".len();
    let toml: String = text[start..]
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let config = signer::config::Config::parse(&toml, Path::new("/etc/signer/config/signer.toml"))
        .unwrap_or_else(|e| panic!("the ConfigMap's signer.toml: {e}\n{toml}"));
    assert_eq!(config.server.grpc_listen.port(), 9000);
    assert!(config.audit.is_some());
}
