//! `signer --version` names the commit (issue 19: it used to say only the
//! release), checked against git itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn version_names_the_release_and_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_signer"))
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let git = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("this test compares with git, which the build also uses");
    let head = String::from_utf8(git.stdout).unwrap();
    assert_eq!(
        text,
        format!(
            "signer {} (commit {})\n",
            env!("CARGO_PKG_VERSION"),
            head.trim()
        )
    );
    assert!(signer::metrics::Metrics::new().encode().contains(&format!(
        "signer_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        head.trim()
    )));
}
