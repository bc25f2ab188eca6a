//! The configuration file: the commented example parses to the values it
//! shows, relative paths resolve against its directory, and typos, bad values
//! and missing sections are refused with the field named.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use signer::config::{Config, ConfigError, KeySource, LogFormat, Preset};

fn example() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../signer.example.toml"))
        .unwrap()
}

#[test]
fn the_example_parses_to_what_it_shows() {
    let c = Config::parse(&example(), Path::new("/etc/signer/signer.toml")).unwrap();
    assert_eq!(c.server.grpc_listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(c.server.metrics_listen, "127.0.0.1:9100".parse().unwrap());
    assert_eq!(
        c.tls.cert.as_deref(),
        Some(Path::new("/etc/signer/tls/server.pem"))
    );
    assert_eq!(c.tls.client_cas, [Path::new("/etc/signer/tls/ca.pem")]);
    assert_eq!(c.policy.file, Path::new("/etc/signer/policy.toml"));
    assert_eq!(
        c.slashing.database.as_deref(),
        Some(Path::new("/etc/signer/data/slashing.sqlite"))
    );
    assert_eq!(c.slashing.engine, signer::config::SlashingEngine::Sqlite);
    assert!(c.slashing.integrity_check_on_open);
    assert_eq!(c.ethereum.preset, Preset::Mainnet);
    assert_eq!(c.ethereum.network().unwrap(), mainnet_with_its_clock());
    assert_eq!(c.keys.len(), 8);
    assert_eq!(
        c.keys[5],
        KeySource::Kms {
            key_id: "alias/oracle-signer".into()
        }
    );
    assert_eq!(
        c.keys[6],
        KeySource::KmsTags {
            tags: [("chain", "cosmoshub-4"), ("role", "consensus")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into_iter()
                .collect()
        }
    );
    assert_eq!(
        c.keys[7],
        KeySource::KmsSealed {
            path: "/etc/signer/keys/validator-2.kms.json".into()
        }
    );
    let k = c.kms.as_ref().unwrap();
    assert_eq!(k.region.as_deref(), Some("eu-west-1"));
    assert_eq!(k.endpoint, None);
    assert_eq!(
        (
            k.operation_timeout_ms,
            k.attempt_timeout_ms,
            k.breaker_failures,
            k.breaker_open_ms
        ),
        (2000, 1000, 5, 1000)
    );
    assert_eq!(
        c.keys[3],
        KeySource::Pkcs11 {
            label: Some("cosmoshub-validator".into()),
            id: None,
            tokens: vec!["hsm-a".into(), "hsm-b".into()],
        }
    );
    assert_eq!(
        c.keys[4],
        KeySource::Pkcs11Sealed {
            path: "/etc/signer/keys/validator-1.sealed.json".into(),
            tokens: Vec::new(),
        }
    );
    let p = c.pkcs11.as_ref().unwrap();
    assert_eq!(
        (
            p.operation_timeout_ms,
            p.sessions_per_token,
            p.keepalive_secs
        ),
        (2000, 0, 30)
    );
    assert_eq!(p.tokens.len(), 2);
    assert_eq!(
        p.tokens[0].pin_file.as_deref(),
        Some(Path::new("/etc/signer/hsm-a.pin"))
    );
    assert_eq!(
        p.tokens[1].token_serial.as_deref(),
        Some("9f3c1a2b4d5e6f70")
    );
    assert_eq!(p.tokens[1].pin_env.as_deref(), Some("SIGNER_HSM_B_PIN"));
    assert_eq!(
        c.keys[0],
        KeySource::File {
            path: "/etc/signer/keys/validator-0.json".into(),
            password_file: "/etc/signer/keys/validator-0.pass".into()
        }
    );
    assert_eq!(
        c.keys[1],
        KeySource::Web3signerDir {
            path: "/etc/signer/keys/web3signer".into()
        }
    );
    assert_eq!(c.logging.format, LogFormat::Human);
}

/// The example with its PostgreSQL section switched on instead of SQLite.
fn postgres_example() -> String {
    let mut text = String::new();
    let mut in_pg = false;
    for line in example().lines() {
        if line == "# [slashing.postgres]" {
            in_pg = true;
        }
        if in_pg && line.is_empty() {
            in_pg = false;
        }
        let line = match line {
            l if in_pg && l.starts_with("# # ") => continue,
            l if in_pg => l.strip_prefix("# ").unwrap_or(l),
            "engine = \"sqlite\"" => "engine = \"postgres\"",
            l if l.starts_with("database = ") || l.starts_with("integrity_check_on_open") => {
                continue;
            }
            l => l,
        };
        text.push_str(line);
        text.push('\n');
    }
    text
}

#[test]
fn the_examples_postgres_section_parses() {
    let c = Config::parse(&postgres_example(), Path::new("/etc/signer/signer.toml")).unwrap();
    assert_eq!(c.slashing.engine, signer::config::SlashingEngine::Postgres);
    assert_eq!(c.slashing.database, None);
    let pg = c.slashing.postgres.as_ref().unwrap();
    assert_eq!(pg.tls, signer::config::PostgresTls::VerifyFull);
    assert_eq!(
        pg.ca_file.as_deref(),
        Some(Path::new("/etc/signer/tls/postgres-ca.pem"))
    );
    assert!(pg.require_synchronous_replication);
    assert_eq!(
        (pg.statement_timeout_ms, pg.connect_timeout_ms),
        (5000, 10000)
    );
}

#[test]
fn postgres_settings_that_would_leak_or_weaken_are_refused() {
    let base = postgres_example();
    let url = "url = \"postgresql://signer@db-a.internal:5432,db-b.internal:5432/slashing?target_session_attrs=read-write\"";
    assert!(base.contains(url));
    let cases: Vec<(String, &str)> = vec![
        (
            base.replace("signer@db-a", "signer:hunter2@db-a"),
            "carries a password",
        ),
        (
            base.replace("read-write\"", "read-write&sslmode=verify-full\""),
            "`sslmode` in the connection string",
        ),
        (
            base.replace("tls = \"verify-full\"", "tls = \"disable\""),
            "allowed only for Unix sockets and loopback",
        ),
        (
            base.replace("ca_file = \"tls/postgres-ca.pem\"", ""),
            "needs ca_file",
        ),
        (
            base.replace("\nengine = \"postgres\"", "\nengine = \"sqlite\""),
            "slashing.database",
        ),
        (
            base.replace(
                "\nengine = \"postgres\"",
                "\nengine = \"postgres\"\ndatabase = \"x.sqlite\"",
            ),
            "keeps no local database file",
        ),
        (
            base.replace("file = \"data/audit.jsonl\"", "")
                .replace("[audit]", ""),
            "set [audit] file",
        ),
        (
            base.replace(
                "password_file = \"/run/credentials/signer.service/pg-password\"",
                "password_file = \"p\"\npassword_env = \"P\"",
            ),
            "not both",
        ),
        (
            base.replace("statement_timeout_ms = 5000", "statement_timeout_ms = 0"),
            "above 0 ms",
        ),
        (
            base.replace("url = ", "password = \"x\"\nurl = "),
            "unknown field `password`",
        ),
    ];
    for (text, want) in &cases {
        assert_ne!(text, &base, "the edit for {want:?} did not apply");
        let err = Config::parse(text, Path::new("signer.toml")).unwrap_err();
        assert!(err.to_string().contains(want), "want {want:?}, got: {err}");
    }
    // Plaintext is fine where it never crosses a network.
    let local = base
        .replace("tls = \"verify-full\"", "tls = \"disable\"")
        .replace("db-a.internal:5432,db-b.internal:5432", "127.0.0.1:5432");
    Config::parse(&local, Path::new("signer.toml")).unwrap();
}

#[test]
fn defaults_apply_and_absolute_paths_stay() {
    let minimal = r#"
[server]
grpc_listen = "[::1]:9000"
metrics_listen = "[::1]:9100"
[tls]
cert = "/abs/server.pem"
key = "server.key"
client_cas = ["ca.pem"]
[policy]
file = "policy.toml"
[slashing]
database = "db.sqlite"
"#;
    let c = Config::parse(minimal, Path::new("setup/signer.toml")).unwrap();
    assert_eq!(c.tls.cert.as_deref(), Some(Path::new("/abs/server.pem")));
    assert_eq!(c.tls.key.as_deref(), Some(Path::new("setup/server.key")));
    assert!(c.tls.crls.is_empty() && c.keys.is_empty());
    assert!(c.slashing.integrity_check_on_open);
    assert_eq!(c.slashing.genesis_validators_root, None);
    assert_eq!(c.ethereum.network().unwrap(), mainnet_with_its_clock());
    assert_eq!(
        (c.logging.format, c.logging.level.as_str()),
        (LogFormat::Human, "info")
    );
}

#[test]
fn typos_and_bad_values_are_refused_with_the_field_named() {
    let base = example();
    let cases: Vec<(String, &str)> = vec![
        (
            base.replace("grpc_listen =", "grpc_listn ="),
            "unknown field `grpc_listn`",
        ),
        (
            base.replace("\"127.0.0.1:9000\"", "\"localhost:9000\""),
            "invalid socket address",
        ),
        (
            base.replace("type = \"web3signer_dir\"", "type = \"vault\""),
            "unknown variant `vault`",
        ),
        (
            base.replace("preset = \"mainnet\"", "preset = \"gnosis\""),
            "unknown variant `gnosis`",
        ),
        (
            base.replace("client_cas = [\"tls/ca.pem\"]", "client_cas = []"),
            "tls.client_cas",
        ),
        (
            base.replace(
                "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95",
                "0x4b36",
            ),
            "slashing.genesis_validators_root",
        ),
        (
            base.replace(
                "genesis_fork_version = \"0x00000000\"",
                "genesis_fork_version = \"0x0000\"",
            ),
            "ethereum.genesis_fork_version",
        ),
        (
            base.replace("127.0.0.1:9100", "127.0.0.1:9000"),
            "must differ from grpc_listen",
        ),
        (
            base.replace("file = \"policy.toml\"", "")
                .replace("[policy]", ""),
            "missing field `policy`",
        ),
        (
            base.replace("pin_env = \"SIGNER_HSM_B_PIN\"", "pin = \"1234\""),
            "unknown field `pin`",
        ),
        (
            base.replace("token_serial = \"9f3c1a2b4d5e6f70\"", ""),
            "exactly one of token_label, token_serial",
        ),
        (
            base.replace("pin_file = \"hsm-a.pin\"", ""),
            "exactly one of pin_file, pin_env",
        ),
        (
            base.replace("tokens = [\"hsm-a\", \"hsm-b\"]", "tokens = [\"hsm-c\"]"),
            "no [[pkcs11.tokens]] named \"hsm-c\"",
        ),
        (
            base.replace("name = \"hsm-b\"", "name = \"hsm-a\"")
                .replace("\"hsm-a\", \"hsm-b\"", "\"hsm-a\""),
            "names must be unique",
        ),
        (
            base.replace(
                "label = \"cosmoshub-validator\"",
                "label = \"x\"\nid = \"01\"",
            ),
            "exactly one of label, id",
        ),
        (base.replace("[kms]", "[kms_]"), "unknown field `kms_`"),
        (
            base.replace("# flush_interval_ms = 5", "flush_interval_ms = 0"),
            "audit.flush_interval_ms: 0 is out of range: give 1 to 1000 milliseconds",
        ),
        (
            base.replace("# flush_interval_ms = 5", "flush_interval_ms = 5000"),
            "audit.flush_interval_ms: 5000 is out of range",
        ),
        (
            base.replace(
                "region = \"eu-west-1\"",
                "region = \"eu-west-1\"\nsecret_access_key = \"x\"",
            ),
            "unknown field `secret_access_key`",
        ),
    ];
    for (text, want) in &cases {
        assert_ne!(text, &base, "the edit for {want:?} did not apply");
        let err = Config::parse(text, Path::new("signer.toml")).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Parse { .. } | ConfigError::Invalid { .. }
        ));
        assert!(err.to_string().contains(want), "want {want:?}, got: {err}");
    }
    let tuned = base.replace("# flush_interval_ms = 5", "flush_interval_ms = 50");
    let c = Config::parse(&tuned, Path::new("signer.toml")).unwrap();
    let audit = c.audit.unwrap();
    assert_eq!(audit.flush_interval(), std::time::Duration::from_millis(50));
    let c = Config::parse(&base, Path::new("signer.toml")).unwrap();
    assert_eq!(
        c.audit.unwrap().flush_interval(),
        std::time::Duration::from_millis(5),
        "the default"
    );
    assert!(matches!(
        Config::load(Path::new("/nonexistent/signer.toml")),
        Err(ConfigError::Io { .. })
    ));
}

#[test]
fn backend_keys_without_their_backend_section_are_refused() {
    let minimal = r#"
[server]
grpc_listen = "[::1]:9000"
metrics_listen = "[::1]:9100"
[tls]
cert = "server.pem"
key = "server.key"
client_cas = ["ca.pem"]
[policy]
file = "policy.toml"
[slashing]
database = "db.sqlite"
"#;
    for (key, want) in [
        (
            "type = \"kms\"\nkey_id = \"alias/x\"",
            "kms keys need a [kms] section",
        ),
        (
            "type = \"kms_sealed\"\npath = \"k.json\"",
            "kms keys need a [kms] section",
        ),
        (
            "type = \"pkcs11\"\nlabel = \"x\"",
            "pkcs11 keys need a [pkcs11] section",
        ),
    ] {
        let text = format!("{minimal}\n[[keys]]\n{key}\n");
        let err = Config::parse(&text, Path::new("signer.toml")).unwrap_err();
        assert!(err.to_string().contains(want), "want {want:?}, got: {err}");
    }
}

/// Mainnet as the default `[ethereum]` section gives it: its clock is known
/// from the genesis fork version.
fn mainnet_with_its_clock() -> signer::eth2::Network {
    signer::eth2::Network {
        clock: Some(signer::eth2::Clock {
            genesis_time: 1_606_824_023,
            seconds_per_slot: 12,
            max_slots_ahead: 64,
        }),
        ..signer::eth2::Network::MAINNET
    }
}
