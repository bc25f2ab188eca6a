//! Bad input gets a typed refusal and loses nothing: corrupt interchange files,
//! damaged or foreign database files, a newer schema, a second opener, a full
//! disk and a read-only disk.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use slashing_db::*;

use common::*;

/// Some history, and the export that proves it unchanged later.
fn seed(t: &TempDb) -> Interchange {
    for i in 0..5u64 {
        t.db.check_and_record(block(pk(1), 10 + i, root(1)))
            .unwrap()
            .unwrap();
        t.db.check_and_record(att(pk(1), i, i + 1, root(1)))
            .unwrap()
            .unwrap();
    }
    t.db.export_interchange().unwrap()
}

fn interchange_json(body: &str) -> String {
    format!(
        r#"{{"metadata": {{"interchange_format_version": "5", "genesis_validators_root": "{GENESIS}"}}, "data": [{body}]}}"#
    )
}

#[test]
fn corrupt_interchange_files_are_refused_and_import_nothing() {
    let t = TempDb::new(Some(GENESIS));
    let before = seed(&t);
    let v = pk(7);
    let good_entry = format!(
        r#"{{"pubkey": "{v}", "signed_blocks": [{{"slot": "1"}}], "signed_attestations": []}}"#
    );
    let cases: Vec<(&str, String)> = vec![
        ("truncated", interchange_json(&good_entry)[..60].to_owned()),
        ("not json", "slashing protection, trust me".to_owned()),
        (
            "unknown field",
            interchange_json(&good_entry.replace("signed_blocks", "signed_block")),
        ),
        (
            "number not quoted",
            interchange_json(&good_entry.replace(r#""slot": "1""#, r#""slot": 1"#)),
        ),
        (
            "negative slot",
            interchange_json(&good_entry.replace(r#""slot": "1""#, r#""slot": "-1""#)),
        ),
        (
            "slot too big",
            interchange_json(
                &good_entry.replace(r#""slot": "1""#, r#""slot": "18446744073709551616""#),
            ),
        ),
        (
            "short pubkey",
            interchange_json(&good_entry.replace(&v.to_string(), "0xabcd")),
        ),
        (
            "bad root hex",
            interchange_json(
                &good_entry.replace(r#""slot": "1""#, r#""slot": "1", "signing_root": "0xzz""#),
            ),
        ),
    ];
    for (name, text) in &cases {
        match Interchange::from_reader(text.as_bytes()) {
            Err(InterchangeError::Parse(_)) => {}
            other => panic!("{name}: expected a parse error, got {other:?}"),
        }
    }
    // Parses, but is refused as a whole.
    let v4 = interchange_json(&good_entry).replace(
        r#""interchange_format_version": "5""#,
        r#""interchange_format_version": "4""#,
    );
    assert!(matches!(
        t.db.import_interchange(Interchange::from_reader(v4.as_bytes()).unwrap()),
        Err(InterchangeError::UnsupportedVersion(v)) if v == "4"
    ));
    let other_net = interchange_json(&good_entry)
        .replace(&GENESIS.to_string(), &GenesisRoot([9; 32]).to_string());
    assert!(matches!(
        t.db.import_interchange(Interchange::from_reader(other_net.as_bytes()).unwrap()),
        Err(InterchangeError::GenesisRootMismatch { database, file }) if database == GENESIS && file == GenesisRoot([9; 32])
    ));
    // Fails half-way (a slot SQLite cannot store): the first entry is rolled back too.
    let late_failure = interchange_json(&format!(
        r#"{good_entry}, {{"pubkey": "{}", "signed_blocks": [{{"slot": "{}"}}], "signed_attestations": []}}"#,
        pk(8),
        u64::MAX
    ));
    assert!(matches!(
        t.db.import_interchange(Interchange::from_reader(late_failure.as_bytes()).unwrap()),
        Err(InterchangeError::Db(DbError::OutOfRange {
            what: "slot",
            value: u64::MAX
        }))
    ));
    assert_eq!(
        t.db.export_interchange().unwrap(),
        before,
        "a refused import changed the history"
    );
}

#[test]
fn values_beyond_the_storable_range_are_refused_not_wrapped() {
    let t = TempDb::new(Some(GENESIS));
    let huge = i64::MAX as u64 + 1;
    assert!(matches!(
        t.db.check_and_record(block(pk(1), huge, root(1))),
        Err(DbError::OutOfRange { what: "slot", value }) if value == huge
    ));
    // The failed request did not break the handle or leave anything behind.
    assert_eq!(
        t.db.check_and_record(block(pk(1), 5, root(1))).unwrap(),
        Ok(Safe::Valid)
    );
}

fn file_with_history() -> (tempfile::TempDir, PathBuf, Interchange) {
    let t = TempDb::new(Some(GENESIS));
    let before = seed(&t);
    let path = t.path();
    let TempDb { dir, db, .. } = t;
    db.close();
    (dir, path, before)
}

#[test]
fn a_truncated_database_is_refused_at_open() {
    let (_dir, path, _) = file_with_history();
    let len = fs::metadata(&path).unwrap().len();
    assert!(len > 8192, "expected several pages, got {len} bytes");
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    match SlashingDb::open(&path, Config::default()) {
        Err(DbError::Corrupt { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn foreign_files_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.sqlite");
    fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    assert!(matches!(
        SlashingDb::open(&garbage, Config::default()),
        Err(DbError::Corrupt { .. })
    ));
    assert_eq!(
        fs::read(&garbage).unwrap(),
        vec![0x5a; 8192],
        "the foreign file was modified"
    );

    let other_app = dir.path().join("other.sqlite");
    let c = rusqlite::Connection::open(&other_app).unwrap();
    c.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
        .unwrap();
    drop(c);
    match SlashingDb::open(&other_app, Config::default()) {
        Err(DbError::Corrupt { detail, .. }) => assert!(
            detail.contains("not a slashing-protection database"),
            "{detail}"
        ),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let (_dir, path, before) = file_with_history();
    let c = rusqlite::Connection::open(&path).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    match SlashingDb::open(&path, Config::default()) {
        Err(
            e @ DbError::SchemaTooNew {
                found: 99,
                supported: SCHEMA_VERSION,
            },
        ) => {
            assert!(e.to_string().contains("upgrade the signer"), "{e}");
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 99);
    c.pragma_update(None, "user_version", SCHEMA_VERSION)
        .unwrap();
    drop(c);
    let db = SlashingDb::open(&path, Config::default()).unwrap();
    assert_eq!(db.export_interchange().unwrap(), before);
}

#[test]
fn a_second_opener_is_refused_while_the_first_holds_the_database() {
    let t = TempDb::new(Some(GENESIS));
    match SlashingDb::open(&t.path(), Config::default()) {
        Err(DbError::InUse { path }) => assert_eq!(path, t.path()),
        other => panic!("expected InUse, got {other:?}"),
    }
    // The holder is unaffected.
    assert_eq!(
        t.db.check_and_record(block(pk(1), 1, root(1))).unwrap(),
        Ok(Safe::Valid)
    );
}

#[test]
fn a_database_of_another_network_is_refused_at_open() {
    let (_dir, path, _) = file_with_history();
    let other = GenesisRoot([7; 32]);
    match SlashingDb::open(
        &path,
        Config {
            genesis_root: Some(other),
            ..Config::default()
        },
    ) {
        Err(DbError::GenesisRootMismatch { stored, configured }) => {
            assert_eq!((stored, configured), (GENESIS, other));
        }
        other => panic!("expected GenesisRootMismatch, got {other:?}"),
    }
}

#[test]
fn database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let t = TempDb::new(Some(GENESIS));
    t.db.check_and_record(block(pk(1), 1, root(1)))
        .unwrap()
        .unwrap();
    for suffix in ["", "-wal"] {
        let p = PathBuf::from(format!("{}{suffix}", t.path().display()));
        let mode = fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "{} has mode {:o}",
            p.display(),
            mode & 0o777
        );
    }
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop. The full-
/// and read-only-disk tests need it; without the right to mount they fail and
/// say so rather than skip.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| {
                panic!("this test mounts a small tmpfs and needs the `mount` command: {e}")
            });
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill or freeze a real file system and needs root (CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_refuses_with_disk_full_and_loses_nothing() {
    let fs_ = Tmpfs::mount("2m");
    let path = fs_.path().join("slashing.sqlite");
    let db = open_pinned(&path).unwrap();
    // Ballast, so the disk fills quickly and can be freed again.
    let ballast = fs_.path().join("ballast");
    let _ = fs::write(&ballast, vec![0u8; 1800 * 1024]);
    let mut recorded = Vec::new();
    let mut refusal = None;
    for target in 1..200_000u64 {
        match db.check_and_record(att(pk((target % 200) as u8), target, target + 1, root(1))) {
            Ok(Ok(Safe::Valid)) => recorded.push(target),
            Ok(other) => panic!("target {target}: unexpected decision {other:?}"),
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    let refusal = refusal.expect("the disk never filled up");
    assert!(
        matches!(refusal, DbError::DiskFull),
        "expected DiskFull, got {refusal:?}"
    );
    assert!(!recorded.is_empty());
    // Still full: still refused, and the handle is not poisoned by it.
    let next = recorded.last().unwrap() + 1;
    assert!(matches!(
        db.check_and_record(att(pk((next % 200) as u8), next, next + 1, root(1))),
        Err(DbError::DiskFull)
    ));
    // Space comes back: the same handle works again.
    fs::remove_file(&ballast).unwrap();
    assert_eq!(
        db.check_and_record(att(pk((next % 200) as u8), next, next + 1, root(1)))
            .unwrap(),
        Ok(Safe::Valid)
    );
    recorded.push(next);
    db.close();
    // After a restart every recorded decision is there and protects.
    let db = SlashingDb::open(&path, Config::default()).unwrap();
    for target in &recorded {
        let d = db
            .check_and_record(att(pk((target % 200) as u8), *target, target + 1, root(2)))
            .unwrap();
        assert!(
            matches!(d, Err(NotSafe::DoubleVote { .. })),
            "target {target}: {d:?}"
        );
    }
    println!(
        "full disk: {} decisions recorded before ENOSPC, all present after restart",
        recorded.len()
    );
}

/// A file system that is read-only when the signer starts (remounted after an
/// error, a read-only volume). Linux refuses to remount read-only while a file
/// is open for writing, so this is the state an operator meets.
#[test]
fn a_read_only_disk_is_refused_with_read_only_and_loses_nothing() {
    let fs_ = Tmpfs::mount("8m");
    let path = fs_.path().join("slashing.sqlite");
    let db = open_pinned(&path).unwrap();
    for slot in 1..=20 {
        db.check_and_record(block(pk(1), slot, root(1)))
            .unwrap()
            .unwrap();
    }
    let before = db.export_interchange().unwrap();
    db.close();
    let bytes_before = fs::read(&path).unwrap();

    fs_.remount("ro");
    let opened = SlashingDb::open(&path, Config::default());
    // A new database cannot be created there either.
    let created = SlashingDb::open(&fs_.path().join("new.sqlite"), Config::default());
    let bytes_during = fs::read(&path).unwrap();
    fs_.remount("rw");
    match opened {
        Err(DbError::ReadOnly) => {}
        other => panic!("expected ReadOnly, got {other:?}"),
    }
    assert!(
        matches!(created, Err(DbError::ReadOnly)),
        "expected ReadOnly, got {created:?}"
    );
    assert_eq!(bytes_during, bytes_before);

    let db = SlashingDb::open(&path, Config::default()).unwrap();
    assert_eq!(db.export_interchange().unwrap(), before, "history changed");
    assert!(matches!(
        db.check_and_record(block(pk(1), 20, root(2))).unwrap(),
        Err(NotSafe::DoubleBlockProposal { .. })
    ));
}
