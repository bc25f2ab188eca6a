//! `signer init --dev DIR`: writes a complete, working, throwaway setup — a
//! CA, server and client certificates, one key of each scheme in our key-file
//! format, a policy granting the dev client the everyday operations, and a
//! configuration tying them together. For trying the signer, never for keys
//! that matter: the CA key stays in DIR.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use signer::backend::soft::keystore::Kdf;
use signer::backend::soft::{self, Scheme, SecretKey};
use zeroize::Zeroizing;

/// The dev client's identity (a URI SAN in `tls/client.pem`).
pub const DEV_CLIENT: &str = "spiffe://signer.dev/client";
/// The dev setup's CometBFT chain.
pub const DEV_CHAIN: &str = "signer-dev-1";

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Write a throwaway development setup (the only kind generated so far).
    #[arg(long)]
    dev: bool,
    /// The directory to create.
    dir: PathBuf,
}

fn write_file(path: &Path, data: &[u8], private: bool) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write;
    let mode = if private { 0o600 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

/// A key and the secret it was made from.
type NewKey = (SecretKey, Zeroizing<[u8; 32]>);

pub(super) fn random_secret(scheme: Scheme) -> Result<NewKey, Box<dyn std::error::Error>> {
    // Retry values that are not keys: about half of all 32-byte strings for
    // BLS (the group order is ~0.45 × 2^256), astronomically few otherwise.
    loop {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(secret.as_mut()).map_err(|e| e.to_string())?;
        if let Ok(key) = SecretKey::from_secret(scheme, secret.as_ref()) {
            return Ok((key, secret));
        }
    }
}

/// Writes the development setup into `dir` (which must be absent or empty).
pub fn create_dev(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        return Err(format!(
            "{} exists and is not empty; refusing to overwrite it",
            dir.display()
        )
        .into());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    for sub in ["", "tls", "keys", "data"] {
        builder.create(dir.join(sub))?;
    }

    // A throwaway CA, a server certificate for localhost, a client certificate.
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "signer dev CA (throwaway)");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    write_file(&dir.join("tls/ca.pem"), ca_cert.pem().as_bytes(), false)?;
    write_file(
        &dir.join("tls/ca.key"),
        ca_key.serialize_pem().as_bytes(),
        true,
    )?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut server = CertificateParams::new(vec!["localhost".to_owned()])?;
    server
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    server
        .distinguished_name
        .push(DnType::CommonName, "signer dev server");
    let server_key = KeyPair::generate()?;
    write_file(
        &dir.join("tls/server.pem"),
        server.signed_by(&server_key, &issuer)?.pem().as_bytes(),
        false,
    )?;
    write_file(
        &dir.join("tls/server.key"),
        server_key.serialize_pem().as_bytes(),
        true,
    )?;

    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client.subject_alt_names = vec![SanType::URI(DEV_CLIENT.try_into()?)];
    client
        .distinguished_name
        .push(DnType::CommonName, "signer dev client");
    let client_key = KeyPair::generate()?;
    write_file(
        &dir.join("tls/client.pem"),
        client.signed_by(&client_key, &issuer)?.pem().as_bytes(),
        false,
    )?;
    write_file(
        &dir.join("tls/client.key"),
        client_key.serialize_pem().as_bytes(),
        true,
    )?;

    // One key of each scheme, encrypted, with a random password next to it.
    let mut pubkeys = Vec::new();
    let mut key_entries = String::new();
    for scheme in [Scheme::Bls, Scheme::Ed25519, Scheme::Secp256k1] {
        let (key, secret) = random_secret(scheme)?;
        let mut pw = [0u8; 16];
        getrandom::fill(&mut pw).map_err(|e| e.to_string())?;
        let password = Zeroizing::new(hex::encode(pw));
        let name = scheme.key_type();
        let file = soft::write_key_file(
            &key,
            secret.as_ref(),
            &password,
            Kdf::DEFAULT,
            &format!("signer dev {name} key"),
        )?;
        write_file(
            &dir.join(format!("keys/{name}.json")),
            file.as_bytes(),
            true,
        )?;
        write_file(
            &dir.join(format!("keys/{name}.pass")),
            password.as_bytes(),
            true,
        )?;
        key_entries.push_str(&format!(
            "\n[[keys]]\ntype = \"file\"\npath = \"keys/{name}.json\"\npassword_file = \"keys/{name}.pass\"\n"
        ));
        pubkeys.push((scheme, hex::encode(key.public_key())));
    }
    let pk = |s: Scheme| {
        pubkeys
            .iter()
            .find(|(x, _)| *x == s)
            .map(|(_, k)| k.clone())
            .unwrap_or_default()
    };

    let policy = format!(
        r#"# Development policy written by `signer init --dev`. Deny by default.
[clients.dev]
identity = "{DEV_CLIENT}"

[networks.dev-eth]
genesis_validators_root = "0x{zero}"

[networks.dev-chain]
chain_id = "{DEV_CHAIN}"

[key_groups.dev-bls]
keys = ["0x{bls}"]

[key_groups.dev-ed25519]
keys = ["0x{ed}"]

[[grant]]
clients = ["dev"]
operations = ["eth2.duties"]
key_groups = ["dev-bls"]
networks = ["dev-eth"]
# Validator clients send block headers only (the Web3Signer API): their
# blocks' fee recipient and graffiti cannot be checked. In production, name
# them (fee_recipient, gas_limit, graffiti; see policy.example.toml) for
# clients that send full or blinded blocks.
block_content = "unchecked"

[[grant]]
clients = ["dev"]
operations = ["cometbft.consensus"]
key_groups = ["dev-ed25519"]
networks = ["dev-chain"]
"#,
        zero = "00".repeat(32),
        bls = pk(Scheme::Bls),
        ed = pk(Scheme::Ed25519),
    );
    write_file(&dir.join("policy.toml"), policy.as_bytes(), false)?;

    let config = format!(
        r#"# Development configuration written by `signer init --dev`; see signer.example.toml.
[server]
grpc_listen = "127.0.0.1:9000"
metrics_listen = "127.0.0.1:9100"

[http]
# The Web3Signer-compatible API (HTTPS, same certificates): point a
# validator client's web3signer URL at https://localhost:9001.
listen = "127.0.0.1:9001"

[tls]
cert = "tls/server.pem"
key = "tls/server.key"
client_cas = ["tls/ca.pem"]

[policy]
file = "policy.toml"

[slashing]
database = "data/slashing.sqlite"
genesis_validators_root = "0x{zero}"

[ethereum]
preset = "mainnet"
{key_entries}"#,
        zero = "00".repeat(32),
    );
    write_file(&dir.join("signer.toml"), config.as_bytes(), false)?;

    Ok(())
}

pub fn run(args: InitArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if !args.dev {
        return Err("only development setups can be generated so far: use `signer init --dev DIR`, or write signer.toml from signer.example.toml".into());
    }
    create_dev(&args.dir)?;
    let dir = &args.dir;
    println!("wrote a throwaway development setup to {}:", dir.display());
    println!("  signer.toml, policy.toml        configuration and policy (client \"dev\")");
    println!("  tls/ca.pem, tls/ca.key          the throwaway CA");
    println!("  tls/server.pem, tls/server.key  server certificate for localhost and 127.0.0.1");
    println!("  tls/client.pem, tls/client.key  client certificate ({DEV_CLIENT})");
    println!("  keys/{{bls,ed25519,secp256k1}}.json with .pass files");
    println!("  data/                           the slashing database goes here");
    println!(
        "check it: signer policy explain {}",
        dir.join("policy.toml").display()
    );
    Ok(ExitCode::SUCCESS)
}
