//! The README's commands work as written: its first two lines are the run
//! and test commands, `signer dev` comes up on a fresh directory, and every
//! command of "Try it" does what its comment says. (`cargo run --release -p
//! signer --` is replaced by the binary this build produced.)
//!
//! `signer dev` listens on the fixed ports of the dev setup (9000, 9100): if
//! another dev signer runs on this machine, this test says so and fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const PREFIX: &str = "cargo run --release -p signer -- ";

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap()
}

/// The lines of the code block following `marker`.
fn block_after(text: &str, marker: &str) -> Vec<String> {
    let rest = &text[text
        .find(marker)
        .unwrap_or_else(|| panic!("README lacks {marker:?}"))..];
    let start = rest.find("```sh\n").unwrap() + "```sh\n".len();
    let end = rest[start..].find("```").unwrap();
    rest[start..start + end]
        .lines()
        .map(str::to_owned)
        .collect()
}

fn args_of(line: &str) -> Vec<String> {
    let command = line.split('#').next().unwrap();
    command
        .strip_prefix(PREFIX)
        .unwrap_or_else(|| panic!("not a signer command: {line}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_readme_opens_with_the_run_and_test_commands_and_they_work() {
    let text = readme();
    let top = block_after(&text, "# signer");
    assert!(top[0].starts_with(&format!("{PREFIX}dev ")), "{}", top[0]);
    assert!(top[1].starts_with("scripts/test "), "{}", top[1]);
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/run")).unwrap();
    assert!(
        ci.lines()
            .any(|l| l.trim() == "exec scripts/test" || l.trim() == "scripts/test"),
        "{ci}"
    );

    // A fresh directory, as after a clone.
    let cwd = tempfile::tempdir().unwrap();
    let bin = tests::daemon::signer_bin();
    let log = cwd.path().join("dev.log");
    let mut dev = Command::new(&bin)
        .args(args_of(&top[0]))
        .current_dir(cwd.path())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = dev.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines {}
    });
    let ready = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(Some(Ok(l))) => l,
        other => {
            let _ = dev.kill();
            panic!(
                "signer dev did not get ready ({other:?}; is another dev signer using ports 9000/9100?):\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
    };
    assert_eq!(
        ready,
        "ready grpc=127.0.0.1:9000 metrics=127.0.0.1:9100 http=127.0.0.1:9001"
    );
    assert!(cwd.path().join("signer-dev/signer.toml").exists());

    let try_it = block_after(&text, "## Try it");
    let mut ran = 0;
    for line in &try_it {
        if let Some(args) = line.strip_prefix("curl -s --cacert ") {
            // curl -s --cacert CA --cert CERT --key KEY https://localhost:PORT/PATH
            let f: Vec<&str> = args.split_whitespace().collect();
            assert_eq!((f[1], f[3]), ("--cert", "--key"), "{line}");
            let url = f[5].strip_prefix("https://localhost:").unwrap();
            let (port, path) = url.split_once('/').unwrap();
            let addr = format!("127.0.0.1:{port}").parse().unwrap();
            let p = |rel: &str| cwd.path().join(rel);
            let (status, body) = tests::daemon::https_with(
                &p(f[0]),
                Some((&p(f[2]), &p(f[4]))),
                addr,
                "GET",
                &format!("/{path}"),
                &[],
                "",
            )
            .unwrap();
            assert_eq!(status, 200, "{line}: {body}");
            assert!(body.starts_with("[\"0x"), "{line}: {body}");
            ran += 1;
            continue;
        }
        if let Some(url) = line.strip_prefix("curl -s http://") {
            let (hostport, rest) = url.split_once('/').unwrap();
            let path = format!("/{}", rest.split_whitespace().next().unwrap());
            let mut s = std::net::TcpStream::connect(hostport).unwrap();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            let wanted = line.rsplit("grep ").next().unwrap().trim();
            assert!(body.contains(wanted), "{line}: no {wanted} in\n{body}");
            ran += 1;
            continue;
        }
        let out = Command::new(&bin)
            .args(args_of(line))
            .current_dir(cwd.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let comment = line.split('#').nth(1).unwrap_or_default();
        if comment.contains("refused: SLASHABLE") {
            assert_eq!(out.status.code(), Some(1), "{line}: {stdout}");
            assert!(stdout.starts_with("refused SLASHABLE"), "{line}: {stdout}");
            assert!(stdout.contains("evidence double_vote"), "{line}: {stdout}");
        } else {
            assert!(
                out.status.success(),
                "{line}: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            if comment.contains("signed") {
                assert!(stdout.starts_with("signature 0x"), "{line}: {stdout}");
            } else {
                assert!(
                    stdout.contains("bls") && stdout.contains("ed25519"),
                    "{line}: {stdout}"
                );
            }
        }
        ran += 1;
    }
    assert_eq!(ran, try_it.len());
    assert!(ran >= 5);

    Command::new("kill")
        .arg(dev.id().to_string())
        .status()
        .unwrap();
    assert!(
        dev.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    println!("README: signer dev and {ran} commands of \"Try it\" ran as documented");
}
