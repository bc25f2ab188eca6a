//! Independent implementations the tests compare against, run as child
//! processes: Lodestar from npm (`tests/lodestar/`, `npm ci` by
//! scripts/test: its SSZ types and its Keymanager client) and the Python
//! reference of Commit-Boost's signatures (`tests/commit_boost/`).

use std::path::Path;

use crate::daemon::panic_str;

/// `tests/lodestar`, after checking its packages are installed (a test
/// fails with what to run, rather than skipping).
pub fn lodestar_dir() -> &'static Path {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/lodestar"));
    assert!(
        dir.join("node_modules/@lodestar/types").exists(),
        "Lodestar's packages are missing: run `npm ci` in {} (scripts/test does)",
        dir.display()
    );
    dir
}

/// Runs `cmd` (an independent implementation: node, python3), writes
/// `input` to its standard input and reads one JSON value per line of its
/// standard output. Panics with `hint` (what to install) when it cannot run,
/// and with its standard error when it fails.
pub fn json_lines(
    mut cmd: std::process::Command,
    input: String,
    hint: &str,
) -> Vec<serde_json::Value> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic_str(&format!("{cmd:?} cannot run ({e}): {hint}")));
    // Written from a thread, so neither side waits on a full pipe; a write
    // error (the child exited early) shows as the child's failure below.
    let mut stdin = child
        .stdin
        .take()
        .unwrap_or_else(|| panic_str(&format!("{cmd:?}: no standard input")));
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic_str(&format!("{cmd:?}: {e}")));
    let _ = writer.join();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({hint}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic_str(&format!("{cmd:?} printed {l:?}: {e}")))
        })
        .collect()
}
