//! `signer slashing import|export|prune|inspect --db PATH`: offline work on
//! the slashing-protection database. The database is locked by whoever has it
//! open, so these refuse to run while a daemon holds it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use slashing_db::{Config, DbError, GenesisRoot, Interchange, PruneConfig, SlashingDb};

#[derive(Debug, Subcommand)]
pub enum SlashingCommand {
    /// Merge an EIP-3076 interchange file into the database (atomically).
    Import {
        /// The database file.
        #[arg(long)]
        db: PathBuf,
        /// The interchange file.
        file: PathBuf,
    },
    /// Write the complete history as an EIP-3076 interchange file.
    Export {
        /// The database file.
        #[arg(long)]
        db: PathBuf,
        /// Where to write (standard output if absent).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Delete old history, raising watermarks so that nothing becomes signable.
    Prune {
        /// The database file.
        #[arg(long)]
        db: PathBuf,
        /// Attestations older than this many epochs before each validator's newest are deleted.
        #[arg(long)]
        keep_epochs: u64,
        /// Blocks older than this many slots before each validator's newest are deleted.
        #[arg(long)]
        keep_slots: u64,
    },
    /// Summarise what the database protects.
    Inspect {
        /// The database file.
        #[arg(long)]
        db: PathBuf,
    },
}

pub(super) fn open(path: &Path, create: bool) -> Result<SlashingDb, Box<dyn std::error::Error>> {
    if !create && !path.exists() {
        return Err(format!("{}: no such database", path.display()).into());
    }
    SlashingDb::open(path, Config::default()).map_err(|e| match e {
        DbError::InUse { .. } => format!(
            "{}: in use by another process (is the signer running? stop it first)",
            path.display()
        )
        .into(),
        e => e.into(),
    })
}

pub fn run(c: SlashingCommand) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match c {
        SlashingCommand::Import { db, file } => {
            let f = std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let interchange = Interchange::from_reader(f)?;
            let db = open(&db, true)?;
            let s = db.import_interchange(interchange)?;
            println!(
                "imported {} validator entries: {} blocks, {} attestations",
                s.validators, s.blocks, s.attestations
            );
        }
        SlashingCommand::Export { db, output } => {
            let db = open(&db, false)?;
            let interchange = db.export_interchange()?;
            match output {
                Some(path) => {
                    let f = std::fs::File::create(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    interchange.to_writer(f)?;
                    eprintln!(
                        "exported {} validators to {}",
                        interchange.data.len(),
                        path.display()
                    );
                }
                None => interchange.to_writer(std::io::stdout().lock())?,
            }
        }
        SlashingCommand::Prune {
            db,
            keep_epochs,
            keep_slots,
        } => {
            let db = open(&db, false)?;
            let s = db.prune(PruneConfig {
                keep_slots,
                keep_epochs,
            })?;
            println!(
                "pruned {} blocks and {} attestations; watermarks raised",
                s.blocks, s.attestations
            );
        }
        SlashingCommand::Inspect { db } => {
            let path = db.clone();
            let db = open(&db, false)?;
            println!("database:     {}", path.display());
            let pinned = db.genesis_root()?;
            match pinned {
                Some(GenesisRoot(r)) => {
                    println!("network:      genesis validators root 0x{}", hex::encode(r))
                }
                None => println!("network:      not pinned yet (nothing recorded)"),
            }
            if pinned.is_some() {
                let x = db.export_interchange()?;
                let blocks: usize = x.data.iter().map(|v| v.signed_blocks.len()).sum();
                let atts: usize = x.data.iter().map(|v| v.signed_attestations.len()).sum();
                println!(
                    "validators:   {} ({blocks} blocks, {atts} attestations)",
                    x.data.len()
                );
            }
            let states = db.cometbft_states()?;
            println!("cometbft:     {} key/chain positions", states.len());
            for (key, chain, r) in states {
                println!(
                    "  {} on {}: last {} (signature {})",
                    hex::encode(key.as_bytes()),
                    chain,
                    r.hrs,
                    if r.signature.is_some() {
                        "stored"
                    } else {
                        "not stored"
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
