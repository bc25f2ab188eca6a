//! The audit log's hash chain: intact logs verify; an edited, removed,
//! inserted or reordered line is found at its line; a crash-torn last line is
//! reported as such and cut before appending.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

use signer::audit::{self, AuditError, AuditLog, Entry, Problem};

fn entry(i: u64) -> Entry {
    Entry {
        note: None,
        client: "lighthouse-a".into(),
        frontend: i.is_multiple_of(2).then(|| "grpc".into()),
        key: format!("{:096x}", i),
        request: "eth2.attestation".into(),
        position: Some(1000 + i),
        outcome: if i % 5 == 4 {
            "refused:double_vote".into()
        } else {
            "signed".into()
        },
    }
}

fn write_log(n: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path).unwrap();
    for i in 0..n {
        log.append(entry(i)).unwrap();
    }
    log.sync().unwrap();
    (dir, path)
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn rewrite(path: &std::path::Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

#[test]
fn an_intact_log_verifies_and_reopening_continues_the_chain() {
    let (_dir, path) = write_log(10);
    let v = audit::verify(&path).unwrap().unwrap();
    assert_eq!((v.records, v.torn_tail), (10, false));
    let mut log = AuditLog::open(&path).unwrap();
    assert_eq!(log.append(entry(10)).unwrap().seq, 10);
    drop(log);
    assert_eq!(audit::verify(&path).unwrap().unwrap().records, 11);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn tampering_is_found_at_its_line() {
    let (_dir, path) = write_log(10);
    let original = lines(&path);
    let check = |edited: Vec<String>, want: Problem| {
        rewrite(&path, &edited);
        assert_eq!(audit::verify(&path).unwrap(), Err(want.clone()), "{want}");
        rewrite(&path, &original);
    };
    // An outcome changed on line 4: line 5's prev no longer matches.
    let mut edited = original.clone();
    edited[3] = edited[3].replace("\"signed\"", "\"refused:double_vote\"");
    assert_ne!(edited[3], original[3]);
    check(edited, Problem::Chain { line: 5 });
    // Line 6 removed.
    let mut removed = original.clone();
    removed.remove(5);
    check(
        removed,
        Problem::Sequence {
            line: 6,
            found: 6,
            expected: 5,
        },
    );
    // Two lines swapped.
    let mut swapped = original.clone();
    swapped.swap(2, 3);
    check(
        swapped,
        Problem::Sequence {
            line: 3,
            found: 3,
            expected: 2,
        },
    );
    // The newest line has no successor to pin it: an edit there verifies, but
    // moves the head hash. (Whoever keeps the head elsewhere — logs,
    // metrics, a second copy — detects it; docs/operations note this.)
    let head = audit::verify(&path).unwrap().unwrap().head;
    let mut last = original.clone();
    last[9] = last[9].replace("lighthouse-a", "lighthouse-b");
    rewrite(&path, &last);
    assert_ne!(audit::verify(&path).unwrap().unwrap().head, head);
    rewrite(&path, &original);
    // Garbage.
    let mut garbage = original.clone();
    garbage[0] = "{not json".into();
    check(garbage, Problem::Malformed { line: 1 });
}

#[test]
fn a_torn_tail_is_reported_and_cut_before_appending() {
    let (_dir, path) = write_log(3);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    use std::io::Write;
    f.write_all(b"{\"seq\":3,\"time\":\"2026-").unwrap();
    drop(f);
    let v = audit::verify(&path).unwrap().unwrap();
    assert_eq!((v.records, v.torn_tail), (3, true));
    let mut log = AuditLog::open(&path).unwrap();
    log.append(entry(3)).unwrap();
    drop(log);
    let v = audit::verify(&path).unwrap().unwrap();
    assert_eq!((v.records, v.torn_tail), (4, false));
}

#[test]
fn a_broken_log_is_not_appended_to() {
    let (_dir, path) = write_log(3);
    let mut l = lines(&path);
    l.remove(1);
    rewrite(&path, &l);
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditError::Broken {
            problem: Problem::Sequence { line: 2, .. },
            ..
        })
    ));
}

#[test]
fn audit_verify_cli() {
    let (_dir, path) = write_log(5);
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_signer"))
            .args(["audit", "verify"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
        )
    };
    let (code, out) = run();
    assert_eq!(
        (code, out.lines().next()),
        (
            0,
            Some(format!("{}: 5 records, chain intact", path.display()).as_str())
        )
    );
    // Without the database, it says what it could not check.
    assert!(
        out.contains("not compared with the slashing database's anchor"),
        "{out}"
    );
    let mut l = lines(&path);
    l[1] = l[1].replace("eth2.attestation", "eth2.block");
    rewrite(&path, &l);
    assert_eq!(
        run(),
        (
            1,
            format!(
                "{}: line 3: hash chain broken (line 2 was altered, or lines are missing)\n",
                path.display()
            )
        )
    );
}

#[test]
fn a_log_has_one_writer_at_a_time() {
    let (_dir, path) = write_log(2);
    let first = AuditLog::open(&path).unwrap();
    let second = AuditLog::open(&path);
    assert!(
        matches!(&second, Err(AuditError::InUse { path: p }) if *p == path),
        "{second:?}"
    );
    let message = second.unwrap_err().to_string();
    assert!(message.contains("in use by another process"), "{message}");
    drop(first);
    let mut again = AuditLog::open(&path).unwrap();
    assert_eq!(again.append(entry(2)).unwrap().seq, 2);
}
