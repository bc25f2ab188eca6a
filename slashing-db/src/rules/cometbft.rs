//! CometBFT's double-sign rule, as its own file signer (`privval.FilePV`)
//! applies it: height, round and step never go back; at the same position only
//! the same message (or one that differs only in its timestamp) may be signed
//! again, and then the stored message (signed again) and its timestamp are
//! what is served.

use crate::error::NotSafe;
use crate::record::{CometProposal, CometRecord, Safe};
use crate::rules::sign_bytes::same_except_timestamp;

/// Decides a CometBFT proposal against the last record for its (key, chain).
pub fn check(p: &CometProposal, last: Option<&CometRecord>) -> Result<Safe, NotSafe> {
    let Some(prev) = last else {
        return Ok(Safe::Valid);
    };
    let asked = p.hrs();
    let boxed = || Box::new(prev.clone());
    if asked.height < prev.hrs.height {
        return Err(NotSafe::HeightRegression {
            prev: boxed(),
            asked,
        });
    }
    if asked.height == prev.hrs.height {
        if asked.round < prev.hrs.round {
            return Err(NotSafe::RoundRegression {
                prev: boxed(),
                asked,
            });
        }
        if asked.round == prev.hrs.round {
            if asked.step < prev.hrs.step {
                return Err(NotSafe::StepRegression {
                    prev: boxed(),
                    asked,
                });
            }
            if asked.step == prev.hrs.step {
                if p.sign_bytes() == prev.sign_bytes.as_slice() {
                    return Ok(Safe::Reserve {
                        stored: prev.clone(),
                        timestamp_only: false,
                    });
                }
                if same_except_timestamp(p.sign_bytes(), &prev.sign_bytes) {
                    return Ok(Safe::Reserve {
                        stored: prev.clone(),
                        timestamp_only: true,
                    });
                }
                return Err(NotSafe::ConflictingSignBytes { prev: boxed() });
            }
        }
    }
    Ok(Safe::Valid)
}
