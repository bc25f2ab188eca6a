//! `signer client`: a small client for people and scripts, using a client
//! certificate (by default the one `signer init --dev` wrote).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use proto::v1 as pb;
use signer::client::{ClientTls, connect, explain};

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// A `signer init --dev` directory: its CA, client certificate and gRPC address.
    #[arg(long, default_value = "signer-dev")]
    dir: PathBuf,
    /// The signer's gRPC address (default: the dev setup's).
    #[arg(long, default_value = "127.0.0.1:9000")]
    addr: SocketAddr,
    /// The name the server certificate must carry.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// CA of the server certificate (default: DIR/tls/ca.pem).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Client certificate (default: DIR/tls/client.pem).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Client key (default: DIR/tls/client.key).
    #[arg(long)]
    key: Option<PathBuf>,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// List the keys this client may use.
    Keys,
    /// Sign a sample attestation (dev network: genesis validators root zero).
    SignAttestation {
        /// BLS public key (0x…); default: the first BLS key listed.
        #[arg(long)]
        key: Option<String>,
        /// Source epoch.
        #[arg(long, default_value_t = 0)]
        source: u64,
        /// Target epoch.
        #[arg(long)]
        target: u64,
        /// Beacon block root byte (vary it to see a double vote refused).
        #[arg(long, default_value_t = 1)]
        block: u8,
    },
    /// Sign a sample CometBFT prevote on the dev chain.
    SignVote {
        /// Ed25519 public key (0x…); default: the first Ed25519 key listed.
        #[arg(long)]
        key: Option<String>,
        /// Chain id.
        #[arg(long, default_value = "signer-dev-1")]
        chain_id: String,
        /// Height.
        #[arg(long)]
        height: i64,
        /// Round.
        #[arg(long, default_value_t = 0)]
        round: i32,
        /// Block hash byte (vary it to see a double sign refused).
        #[arg(long, default_value_t = 1)]
        block: u8,
    },
}

fn unhex(s: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    Ok(hex::decode(s.strip_prefix("0x").unwrap_or(s))?)
}

fn print(r: pb::SignResponse) -> ExitCode {
    match r.outcome {
        Some(pb::sign_response::Outcome::Signature(s)) => {
            println!("signature 0x{}", hex::encode(&s.signature));
            if let Some(t) = s.timestamp {
                println!("timestamp {}.{:09}", t.seconds, t.nanos);
            }
            ExitCode::SUCCESS
        }
        Some(pb::sign_response::Outcome::Refusal(r)) => {
            let reason = pb::Reason::try_from(r.reason)
                .map(|x| x.as_str_name())
                .unwrap_or("UNKNOWN");
            println!("refused {reason}: {}", r.message);
            if let Some(e) = r.evidence {
                let mut line = format!("evidence {}", e.kind);
                let fields = [
                    ("slot", e.slot.map(|v| v.to_string())),
                    ("source", e.source_epoch.map(|v| v.to_string())),
                    ("target", e.target_epoch.map(|v| v.to_string())),
                    ("height", e.height.map(|v| v.to_string())),
                    ("round", e.round.map(|v| v.to_string())),
                    ("step", e.step.map(|v| v.to_string())),
                ];
                for (name, value) in fields {
                    if let Some(v) = value {
                        line.push_str(&format!(" {name}={v}"));
                    }
                }
                if !e.signing_root.is_empty() {
                    line.push_str(&format!(" signing_root=0x{}", hex::encode(&e.signing_root)));
                }
                println!("{line}");
            }
            ExitCode::FAILURE
        }
        None => {
            println!("empty answer");
            ExitCode::FAILURE
        }
    }
}

pub fn run(a: ClientArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    signer::tls::install_crypto_provider();
    let dev = ClientTls::dev(&a.dir);
    let tls = ClientTls {
        ca: a.ca.unwrap_or(dev.ca),
        cert: a.cert.unwrap_or(dev.cert),
        key: a.key.unwrap_or(dev.key),
    }
    .config()
    .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let addr = a.addr;
        let mut c = connect(addr, &a.server_name, tls)
            .await
            .map_err(|e| format!("connecting to {addr}: {}", explain(addr, e.as_ref(), false)))?;
        // With TLS 1.3 the server judges our certificate after the handshake
        // has completed on our side: its refusal arrives with the first call.
        let call = |s: tonic::Status| -> Box<dyn std::error::Error> {
            // A status with a source came from the connection, not the signer.
            if std::error::Error::source(&s).is_some() {
                format!("calling {addr}: {}", explain(addr, &s, true)).into()
            } else {
                s.into()
            }
        };
        let first_key = |scheme: &'static str| {
            let mut c = c.clone();
            async move {
                let keys = c
                    .list_keys(pb::ListKeysRequest {})
                    .await
                    .map_err(call)?
                    .into_inner()
                    .keys;
                keys.into_iter()
                    .find(|k| k.scheme == scheme)
                    .map(|k| k.public_key)
                    .ok_or_else(|| format!("no {scheme} key is granted to this client").into())
            }
        };
        let code = match a.command {
            ClientCommand::Keys => {
                let keys = c
                    .list_keys(pb::ListKeysRequest {})
                    .await
                    .map_err(call)?
                    .into_inner()
                    .keys;
                for k in keys {
                    println!(
                        "{:<10} 0x{}  {}",
                        k.scheme,
                        hex::encode(&k.public_key),
                        k.operations.join(",")
                    );
                }
                ExitCode::SUCCESS
            }
            ClientCommand::SignAttestation {
                key,
                source,
                target,
                block,
            } => {
                let public_key = match key {
                    Some(k) => unhex(&k)?,
                    None => first_key("bls")
                        .await
                        .map_err(|e: Box<dyn std::error::Error>| e)?,
                };
                let request = signer::client::dev_attestation(&public_key, source, target, block);
                print(c.sign(request).await.map_err(call)?.into_inner())
            }
            ClientCommand::SignVote {
                key,
                chain_id,
                height,
                round,
                block,
            } => {
                let public_key = match key {
                    Some(k) => unhex(&k)?,
                    None => first_key("ed25519")
                        .await
                        .map_err(|e: Box<dyn std::error::Error>| e)?,
                };
                let request = signer::client::vote_request(
                    &public_key,
                    &chain_id,
                    pb::VoteType::Prevote,
                    (height, round),
                    block,
                    1_700_000_000,
                );
                print(c.sign(request).await.map_err(call)?.into_inner())
            }
        };
        Ok(code)
    })
}
