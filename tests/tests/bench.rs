//! `signer-bench` runs at a tiny size so it cannot rot. Nothing here looks
//! at the times: benchmarks are not tests. It checks that every scenario
//! runs and reports the rows and fields the benchmark promises.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

/// Runs `signer-bench` with `args` against this build's `signer`; fails
/// with its output unless it succeeds. Its standard output.
fn bench(args: &[&str]) -> String {
    let out = std::process::Command::new(tests::daemon::bench_bin())
        .env("SIGNER_BIN", tests::daemon::signer_bin())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn every_scenario_runs_at_a_tiny_size_and_reports_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let stdout = bench(&[
        "--heights",
        "5",
        "--warmup",
        "1",
        "--validators",
        "20",
        "--startup-keys",
        "5",
        "--startup-keystores",
        "4,20:10",
        "--chains",
        "2",
        "--chain-heights",
        "3",
        "--pkcs11-signs",
        "8",
        "--kms-signs",
        "32",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(!stdout.contains("pkcs11: skipped"), "{stdout}");
    assert!(!stdout.contains("kms: skipped"), "{stdout}");
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let names: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["scenario"].as_str().unwrap(),
                r["variant"].as_str().unwrap()
            )
        })
        .collect();
    let mut hsm_rows = Vec::new();
    for sessions in ["1 sess", "n sess"] {
        for scheme in ["ed25519", "secp256k1"] {
            for call in ["Sign", "Batch"] {
                for figure in ["rate", "daemon cpu", "loadgen cpu"] {
                    hsm_rows.push(format!("pkcs11-{scheme} {call} {sessions} {figure}"));
                }
            }
        }
        for figure in ["prevote p50", "precommit p50"] {
            hsm_rows.push(format!("pkcs11-ed25519 votes {sessions} {figure}"));
        }
    }
    assert_eq!(
        names,
        [
            "eth2-burst signbatch rate",
            "eth2-burst signbatch p50",
            "eth2-burst signbatch p99",
            "eth2-burst signbatch db commits",
            "eth2-burst signbatch loadgen cpu",
            "eth2-burst signbatch daemon cpu",
            "eth2-burst signbatch wall",
            "eth2-burst 64 conns rate",
            "eth2-burst 64 conns p50",
            "eth2-burst 64 conns p99",
            "eth2-burst 64 conns db commits",
            "eth2-burst 64 conns loadgen cpu",
            "eth2-burst 64 conns daemon cpu",
            "eth2-burst 64 conns wall",
            "eth2-burst-http 64 conns rate",
            "eth2-burst-http 64 conns p50",
            "eth2-burst-http 64 conns p99",
            "eth2-burst-http 64 conns db commits",
            "eth2-burst-http 64 conns loadgen cpu",
            "eth2-burst-http 64 conns daemon cpu",
            "eth2-burst-http 64 conns wall",
            "many-chains grpc rate",
            "many-chains grpc p99",
            "many-chains grpc db commits",
            "many-chains grpc loadgen cpu",
            "many-chains grpc daemon cpu",
            "many-chains grpc wall",
            "many-chains privval rate",
            "many-chains privval p99",
            "many-chains privval db commits",
            "many-chains privval loadgen cpu",
            "many-chains privval daemon cpu",
            "many-chains privval wall",
            "cometbft-votes grpc p50",
            "cometbft-votes grpc p99",
            "cometbft-votes grpc p999",
            "cometbft-votes privval p50",
            "cometbft-votes privval p99",
            "cometbft-votes privval p999",
            "cometbft-votes floor p50",
            "cometbft-votes floor p99",
            "cometbft-votes privval p50 vs floor",
            "cometbft-votes privval p99 vs floor",
            "cometbft-votes privval prevote p50 vs floor",
            "cometbft-votes privval precommit p50 vs floor",
            "cometbft-votes privval ping p50",
            "cometbft-votes grpc echo p50",
            "cometbft-votes grpc p50 vs floor",
            "startup 5 keys ready",
            "startup 5 keys rss",
            "startup 4 ks 2^18 decrypt one",
            "startup 4 ks 2^18 first start",
            "startup 4 ks 2^18 cached start",
            "startup 20 ks 2^10 decrypt one",
            "startup 20 ks 2^10 first start",
            "startup 20 ks 2^10 cached start",
        ]
        .into_iter()
        .map(String::from)
        .chain(hsm_rows)
        .chain(
            [
                "kms-ed25519 1 caller p50",
                "kms-ed25519 1 caller p99",
                "kms-ed25519 16 callers rate",
                "kms-ed25519 votes prevote p50",
                "kms-ed25519 votes precommit p50",
            ]
            .map(String::from),
        )
        .collect::<Vec<_>>()
    );
    for r in &rows {
        for key in [
            "scenario", "variant", "figure", "unit", "baseline", "ratio", "target", "met",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        assert!(r["figure"].as_f64().is_some(), "{r}");
    }
    // Every rate is positive, with a baseline and a verdict on its target.
    for r in rows
        .iter()
        .filter(|r| r["variant"].as_str().unwrap().ends_with("rate"))
    {
        assert!(r["figure"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["baseline"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["met"].is_boolean(), !r["target"].is_null(), "{r}");
    }
    // The SignBatch variant's 20 attestations are one call: one commit.
    assert_eq!(rows[3]["figure"].as_f64(), Some(1.0), "{}", rows[3]);
    // Each variant reports the stage means of its own requests.
    for variant in [
        "eth2-burst signbatch",
        "eth2-burst 64 conns",
        "eth2-burst-http",
        "many-chains grpc",
        "many-chains privval",
        "cometbft-votes grpc",
        "cometbft-votes privval",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("mean µs per request by stage ({variant}):")))
            .unwrap_or_else(|| panic!("no stage means for {variant}: {stdout}"));
        assert!(
            line.contains("slashing_db") && line.contains("total"),
            "{line}"
        );
    }
    // The floor's parts, to set beside the stages.
    let floor = stdout
        .lines()
        .find(|l| l.starts_with("mean µs per request by stage (cometbft-votes floor, its parts):"))
        .unwrap_or_else(|| panic!("no floor parts: {stdout}"));
    for part in ["echo", "write", "sign"] {
        assert!(floor.contains(&format!(" {part} ")), "{floor}");
    }
}

/// The `cometbft-votes` scenario at five heights (one of warm-up), with
/// `more` arguments; its standard output.
fn tiny_votes(more: &[&str]) -> String {
    let args = [
        &[
            "--scenario",
            "cometbft-votes",
            "--heights",
            "5",
            "--warmup",
            "1",
        ],
        more,
    ]
    .concat();
    bench(&args)
}

/// `--db-dir` puts the slashing database (and the vote baselines) in
/// another directory — a tmpfs, to see the signer's cost beside
/// durability: the database is made there and the vote rows are reported.
#[test]
fn the_votes_scenario_keeps_its_database_where_db_dir_says() {
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("db on tmpfs");
    let json = dir.path().join("bench.json");
    let stdout = tiny_votes(&[
        "--db-dir",
        db_dir.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let made: Vec<String> = std::fs::read_dir(&db_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        made.iter()
            .any(|f| f.starts_with("slashing-") && f.ends_with(".sqlite")),
        "{made:?}"
    );
    assert!(
        stdout.contains("db on tmpfs"),
        "the baselines name where they were measured: {stdout}"
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(
        rows.len(),
        15,
        "six vote rows and nine floor rows: {rows:?}"
    );
}

/// `--audit-dir` moves the daemon's audit log off the database's disk and
/// `--audit-flush-ms` sets its flush interval: the daemon starts with both
/// and writes every vote's record in that directory.
#[test]
fn the_votes_scenario_writes_its_audit_log_where_audit_dir_says() {
    let dir = tempfile::tempdir().unwrap();
    let audit_dir = dir.path().join("audit elsewhere");
    tiny_votes(&[
        "--audit-flush-ms",
        "50",
        "--audit-dir",
        audit_dir.to_str().unwrap(),
    ]);
    let logs: Vec<std::path::PathBuf> = std::fs::read_dir(&audit_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".jsonl"))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let text = std::fs::read_to_string(&logs[0]).unwrap();
    let votes = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["request"] == "cometbft.vote" && r["outcome"] == "signed")
        .count();
    // Five heights, a prevote and a precommit each, over gRPC and privval.
    assert!(
        votes >= 20,
        "{votes} signed votes in the audit log:\n{text}"
    );
}
