//! Test helper for `tests/crash.rs`: hammers a slashing database from many
//! threads and prints each decision that came back `Valid`, one line each,
//! flushed, only after the call returned. The parent kills it at random.
//!
//! Usage: `slashing-hammer DB_PATH BASE THREADS`
//! Lines: `B <key> <slot> <root-hex>` and `A <key> <source> <target> <root-hex>`.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use slashing_db::*;

/// Keys each thread owns (its own messages never conflict with another thread's).
pub const KEYS_PER_THREAD: usize = 4;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slashing-hammer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, base, threads] = args.as_slice() else {
        return Err("usage: slashing-hammer DB_PATH BASE THREADS".into());
    };
    let base: u64 = base.parse()?;
    let threads: usize = threads.parse()?;
    let db = Arc::new(SlashingDb::open(
        path.as_ref(),
        Config {
            genesis_root: Some(tests::GENESIS),
            ..Config::default()
        },
    )?);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || -> Result<(), String> {
                for n in 0u64.. {
                    let key = t * KEYS_PER_THREAD + (n as usize % KEYS_PER_THREAD);
                    let epoch = base + n / KEYS_PER_THREAD as u64;
                    let root = tests::root_for(base, n, t);
                    let (proposal, line) = if n % 2 == 0 {
                        (
                            tests::attestation(key, epoch, epoch + 1, root),
                            format!("A {key} {epoch} {} {}", epoch + 1, root.to_hex()),
                        )
                    } else {
                        (
                            tests::block(key, epoch, root),
                            format!("B {key} {epoch} {}", root.to_hex()),
                        )
                    };
                    match db.check_and_record(proposal) {
                        Ok(Ok(Safe::Valid)) => {
                            let mut out = std::io::stdout().lock();
                            writeln!(out, "{line}")
                                .and_then(|()| out.flush())
                                .map_err(|e| e.to_string())?;
                        }
                        other => return Err(format!("unexpected answer for {line}: {other:?}")),
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "thread panicked")??;
    }
    Ok(())
}
