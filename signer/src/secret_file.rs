//! Secrets kept in files (keystore passwords, PKCS#12 passwords): read
//! whole, one trailing newline dropped (`echo secret > file` works), held in
//! memory that is zeroized when dropped. Shared by the TLS setup and the
//! key backends, so neither imports the other.

use std::path::Path;

use zeroize::Zeroizing;

/// The password in `path`, without one trailing `\n` (or `\r\n`).
pub fn read_password_file(path: &Path) -> std::io::Result<Zeroizing<String>> {
    let text = Zeroizing::new(std::fs::read_to_string(path)?);
    let trimmed = text
        .strip_suffix('\n')
        .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
    Ok(Zeroizing::new(trimmed.to_owned()))
}

/// Writes `bytes` over `path` atomically through `tmp` (beside it): written
/// 0600 (or with `path`'s permissions if it exists), fsynced, renamed over
/// `path`, the directory fsynced. A crash leaves the old file or the new
/// one, never a mix.
pub fn replace(path: &Path, tmp: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(tmp, meta.permissions());
    }
    std::fs::rename(tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `path` with `suffix` added to its file name (a temporary beside it).
pub fn beside(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}
