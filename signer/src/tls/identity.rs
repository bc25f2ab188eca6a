//! Who a client is: the URI SANs (SPIFFE ids) and DNS SANs of its verified
//! certificate, matched against the policy's client identities, plus the
//! certificate's SHA-256 fingerprint for clients that pin one.

use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::policy::{Client, Policy};

/// What a verified client certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// URI subject alternative names.
    pub uris: Vec<String>,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// SHA-256 of the certificate (DER).
    pub fingerprint: [u8; 32],
}

/// Why a client could not be identified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The certificate does not parse (it passed verification, so this is unexpected).
    #[error("client certificate does not parse")]
    Unparsable,
    /// No policy client has any of the certificate's names.
    #[error("no client in the policy has identity {names:?}")]
    UnknownClient {
        /// The certificate's URI and DNS names.
        names: Vec<String>,
    },
    /// The policy pins another certificate for this client.
    #[error("client {client} presented a certificate other than the one the policy pins")]
    FingerprintMismatch {
        /// The client's policy name.
        client: String,
    },
    /// Several policy clients match the certificate's names.
    #[error("the certificate's names match several policy clients: {0:?}")]
    Ambiguous(Vec<String>),
}

/// Reads the identity of a (verified) end-entity certificate.
pub fn peer_identity(cert: &CertificateDer<'_>) -> Result<PeerIdentity, IdentityError> {
    let (_, x509) =
        X509Certificate::from_der(cert.as_ref()).map_err(|_| IdentityError::Unparsable)?;
    let mut uris = Vec::new();
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => uris.push((*u).to_owned()),
                GeneralName::DNSName(d) => dns_names.push((*d).to_owned()),
                _ => {}
            }
        }
    }
    Ok(PeerIdentity {
        uris,
        dns_names,
        fingerprint: Sha256::digest(cert.as_ref()).into(),
    })
}

/// The policy client this peer is: its identity must be one of the
/// certificate's URI or DNS names, and a pinned fingerprint must match.
pub fn resolve<'p>(policy: &'p Policy, peer: &PeerIdentity) -> Result<&'p Client, IdentityError> {
    let names: Vec<&String> = peer.uris.iter().chain(&peer.dns_names).collect();
    let matching: Vec<&Client> = names
        .iter()
        .filter_map(|n| policy.client_by_identity(n))
        .collect();
    let client = match matching.as_slice() {
        [] => {
            return Err(IdentityError::UnknownClient {
                names: names.into_iter().cloned().collect(),
            });
        }
        [one] => *one,
        many => {
            return Err(IdentityError::Ambiguous(
                many.iter().map(|c| c.name.clone()).collect(),
            ));
        }
    };
    match client.fingerprint {
        Some(pin) if pin != peer.fingerprint => Err(IdentityError::FingerprintMismatch {
            client: client.name.clone(),
        }),
        _ => Ok(client),
    }
}
