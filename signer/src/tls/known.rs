//! Web3Signer's known-clients file: client certificates accepted by their
//! SHA-256 fingerprint rather than by a CA, each with a name. One line per
//! client, `<name> <fingerprint>`, the fingerprint as 64 hex digits with or
//! without colons (as `openssl x509 -fingerprint -sha256` prints it); blank
//! lines and `#` comments are ignored.
//!
//! A certificate whose fingerprint is listed is accepted even if no client
//! CA issued it (self-signed, as Web3Signer users make them); every other
//! certificate goes through the CA verifier. The handshake signature is
//! checked either way, so a client must hold the listed certificate's key.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

use super::TlsError;

/// Fingerprint → name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownClients {
    by_fingerprint: HashMap<[u8; 32], String>,
}

impl KnownClients {
    /// Reads a known-clients file.
    pub fn load(path: &Path) -> Result<Self, TlsError> {
        let err = |what: String| TlsError::File {
            path: path.to_owned(),
            what,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(err)
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut by_fingerprint = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(name), Some(fp), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(format!(
                    "line {}: expected `<name> <sha256 fingerprint>`",
                    i + 1
                ));
            };
            let fingerprint = hex::decode(fp.replace(':', ""))
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| format!("line {}: the fingerprint is not 32 bytes of hex", i + 1))?;
            if by_fingerprint
                .insert(fingerprint, name.to_owned())
                .is_some()
            {
                return Err(format!("line {}: fingerprint listed twice", i + 1));
            }
        }
        Ok(Self { by_fingerprint })
    }

    /// The name of the client holding the certificate with this fingerprint.
    pub fn name(&self, fingerprint: &[u8; 32]) -> Option<&str> {
        self.by_fingerprint.get(fingerprint).map(String::as_str)
    }

    /// True when no client is listed.
    pub fn is_empty(&self) -> bool {
        self.by_fingerprint.is_empty()
    }
}

#[derive(Debug)]
struct KnownOrCa {
    ca: Arc<dyn ClientCertVerifier>,
    known: Arc<KnownClients>,
}

/// `ca`, plus acceptance of the known clients' certificates.
pub fn verifier(
    ca: Arc<dyn ClientCertVerifier>,
    known: Arc<KnownClients>,
) -> Arc<dyn ClientCertVerifier> {
    if known.is_empty() {
        return ca;
    }
    Arc::new(KnownOrCa { ca, known })
}

impl ClientCertVerifier for KnownOrCa {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.ca.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let fingerprint: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if self.known.name(&fingerprint).is_some() {
            return Ok(ClientCertVerified::assertion());
        }
        self.ca.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.ca.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.ca.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.ca.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_clients_files_parse_like_web3signers() {
        let fp = "DF:65:B8:02:08:5E:91:82:0F:91:F5:1C:96:56:92:C4:1A:F6:C6:27:FD:6C:FC:31:F2:BB:90:17:22:59:5B:50";
        let k = KnownClients::parse(&format!(
            "# clients\n\nlighthouse {fp}\nteku {}\n",
            "ab".repeat(32)
        ))
        .unwrap_or_default();
        let mut want = [0u8; 32];
        want.copy_from_slice(&hex::decode(fp.replace(':', "")).unwrap_or_default());
        assert_eq!(k.name(&want), Some("lighthouse"));
        assert_eq!(k.name(&[0xab; 32]), Some("teku"));
        assert_eq!(k.name(&[0; 32]), None);
        assert_eq!(
            KnownClients::parse("only-a-name\n"),
            Err("line 1: expected `<name> <sha256 fingerprint>`".into())
        );
        assert_eq!(
            KnownClients::parse("a abcd\n"),
            Err("line 1: the fingerprint is not 32 bytes of hex".into())
        );
    }
}
