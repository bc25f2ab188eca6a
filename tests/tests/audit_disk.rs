//! The audit log on a disk that fills up (issue 17). Before: a record cut
//! short by ENOSPC stayed in the file; when space came back the next record
//! was appended after it, `signer audit verify` failed from that line on and
//! the daemon refused to start; while the disk was full `/readyz` stayed 200
//! and nothing was logged.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;

use proto::v1 as pb;
use tests::daemon::{Setup, attestation, refusal_of};

/// A tmpfs of `size` on a fresh directory, unmounted on drop.
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
            .unwrap_or_else(|e| panic!("this test mounts a small tmpfs and needs `mount`: {e}"));
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill a real file system and needs root (CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
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

/// Fills the file system at `dir` with one file, to the last byte.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    // What a 4 KiB write could not take.
    while f.write_all(&chunk[..1]).is_ok() {}
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_the_audit_named_and_the_log_survives_it() {
    let disk = Tmpfs::mount("1m");
    let setup = Setup::new();
    let log = disk.path().join("audit.jsonl");
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    let (head, keys) = config.split_once("\n[[keys]]").unwrap();
    setup.write(
        "signer.toml",
        &format!(
            "{head}\n[audit]\nfile = \"{}\"\n\n[[keys]]{keys}",
            log.display()
        ),
    );
    let d = setup.start();
    let mut vc = d.client(setup.client_tls("vc")).await;
    let ask = |source: u64| attestation(&setup.bls, source, source + 1, 1);
    assert_eq!(
        refusal_of(vc.sign(ask(0)).await.unwrap().into_inner()),
        None
    );

    let filler = fill(disk.path());
    // The disk is full (the log's last page may still take a few records:
    // tmpfs allocates whole pages). Then: refused, named, counted, logged,
    // and not ready.
    let mut signed = 1;
    let mut source = 1;
    loop {
        assert!(source < 100, "a full disk never refused a request");
        let r = vc.sign(ask(source)).await.unwrap().into_inner();
        source += 1;
        match refusal_of(r) {
            None => signed += 1,
            Some(pb::Reason::BackendUnavailable) => break,
            Some(other) => panic!("{other:?}"),
        }
    }
    for _ in 0..4 {
        let r = vc.sign(ask(source)).await.unwrap().into_inner();
        source += 1;
        assert_eq!(
            refusal_of(r),
            Some(pb::Reason::BackendUnavailable),
            "refused while the disk is full"
        );
    }
    assert!(d.metric("signer_audit_write_failures_total") >= 5.0);
    let (status, body) = d.http("GET", "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("audit log: last record not written:"),
        "{body}"
    );
    assert!(
        d.log()
            .contains("audit log: a record could not be written; every request is refused"),
        "{}",
        d.log()
    );

    // Space comes back: the next request signs, the log verifies, and the
    // daemon starts again on it.
    std::fs::remove_file(filler).unwrap();
    assert_eq!(
        refusal_of(vc.sign(ask(source)).await.unwrap().into_inner()),
        None
    );
    signed += 1;
    assert!(d.log().contains("audit log: records are written again"));
    assert!(d.stop().success());
    let out = Command::new(tests::daemon::signer_bin())
        .args(["audit", "verify"])
        .arg(&log)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The refused requests were not recorded (they were never answered
    // with a record), the signed ones were.
    assert!(stdout.contains(&format!("{signed} records")), "{stdout}");
    let d = setup.start();
    let mut vc = d.client(setup.client_tls("vc")).await;
    assert_eq!(
        refusal_of(vc.sign(ask(source + 1)).await.unwrap().into_inner()),
        None
    );
}
