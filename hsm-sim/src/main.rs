//! `hsm-sim kms [--listen ADDR] [--faults FILE] [--canned]`: serves the KMS
//! simulator and prints `ready http://ADDR` once it listens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut faults: Option<PathBuf> = None;
    let mut canned = false;
    let mut it = args.iter();
    if it.next().map(String::as_str) != Some("kms") {
        eprintln!("usage: hsm-sim kms [--listen ADDR] [--faults FILE] [--canned]");
        return ExitCode::from(2);
    }
    while let Some(a) = it.next() {
        match a.as_str() {
            "--listen" => match it.next().and_then(|v| v.parse().ok()) {
                Some(v) => listen = v,
                None => {
                    eprintln!("--listen needs an address like 127.0.0.1:0");
                    return ExitCode::from(2);
                }
            },
            "--faults" => faults = it.next().map(PathBuf::from),
            "--canned" => canned = true,
            other => {
                eprintln!("unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(hsm_sim::kms::serve(listen, faults, canned)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hsm-sim kms: {e}");
            ExitCode::FAILURE
        }
    }
}
