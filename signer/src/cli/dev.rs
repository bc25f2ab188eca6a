//! `signer dev [DIR]`: the quick start. Writes a throwaway setup with
//! `init --dev` if DIR does not exist yet, says how to call it, and serves.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use signer::server::Overrides;

#[derive(Debug, Args)]
pub struct DevArgs {
    /// The setup directory (created on first use).
    #[arg(default_value = "signer-dev")]
    dir: PathBuf,
}

pub fn run(a: DevArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let dir = &a.dir;
    if dir.exists() {
        eprintln!("signer dev: using the setup in {}", dir.display());
    } else {
        super::init::create_dev(dir)?;
        eprintln!(
            "signer dev: wrote a throwaway setup to {} (CA, certificates, one key per scheme, policy)",
            dir.display()
        );
    }
    let me = std::env::args().next().unwrap_or_else(|| "signer".into());
    let d = dir.display();
    eprintln!("signer dev: starting (keys, database, listeners)…");
    // Said once the listeners accept: before, it promised a server that
    // could still fail to bind.
    let announce = format!(
        "signer dev: serving. From another terminal:\n    {me} client --dir {d} keys\n    \
         {me} client --dir {d} sign-attestation --target 1\n    {me} client --dir {d} sign-vote --height 1\n    \
         curl -s http://127.0.0.1:9100/metrics | grep signer_requests\n  \
         Stop with Ctrl-C; the slashing database in {d}/data keeps what was signed."
    );
    super::serve::serve(
        &dir.join("signer.toml"),
        Overrides {
            announce: Some(announce),
            ..Overrides::default()
        },
    )
}
