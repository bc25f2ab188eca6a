//! `signer dev`: until the daemon exists, says so and shows the slashing
//! database refusing a double proposal in a throwaway directory.

use std::process::ExitCode;

use slashing_db::{
    BlockProposal, BlsPublicKey, Config, GenesisRoot, Proposal, SigningRoot, SlashingDb, Slot,
};

pub fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    println!(
        "signer {}: the signing daemon is not built yet (it comes with the daemon issue).",
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "What exists is its core, the slashing-protection database. A throwaway demonstration:"
    );
    let dir = std::env::temp_dir().join(format!("signer-dev-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = SlashingDb::open(&dir.join("slashing.sqlite"), Config::default())?;
    let block = |root: u8| {
        Proposal::Block(BlockProposal {
            pubkey: BlsPublicKey([0xa9; 48]),
            genesis_root: GenesisRoot([0; 32]),
            slot: Slot(100),
            signing_root: SigningRoot([root; 32]),
        })
    };
    for (what, p) in [
        ("block A at slot 100", block(1)),
        ("block A again", block(1)),
        ("block B at slot 100", block(2)),
    ] {
        match db.check_and_record(p)? {
            Ok(safe) => println!("  {what:<22} → safe ({safe:?}), recorded durably before signing"),
            Err(refusal) => println!("  {what:<22} → refused: {refusal}"),
        }
    }
    db.close();
    std::fs::remove_dir_all(&dir)?;
    Ok(ExitCode::SUCCESS)
}
