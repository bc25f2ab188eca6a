//! `signer audit verify`: checks the audit log's hash chain and, given the
//! database, its anchor. `signer audit acknowledge`: records a known loss of
//! audit records so that the signer starts again (decision 0008).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use signer::audit::{self, AnchorCheck, AuditLog, Entry};
use slashing_db::SlashingDb;

type Error = Box<dyn std::error::Error>;

/// Which log, and which database anchors it.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// The audit log (default with --config: the configured one).
    file: Option<PathBuf>,
    /// The daemon's configuration: its audit log, its [audit] name and the
    /// slashing database holding the anchor (SQLite or PostgreSQL).
    #[arg(long, conflicts_with = "db")]
    config: Option<PathBuf>,
    /// Or: the SQLite slashing database holding the anchor (with FILE).
    #[arg(long)]
    db: Option<PathBuf>,
    /// The log's name in the database (default: the configured [audit]
    /// name, or `<host>:<absolute path of the log>`).
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check that no line was altered, removed, inserted or reordered and,
    /// with --config or --db, that the log still holds every record the
    /// slashing database anchors (nothing removed from its end, not
    /// replaced). Exit 1 if not.
    Verify(LogArgs),
    /// Accept a known loss of audit records (a deleted, truncated or
    /// replaced log) so that the signer starts again: appends an
    /// `audit.acknowledge` record with your reason to the log (a new log if
    /// it is gone) and anchors the log there. Stop the signer first.
    Acknowledge {
        #[command(flatten)]
        log: LogArgs,
        /// Why the records are gone and who decided to go on (kept in the
        /// audit record).
        #[arg(long)]
        reason: String,
    },
}

pub fn run(c: AuditCommand) -> Result<ExitCode, Error> {
    match c {
        AuditCommand::Verify(args) => verify(args),
        AuditCommand::Acknowledge { log, reason } => acknowledge(log, &reason),
    }
}

/// The log file, its name, and the database (if one was given).
fn resolve(args: LogArgs) -> Result<(PathBuf, String, Option<SlashingDb>), Error> {
    if let Some(config) = &args.config {
        let c = signer::config::Config::load(config)?;
        let audit = c
            .audit
            .clone()
            .ok_or("the configuration has no [audit] file")?;
        let file = args.file.unwrap_or_else(|| audit.file.clone());
        let name = args.name.unwrap_or_else(|| audit.anchor_name());
        let db = signer::storage::open(&c.slashing, None)
            .map_err(|e| format!("slashing database: {e}"))?;
        return Ok((file, name, Some(db)));
    }
    let file = args
        .file
        .ok_or("give the audit log FILE, or --config signer.toml")?;
    let name = args.name.unwrap_or_else(|| {
        signer::config::Audit {
            file: file.clone(),
            name: None,
            flush_interval_ms: None,
        }
        .anchor_name()
    });
    let db = args
        .db
        .map(|p| super::slashing::open(&p, false))
        .transpose()?;
    Ok((file, name, db))
}

/// The anchor for `name`; an error naming the anchors there are when the
/// database has some, but none by that name.
fn anchor_of(db: &SlashingDb, name: &str) -> Result<Option<slashing_db::AuditAnchor>, Error> {
    if let Some(a) = db.audit_anchor(name)? {
        return Ok(Some(a));
    }
    let all = db.audit_anchors()?;
    if all.is_empty() {
        return Ok(None);
    }
    let names: Vec<String> = all
        .iter()
        .map(|(n, a)| format!("  {n} ({} records)", a.records))
        .collect();
    Err(format!(
        "the slashing database anchors no audit log named {name:?}; it anchors:\n{}\n\
         give the log's name with --name (it is [audit] name, or <host>:<absolute path> of the log where the signer ran)",
        names.join("\n")
    )
    .into())
}

fn verify(args: LogArgs) -> Result<ExitCode, Error> {
    let (file, name, db) = resolve(args)?;
    let Some(db) = db else {
        return match audit::verify(&file)? {
            Ok(v) => {
                let torn = if v.torn_tail {
                    " (the last line is incomplete: a crash during a write, not part of the chain)"
                } else {
                    ""
                };
                println!(
                    "{}: {} records, chain intact{torn}",
                    file.display(),
                    v.records
                );
                println!(
                    "  not compared with the slashing database's anchor: records removed from the end, \
                     or a replaced file, are only found with --config (or --db)"
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(problem) => {
                println!("{}: {problem}", file.display());
                Ok(ExitCode::FAILURE)
            }
        };
    };
    let anchor = anchor_of(&db, &name)?;
    let check = audit::check_anchor(&file, anchor.as_ref())?;
    println!("{}: {check}", file.display());
    if let AnchorCheck::Matches(v) | AnchorCheck::Unanchored(v) = &check
        && v.torn_tail
    {
        println!("  the last line is incomplete: a crash during a write, not part of the chain");
    }
    Ok(if check.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(super) fn operator() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()))
}

fn acknowledge(args: LogArgs, reason: &str) -> Result<ExitCode, Error> {
    let reason = reason.trim();
    if reason.len() < 10 {
        return Err("--reason: say what happened and who decided to go on (at least 10 characters); it is kept in the audit log".into());
    }
    let (file, name, db) = resolve(args)?;
    let db = db.ok_or(
        "give --config signer.toml (or --db FILE): the anchor to move is in the slashing database",
    )?;
    let anchor = anchor_of(&db, &name)?;
    let check = audit::check_anchor(&file, anchor.as_ref())?;
    if check.is_ok() {
        println!("{}: {check}; nothing to acknowledge", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    if let AnchorCheck::Broken(problem) = &check {
        return Err(format!(
            "{}: {problem}: a broken chain cannot be continued. Move the file aside (keep it as evidence) \
             and run this again: a new log then starts with the acknowledgement",
            file.display()
        )
        .into());
    }
    let before = anchor
        .as_ref()
        .map(|a| format!("{} records, head {}", a.records, hex::encode(a.head)))
        .unwrap_or_default();
    let mut log = AuditLog::open(&file)?;
    let record = log.append(Entry {
        client: format!("operator:{}", operator()),
        frontend: Some("cli".into()),
        key: String::new(),
        request: "audit.acknowledge".into(),
        position: None,
        outcome: "acknowledged".into(),
        note: Some(format!("{reason} | found: {check} | anchor was: {before}")),
    })?;
    log.sync()?;
    let new = audit::anchor_of(log.records(), log.head());
    if !db.set_audit_anchor(&name, anchor.as_ref(), &new)? {
        return Err(format!(
            "the anchor of {name:?} moved while this ran: a signer is serving with this log; stop it and run this again \
             (record {} of {} says what was acknowledged)",
            record.seq,
            file.display()
        )
        .into());
    }
    println!(
        "{}: acknowledged ({check}).\n  recorded as audit record {} by {}; the log is anchored at {} records and the signer will start",
        file.display(),
        record.seq,
        record.client.trim_start_matches("operator:"),
        log.records()
    );
    Ok(ExitCode::SUCCESS)
}
