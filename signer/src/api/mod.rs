//! Frontends: how clients reach the pipeline.

pub mod commit_boost;
pub mod grpc;
pub mod https;
pub mod privval;
pub mod web3signer;

/// Every refusal class, its failures carrying the kind of detail that must
/// stay in the log (file paths, PKCS#11 calls and return values, PIN
/// sources, database addresses, KMS key ARNs, chained error text), through
/// the answer of each frontend: gRPC, the Web3Signer HTTP API and privval.
/// Each answer must name the class (its code) and nothing of the detail.
/// (End to end, `tests/tests/ha.rs` does the same with a database that is
/// really down.)
#[cfg(test)]
mod leak_tests {
    use std::sync::Arc;

    use slashing_db::{DbError, NotSafe, SignedBlock, SigningRoot, Slot};

    use crate::audit::{AuditError, SinkError};
    use crate::backend::BackendError;
    use crate::pipeline::{Refusal, Unavailable};
    use crate::policy::Verdict;

    /// What no client may read.
    const INTERNAL: &[&str] = &[
        "/var/",
        "/usr/",
        "/etc/",
        "C_Sign",
        "CKR_",
        "pin_file",
        "postgres://",
        "db.internal",
        "arn:aws",
        "softhsm",
        "EIO",
        "os error",
        "password",
    ];

    fn io(text: &str) -> std::io::Error {
        std::io::Error::other(format!("{text} (os error 5)"))
    }

    fn every_class() -> Vec<(Refusal, &'static str)> {
        let unavailable = |u| (Refusal::BackendUnavailable(u), "backend_unavailable");
        vec![
            (
                Refusal::Slashable(NotSafe::DoubleBlockProposal {
                    prev: SignedBlock {
                        slot: Slot(7),
                        signing_root: Some(SigningRoot([1; 32])),
                    },
                }),
                "slashable",
            ),
            (
                Refusal::NotAllowed(Verdict::NotGranted(crate::policy::Miss::Client)),
                "not_allowed",
            ),
            (Refusal::NotAllowed(Verdict::Denied { deny: 2 }), "not_allowed"),
            (Refusal::UnknownKey, "unknown_key"),
            (
                Refusal::InvalidRequest("a digest is 32 bytes".into()),
                "invalid_request",
            ),
            (Refusal::RateLimited(10), "rate_limited"),
            (
                Refusal::KeyDisabled(slashing_db::Lifecycle::Disabled),
                "key_disabled",
            ),
            (
                Refusal::KeyDisabled(slashing_db::Lifecycle::Retired),
                "key_disabled",
            ),
            (
                Refusal::OutOfScope(crate::pipeline::OutOfScope::AboveMaxHeight {
                    height: 11,
                    max_height: 10,
                }),
                "out_of_scope",
            ),
            unavailable(Unavailable::Database(Arc::new(DbError::Io {
                context: "committing",
                path: "/var/lib/signer/slashing.sqlite".into(),
                source: io("EIO"),
            }))),
            unavailable(Unavailable::Database(Arc::new(DbError::Unavailable {
                context: "connecting",
                detail: "postgres://signer@db.internal:5432/slashing: password authentication failed"
                    .into(),
            }))),
            unavailable(Unavailable::Database(Arc::new(DbError::Poisoned(
                "disk I/O error on /var/lib/signer/slashing.sqlite-wal".into(),
            )))),
            unavailable(Unavailable::Backend(BackendError::Unavailable(
                "pkcs11 /usr/lib/softhsm/libsofthsm2.so token validators: C_Sign: CKR_DEVICE_ERROR \
                 (pin_file /etc/signer/token.pin)"
                    .into(),
            ))),
            unavailable(Unavailable::Backend(BackendError::Timeout {
                backend: "kms arn:aws:kms:eu-west-1:123456789012:key/1b2c".into(),
                timeout_ms: 2000,
            })),
            unavailable(Unavailable::Audit(SinkError::Fsync(Arc::new(io(
                "/var/log/signer/audit.log: EIO",
            ))))),
            unavailable(Unavailable::Audit(SinkError::Append(Arc::new(
                AuditError::Io {
                    path: "/var/log/signer/audit.log".into(),
                    source: io("No space left on device"),
                },
            )))),
            unavailable(Unavailable::Internal("decision list poisoned")),
        ]
    }

    #[test]
    fn no_frontend_tells_a_client_more_than_the_class_of_a_refusal() {
        use crate::api::grpc::convert::refusal as grpc;
        use crate::api::privval::connector::{code, refusal_error as privval};
        use crate::api::web3signer::refusal_reply as http;
        use proto::v1 as pb;

        let classes = every_class();
        let mut answers = 0;
        for (r, class) in &classes {
            assert_eq!(r.reason(), *class);
            let g = grpc(r);
            let (status, body) = http(r);
            let p = privval(r);
            let expected = match *class {
                "slashable" => (pb::Reason::Slashable, 412, code::DOUBLE_SIGN),
                "not_allowed" | "out_of_scope" => (pb::Reason::NotAllowed, 403, code::NOT_ALLOWED),
                "unknown_key" => (pb::Reason::UnknownKey, 404, code::NOT_ALLOWED),
                "invalid_request" => (pb::Reason::InvalidRequest, 400, code::INVALID),
                "rate_limited" => (pb::Reason::Overloaded, 503, code::UNAVAILABLE),
                "key_disabled" => (pb::Reason::KeyDisabled, 403, code::NOT_ALLOWED),
                _ => (pb::Reason::BackendUnavailable, 503, code::UNAVAILABLE),
            };
            assert_eq!((g.reason(), status.as_u16(), p.code), expected, "{class}");
            for (frontend, text) in [
                ("gRPC", &g.message),
                ("HTTP", &body),
                ("privval", &p.description),
            ] {
                answers += 1;
                assert!(!text.is_empty(), "{frontend} {class}: empty answer");
                for bit in INTERNAL {
                    assert!(
                        !text.contains(bit),
                        "{frontend} told a client {bit:?} for {class}: {text}"
                    );
                }
                if let Refusal::BackendUnavailable(u) = r {
                    assert_eq!(
                        *text,
                        format!(
                            "{} unavailable: nothing was signed; retry later or on another signer",
                            u.part()
                        ),
                        "{frontend}"
                    );
                }
            }
        }
        println!(
            "{} refusals × 3 frontends: {answers} answers checked",
            classes.len()
        );
        assert_eq!(answers, 3 * classes.len());
    }
}
