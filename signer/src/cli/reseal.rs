//! `signer keys reseal`: moves sealed BLS key files from one wrapping key to
//! another (token AES key A → B, KMS key A → B, token ↔ KMS), through the
//! backends the daemon's configuration names.
//!
//! Per file: unseal with the key it names, seal under the target, unseal
//! the new blob again and sign with it (verified against the file's public
//! key), and only then replace the file — a temporary beside it, fsynced,
//! renamed over it, the directory fsynced. At every moment each file is a
//! complete blob under either the old or the new wrapping key, so an
//! interrupted run loses nothing and running the same command again
//! finishes the job (files already under the target are skipped).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::Value;
use zeroize::Zeroizing;

use signer::backend::kms::Kms;
use signer::backend::kms::seal::KmsSealedKey;
use signer::backend::pkcs11::Registry;
use signer::backend::pkcs11::seal::SealedKey;
use signer::config::Config;
use signer::crypto::bls::{BlsPublicKey, BlsSecretKey, BlsSignature};

type Error = Box<dyn std::error::Error>;

#[derive(Debug, Args)]
pub struct ResealArgs {
    /// The daemon's configuration: its [pkcs11] tokens and [kms] section
    /// reach the old and the new wrapping keys.
    #[arg(long)]
    config: PathBuf,
    /// The new wrapping key: `pkcs11:TOKEN:LABEL` (TOKEN a name from
    /// [[pkcs11.tokens]], LABEL its AES key) or `kms:KEY` (id, alias or ARN).
    #[arg(long)]
    to: String,
    /// Sealed key files, or directories of them (`*.json`, not recursive).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Check that the new wrapping key works and say what would be moved;
    /// change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Where keys go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Pkcs11 { token: String, label: String },
    Kms { key: String },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pkcs11 { token, label } => write!(f, "pkcs11 token {token} key {label}"),
            Self::Kms { key } => write!(f, "kms key {key}"),
        }
    }
}

fn parse_target(s: &str) -> Result<Target, String> {
    let usage = || {
        format!(
            "--to {s:?}: give pkcs11:TOKEN:LABEL (a token name from the configuration and its AES key's label) or kms:KEY"
        )
    };
    match s.split_once(':') {
        Some(("pkcs11", rest)) => match rest.split_once(':') {
            Some((token, label)) if !token.is_empty() && !label.is_empty() => Ok(Target::Pkcs11 {
                token: token.into(),
                label: label.into(),
            }),
            _ => Err(usage()),
        },
        Some(("kms", key)) if !key.is_empty() => Ok(Target::Kms { key: key.into() }),
        _ => Err(usage()),
    }
}

/// A sealed file as read.
enum Sealed {
    Pkcs11(SealedKey),
    Kms(KmsSealedKey),
}

impl Sealed {
    fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read(path).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&text).map_err(|e| format!("not JSON: {e}"))?;
        match v.get("kind").and_then(Value::as_str) {
            Some(signer::backend::pkcs11::seal::KIND) => serde_json::from_value(v)
                .map(Self::Pkcs11)
                .map_err(|e| e.to_string()),
            Some(signer::backend::kms::seal::KIND) => serde_json::from_value(v)
                .map(Self::Kms)
                .map_err(|e| e.to_string()),
            other => Err(format!("not a sealed key file (kind {other:?})")),
        }
    }

    fn public_key(&self) -> &str {
        match self {
            Self::Pkcs11(f) => &f.public_key,
            Self::Kms(f) => &f.public_key,
        }
    }

    fn description(&self) -> &str {
        match self {
            Self::Pkcs11(f) => &f.description,
            Self::Kms(_) => "",
        }
    }

    /// Under the target already? (A PKCS#11 file names its AES key's label,
    /// not the token: the label is what is compared.)
    fn is_under(&self, t: &Target) -> bool {
        match (self, t) {
            (Self::Pkcs11(f), Target::Pkcs11 { label, .. }) => &f.wrapping_key_label == label,
            (Self::Kms(f), Target::Kms { key }) => &f.kms_key == key,
            _ => false,
        }
    }

    fn wrapping(&self) -> String {
        match self {
            Self::Pkcs11(f) => format!("pkcs11 key {}", f.wrapping_key_label),
            Self::Kms(f) => format!("kms key {}", f.kms_key),
        }
    }
}

struct Backends {
    pkcs11: Option<Registry>,
    kms: Option<Arc<Kms>>,
}

impl Backends {
    fn unseal(&self, file: &Sealed) -> Result<Zeroizing<Vec<u8>>, String> {
        match file {
            Sealed::Pkcs11(f) => self
                .pkcs11
                .as_ref()
                .ok_or("a PKCS#11-sealed file needs a [pkcs11] section in the configuration")?
                .unseal_secret(f, &[]),
            Sealed::Kms(f) => self
                .kms
                .as_ref()
                .ok_or("a KMS-sealed file needs a [kms] section in the configuration")?
                .unseal_secret(f),
        }
    }

    fn seal(
        &self,
        t: &Target,
        secret: &[u8],
        description: &str,
    ) -> Result<(Sealed, String), String> {
        match t {
            Target::Pkcs11 { token, label } => {
                let f = self
                    .pkcs11
                    .as_ref()
                    .ok_or("--to pkcs11:… needs a [pkcs11] section in the configuration")?
                    .seal(token, label, secret, description)?;
                let json = serde_json::to_string_pretty(&f).map_err(|e| e.to_string())?;
                Ok((Sealed::Pkcs11(f), json))
            }
            Target::Kms { key } => {
                let f = self
                    .kms
                    .as_ref()
                    .ok_or("--to kms:… needs a [kms] section in the configuration")?
                    .seal_bls(key, secret)?;
                let json = serde_json::to_string_pretty(&f).map_err(|e| e.to_string())?;
                Ok((Sealed::Kms(f), json))
            }
        }
    }

    /// Seals, unseals the new blob and signs with what came out, checked
    /// against `public_key`: the new file is known to work before it is written.
    fn seal_verified(
        &self,
        t: &Target,
        secret: &[u8],
        public_key: &str,
        description: &str,
    ) -> Result<(Sealed, String), String> {
        let (sealed, json) = self.seal(t, secret, description)?;
        let back = self
            .unseal(&sealed)
            .map_err(|e| format!("the new blob does not unseal: {e}"))?;
        let key = BlsSecretKey::from_bytes(&back).map_err(|e| e.to_string())?;
        let pk_bytes = public_key
            .strip_prefix("0x")
            .and_then(|h| hex::decode(h).ok())
            .ok_or("public_key is not 0x-hex")?;
        let pk = BlsPublicKey::from_bytes(&pk_bytes).map_err(|e| e.to_string())?;
        let msg = b"signer keys reseal: check";
        let sig = key.sign(msg).to_bytes();
        BlsSignature::from_bytes(&sig)
            .and_then(|s| s.verify(&pk, msg))
            .map_err(|e| format!("a signature with the new blob does not verify: {e}"))?;
        Ok((sealed, json))
    }
}

/// Writes `text` over `path` atomically (see [`secret_file::replace`]).
fn replace(path: &Path, text: &str) -> Result<(), String> {
    let bytes = [text.as_bytes(), b"\n"].concat();
    signer::secret_file::replace(path, &tmp_path(path), &bytes)
}

fn tmp_path(path: &Path) -> PathBuf {
    signer::secret_file::beside(path, ".reseal-tmp")
}

/// The files named, directories expanded (`*.json`, sorted); temporaries an
/// interrupted run left are removed.
fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            found.sort();
            for f in found {
                let name = f
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                if name.ends_with(".reseal-tmp") {
                    std::fs::remove_file(&f).map_err(|e| format!("{}: {e}", f.display()))?;
                } else if name.ends_with(".json") {
                    out.push(f);
                }
            }
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(format!("{}: no such file or directory", p.display()));
        }
    }
    Ok(out)
}

/// Progress on standard error: at most every 2 s, and at the end.
struct Progress {
    total: usize,
    started: Instant,
    last: Option<Instant>,
}

impl Progress {
    fn show(&mut self, done: usize, moved: usize, already: usize, failed: usize, last: bool) {
        let now = Instant::now();
        if !last && self.last.is_some_and(|t| now - t < Duration::from_secs(2)) {
            return;
        }
        self.last = Some(now);
        let left = signer::server::starting::time_left(self.started.elapsed(), done, self.total);
        let pct = (done * 100).checked_div(self.total).unwrap_or(100);
        let mut line = format!(
            "reseal: {done} of {} files ({pct}%): {moved} resealed, {already} already there, {failed} failed",
            self.total
        );
        if let Some(left) = left.filter(|_| !last) {
            line.push_str(&format!(
                ", about {} left",
                signer::server::starting::human(left)
            ));
        }
        eprintln!("{line}");
    }
}

pub fn run(a: ResealArgs) -> Result<ExitCode, Error> {
    let target = parse_target(&a.to)?;
    let config = Config::load(&a.config)?;
    let files = files(&a.paths)?;
    let backends = Backends {
        pkcs11: match &config.pkcs11 {
            Some(c) => Some(Registry::open(c).map_err(|e| format!("pkcs11: {e}"))?),
            None => None,
        },
        kms: match &config.kms {
            Some(c) => Some(Kms::new(c, None)?),
            None => None,
        },
    };
    // The new wrapping key must work before any file is touched.
    let (probe_key, probe_secret) = super::init::random_secret(signer::backend::Scheme::Bls)?;
    let probe_public = format!("0x{}", hex::encode(probe_key.public_key()));
    let (probe, _) = backends
        .seal_verified(&target, probe_secret.as_ref(), &probe_public, "probe")
        .map_err(|e| {
            format!("the new wrapping key ({target}) cannot be used: {e}; nothing was changed")
        })?;
    // What files under the target name: KMS writes the key's ARN, whatever
    // alias or id was given (an alias moved since is then not "already there").
    let under = match (&target, &probe) {
        (Target::Kms { .. }, Sealed::Kms(f)) => Target::Kms {
            key: f.kms_key.clone(),
        },
        _ => target.clone(),
    };

    let mut plan = Vec::new();
    let mut unreadable = Vec::new();
    for f in &files {
        match Sealed::read(f) {
            Ok(s) => plan.push((f.clone(), s)),
            Err(e) => unreadable.push((f.clone(), e)),
        }
    }
    let already = plan.iter().filter(|(_, s)| s.is_under(&under)).count();
    if a.dry_run {
        for (f, s) in &plan {
            if s.is_under(&under) {
                println!("{}: already under {target}", f.display());
            } else {
                println!("{}: would move {} -> {target}", f.display(), s.wrapping());
            }
        }
        for (f, e) in &unreadable {
            println!("{}: SKIPPED: {e}", f.display());
        }
        println!(
            "dry run: {} to reseal to {target} (checked: it seals and unseals), {already} already there, {} unreadable; nothing was changed",
            plan.len() - already,
            unreadable.len()
        );
        return Ok(if unreadable.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }

    let mut progress = Progress {
        total: files.len(),
        started: Instant::now(),
        last: None,
    };
    let (mut moved, mut failed) = (0usize, unreadable.clone());
    let mut done = unreadable.len();
    for (f, s) in &plan {
        if !s.is_under(&under) {
            let result = backends
                .unseal(s)
                .map_err(|e| format!("cannot unseal with its {}: {e}", s.wrapping()))
                .and_then(|secret| {
                    backends.seal_verified(&target, &secret, s.public_key(), s.description())
                })
                .and_then(|(_, json)| replace(f, &json));
            match result {
                Ok(()) => moved += 1,
                Err(e) => failed.push((f.clone(), e)),
            }
        }
        done += 1;
        progress.show(done, moved, already, failed.len(), false);
    }
    progress.show(done, moved, already, failed.len(), true);
    for (f, e) in &failed {
        println!("FAILED {}: {e}", f.display());
    }
    println!(
        "{} files: {moved} resealed to {target}, {already} already there, {} failed",
        files.len(),
        failed.len()
    );
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "every file is whole under its old or its new wrapping key; fix the cause and run the same command again to finish (files already moved are skipped)"
        );
        Ok(ExitCode::FAILURE)
    }
}
