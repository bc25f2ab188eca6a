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
