//! The audit chain the state file holds: scanned and verified from the archive anchor, and its
//! head signed as a checkpoint. The format (events, hashing, verification, checkpoints) is
//! `audit`'s; this is where it meets the stored rows.

use ring::signature::Ed25519KeyPair;

use super::{Store, StoreError};
use crate::audit::checkpoint::{self, Checkpoint};
use crate::audit::{Event, Verifier};

/// Verifies the chain kept in the state file, from the archive anchor when events were
/// archived, streaming; `verified` sees each event that checks out. Stops at the first break.
pub fn scan_chain(store: &Store, verified: &mut dyn FnMut(&Event)) -> Result<Verifier, StoreError> {
    let mut v = Verifier::after(store.audit_anchor()?);
    store.audit_scan(&mut |e| {
        let ok = v.feed(e);
        if ok {
            verified(e);
        }
        ok
    })?;
    Ok(v)
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the audit chain is broken at seq {}: {}", .0.seq, .0.reason)]
    Broken(crate::audit::Break),
    #[error("the audit log is empty")]
    Empty,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Signs the chain's head as it is now and keeps the checkpoint. Refuses a chain that does
/// not verify: a signature must never vouch for a tampered log.
pub fn sign_head(store: &Store, key: &Ed25519KeyPair) -> Result<Checkpoint, SignError> {
    let v = scan_chain(store, &mut |_| {})?;
    if let Some(b) = v.first_break.clone() {
        return Err(SignError::Broken(b));
    }
    let (seq, hash) = v.head().cloned().ok_or(SignError::Empty)?;
    let time = crate::clock::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let cp = checkpoint::sign(key, seq, &hash, &time);
    store.add_checkpoint(&cp)?;
    Ok(cp)
}
