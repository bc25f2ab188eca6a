//! `signer completions SHELL` and `signer man [--dir DIR]`: shell
//! completion scripts and man pages, generated from the same clap
//! definitions the command line is parsed with, so they cannot drift.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory};

use super::Cli;

type Error = Box<dyn std::error::Error>;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write signer.1 and one page per subcommand (signer-keys-disable.1, …)
    /// here instead of printing signer.1.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Prints the completion script; where to put it is in `--help`.
pub fn completions(a: CompletionsArgs) -> Result<ExitCode, Error> {
    use std::io::Write as _;
    let mut cmd = Cli::command();
    // Into a buffer: clap_complete panics when its writer fails (`| head`).
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "signer", &mut script);
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Prints signer(1), or writes every page to a directory.
pub fn man(a: ManArgs) -> Result<ExitCode, Error> {
    // `signer help` repeats --help; it gets no page, so no page names it.
    let cmd = Cli::command().disable_help_subcommand(true);
    match a.dir {
        None => {
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let pages = std::fs::read_dir(&dir)
                .map(|d| d.filter_map(Result::ok).count())
                .unwrap_or(0);
            eprintln!(
                "wrote {pages} man pages to {} (try: man -l {}/signer.1)",
                dir.display(),
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
