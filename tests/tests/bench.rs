//! `signer bench` runs at a tiny size so it cannot rot. Nothing here looks
//! at the times: benchmarks are not tests. It checks that every scenario
//! runs and reports the rows and fields the benchmark promises.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[test]
fn every_scenario_runs_at_a_tiny_size_and_reports_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = std::process::Command::new(tests::daemon::signer_bin())
        .args(["bench", "--heights", "5", "--warmup", "1", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let variants: Vec<&str> = rows
        .iter()
        .map(|r| r["variant"].as_str().unwrap())
        .collect();
    assert_eq!(
        variants,
        [
            "grpc p50",
            "grpc p99",
            "grpc p999",
            "privval p50",
            "privval p99",
            "privval p999"
        ]
    );
    for r in &rows {
        assert_eq!(r["scenario"], "cometbft-votes");
        assert_eq!(r["unit"], "µs");
        assert!(r["figure"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["baseline"].as_f64().unwrap() > 0.0, "{r}");
        for key in ["ratio", "target", "met"] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
    }
    assert!(stdout.contains("mean µs per request by stage"), "{stdout}");
}
