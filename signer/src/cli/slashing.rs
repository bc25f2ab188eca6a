//! `signer slashing import|export|prune|inspect --db PATH | --config FILE`
//! and `signer slashing migrate`. An SQLite file is locked by whoever has it
//! open, so these refuse to run while a daemon holds it; the shared
//! PostgreSQL database (`--config`) takes them while instances serve, each
//! one transaction under the same per-key locks as signing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use slashing_db::{Config, DbError, GenesisRoot, Interchange, PruneConfig, SlashingDb};

/// Which database: an SQLite file, or the `[slashing]` section of a
/// configuration file (SQLite or the shared PostgreSQL database).
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The SQLite database file.
    #[arg(long, conflicts_with = "config", required_unless_present = "config")]
    db: Option<PathBuf>,
    /// The daemon's configuration: its [slashing] section names the database
    /// (needed for PostgreSQL; safe while instances are serving).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SlashingCommand {
    /// Merge an EIP-3076 interchange file into the database (atomically).
    Import {
        #[command(flatten)]
        target: Target,
        /// The interchange file.
        file: PathBuf,
    },
    /// Write the complete history as an EIP-3076 interchange file.
    Export {
        #[command(flatten)]
        target: Target,
        /// Where to write (standard output if absent). An existing file is
        /// not replaced unless --force.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Replace an existing --output file.
        #[arg(long, requires = "output")]
        force: bool,
    },
    /// Delete old history, raising watermarks so that nothing becomes signable.
    Prune {
        #[command(flatten)]
        target: Target,
        /// Attestations older than this many epochs before each validator's newest are deleted.
        #[arg(long)]
        keep_epochs: u64,
        /// Blocks older than this many slots before each validator's newest are deleted.
        #[arg(long)]
        keep_slots: u64,
    },
    /// Summarise what the database protects (and, for PostgreSQL, how durable it is).
    Inspect {
        #[command(flatten)]
        target: Target,
    },
    /// Copy an SQLite history into the database a configuration names (the
    /// shared PostgreSQL one), then check that every record arrived. Refused
    /// if the target protects another network. Stop the SQLite signer first.
    Migrate {
        /// The SQLite database file to copy from.
        #[arg(long)]
        from: PathBuf,
        /// The configuration whose [slashing] section is the target.
        #[arg(long)]
        to_config: PathBuf,
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

fn open_target(
    t: &Target,
    create: bool,
) -> Result<(String, SlashingDb), Box<dyn std::error::Error>> {
    match (&t.db, &t.config) {
        (Some(db), _) => Ok((db.display().to_string(), open(db, create)?)),
        (None, Some(config)) => open_config(config),
        (None, None) => Err("give --db FILE or --config FILE".into()),
    }
}

fn open_config(config: &Path) -> Result<(String, SlashingDb), Box<dyn std::error::Error>> {
    let c = signer::config::Config::load(config)?;
    let name = match (&c.slashing.database, &c.slashing.postgres) {
        (Some(db), _) => db.display().to_string(),
        (None, Some(pg)) => slashing_db::PostgresOptions::from_url(&pg.url)
            .map(|o| o.target())
            .unwrap_or_default(),
        (None, None) => String::new(),
    };
    let db = signer::storage::open(&c.slashing, None).map_err(|e| format!("{name}: {e}"))?;
    Ok((name, db))
}

pub fn run(c: SlashingCommand) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match c {
        SlashingCommand::Import { target, file } => {
            let f = std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let interchange = Interchange::from_reader(f)?;
            let (_, db) = open_target(&target, true)?;
            let s = db.import_interchange(interchange)?;
            println!(
                "imported {} validator entries: {} blocks, {} attestations",
                s.validators, s.blocks, s.attestations
            );
        }
        SlashingCommand::Export {
            target,
            output,
            force,
        } => {
            if let Some(path) = &output
                && path.exists()
                && !force
            {
                return Err(format!(
                    "{}: exists; an export does not replace a file (it may be the history another signer needs): \
                     choose another name, or add --force",
                    path.display()
                )
                .into());
            }
            let (_, db) = open_target(&target, false)?;
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
            target,
            keep_epochs,
            keep_slots,
        } => {
            let (_, db) = open_target(&target, false)?;
            let mut last = std::time::Instant::now();
            let s = db.prune_with_progress(
                PruneConfig {
                    keep_slots,
                    keep_epochs,
                },
                |done, total| {
                    if last.elapsed() >= std::time::Duration::from_secs(2) || done == total {
                        eprintln!("pruning: {done}/{total} validators");
                        last = std::time::Instant::now();
                    }
                },
            )?;
            println!(
                "pruned {} blocks and {} attestations; watermarks raised",
                s.blocks, s.attestations
            );
        }
        SlashingCommand::Migrate { from, to_config } => migrate(&from, &to_config)?,
        SlashingCommand::Inspect { target } => {
            let (name, db) = open_target(&target, false)?;
            println!("database:     {name}");
            match db.durability() {
                Ok(None) => println!("durability:   local file, fsync on every commit (SQLite)"),
                Ok(Some(d)) => println!(
                    "durability:   {} (fsync {}, synchronous standbys {}, synchronous_standby_names {:?})",
                    d.level(),
                    if d.fsync { "on" } else { "off" },
                    d.synchronous_standbys,
                    d.synchronous_standby_names
                ),
                Err(e) => println!("durability:   NOT ACCEPTABLE: {e}"),
            }
            let pinned = db.genesis_root()?;
            match pinned {
                Some(GenesisRoot(r)) => {
                    println!("network:      genesis validators root 0x{}", hex::encode(r))
                }
                None => println!("network:      not pinned yet (nothing recorded)"),
            }
            if pinned.is_some() {
                let h = db.history_summary()?;
                println!(
                    "validators:   {} ({} blocks, {} attestations recorded{})",
                    h.validators,
                    h.blocks,
                    h.attestations,
                    match h.pruned {
                        0 => String::new(),
                        n => format!("; older history of {n} pruned into watermarks"),
                    }
                );
            }
            let states = db.cometbft_states()?;
            println!("cometbft:     {} key/chain positions", states.len());
            for (key, chain, r) in states {
                println!(
                    "  {} on {}: last {}",
                    hex::encode(key.as_bytes()),
                    chain,
                    r.hrs
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Copies `from` (SQLite) into the target of `to_config`, then checks that
/// every source record is covered there.
fn migrate(from: &Path, to_config: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let source = open(from, false)?;
    let pinned = source.genesis_root()?;
    let c = signer::config::Config::load(to_config)?;
    // Opening pinned to the source's network refuses a target that protects
    // another one, before anything is written.
    let target = signer::storage::open(&c.slashing, pinned).map_err(|e| format!("target: {e}"))?;
    let mut eth = (0usize, 0usize);
    if pinned.is_some() {
        let history = source.export_interchange()?;
        eprintln!(
            "copying {} validators ({} blocks, {} attestations) …",
            history.data.len(),
            history
                .data
                .iter()
                .map(|v| v.signed_blocks.len())
                .sum::<usize>(),
            history
                .data
                .iter()
                .map(|v| v.signed_attestations.len())
                .sum::<usize>()
        );
        target.import_interchange(history.clone())?;
        let copied = target.export_interchange()?;
        eth = verify_copy(&history, &copied)?;
    }
    let states = source.cometbft_states()?;
    let mut comet = 0;
    for (key, chain, record) in states {
        target.import_cometbft_state(key.clone(), chain.clone(), record.clone())?;
        let now = target
            .cometbft_states()?
            .into_iter()
            .find(|(k, c, _)| *k == key && *c == chain)
            .map(|(_, _, r)| r.hrs);
        if now.is_none_or(|hrs| hrs < record.hrs) {
            return Err(format!(
                "CometBFT {} on {chain}: the target is below the source's {} after the copy",
                hex::encode(key.as_bytes()),
                record.hrs
            )
            .into());
        }
        comet += 1;
    }
    // Keys taken out of service: a retired key must stay retired on the
    // target. The stricter state of the two is kept (retired over disabled
    // over enabled).
    let strictness = |s: &slashing_db::KeyState| match s.state {
        slashing_db::Lifecycle::Enabled => 0,
        slashing_db::Lifecycle::Disabled => 1,
        slashing_db::Lifecycle::Retired => 2,
    };
    let existing: std::collections::HashMap<Vec<u8>, slashing_db::KeyState> =
        target.key_states()?.into_iter().collect();
    let source_states = source.key_states()?;
    for (key, state) in &source_states {
        if existing
            .get(key)
            .is_none_or(|t| strictness(state) > strictness(t))
        {
            target
                .set_key_state(key, state)?
                .map_err(|e| format!("key {}: {e}", hex::encode(key)))?;
        }
    }
    // Gloas payload attestations and envelopes (not in interchange files).
    let source_messages = source.gloas_messages()?;
    for (pubkey, lane, m) in &source_messages {
        target.import_gloas_message(*pubkey, *lane, m.clone())?;
    }
    // Checked once, against what the target holds after every copy.
    let copied_states: std::collections::HashMap<Vec<u8>, slashing_db::KeyState> =
        target.key_states()?.into_iter().collect();
    for (key, state) in &source_states {
        if copied_states
            .get(key)
            .is_none_or(|t| strictness(t) < strictness(state))
        {
            return Err(format!(
                "key {}: the target's state is weaker than the source's {:?} after the copy",
                hex::encode(key),
                state.state
            )
            .into());
        }
    }
    let copied_messages: std::collections::HashMap<_, _> = target
        .gloas_messages()?
        .into_iter()
        .map(|(pk, lane, m)| ((pk, lane), m))
        .collect();
    for (pubkey, lane, m) in &source_messages {
        let now = copied_messages.get(&(*pubkey, *lane));
        let covered = now.is_some_and(|n| {
            n.slot > m.slot || (n.slot == m.slot && n.signing_root == m.signing_root)
        });
        if !covered {
            return Err(format!(
                "{} of {pubkey} at slot {}: the target holds {:?} after the copy",
                lane.name(),
                m.slot,
                now.map(|n| n.slot)
            )
            .into());
        }
    }
    let (key_states, gloas) = (source_states.len(), source_messages.len());
    println!(
        "migrated and verified: {} blocks, {} attestations, {comet} CometBFT positions, \
         {gloas} Gloas messages, {key_states} key states; every record of {} is protected by the target",
        eth.0,
        eth.1,
        from.display()
    );
    Ok(())
}

/// Every block slot and attestation target of `source` is in `copy` with the
/// same root or an unknown one (stricter): nothing the source refuses
/// becomes signable.
fn verify_copy(
    source: &Interchange,
    copy: &Interchange,
) -> Result<(usize, usize), Box<dyn std::error::Error>> {
    use std::collections::HashMap;
    let by_key: HashMap<_, _> = copy.data.iter().map(|v| (v.pubkey, v)).collect();
    let (mut blocks, mut atts) = (0, 0);
    for v in &source.data {
        let t = by_key
            .get(&v.pubkey)
            .ok_or_else(|| format!("validator {} missing after the copy", v.pubkey))?;
        for b in &v.signed_blocks {
            let ok = t.signed_blocks.iter().any(|x| {
                x.slot == b.slot && (x.signing_root == b.signing_root || x.signing_root.is_none())
            });
            if !ok {
                return Err(format!(
                    "validator {}: block at slot {} missing after the copy",
                    v.pubkey, b.slot
                )
                .into());
            }
            blocks += 1;
        }
        for a in &v.signed_attestations {
            let ok = t.signed_attestations.iter().any(|x| {
                x.target_epoch == a.target_epoch
                    && x.source_epoch >= a.source_epoch
                    && (x.signing_root == a.signing_root || x.signing_root.is_none())
            });
            if !ok {
                return Err(format!(
                    "validator {}: attestation {}→{} missing after the copy",
                    v.pubkey, a.source_epoch, a.target_epoch
                )
                .into());
            }
            atts += 1;
        }
    }
    Ok((blocks, atts))
}
