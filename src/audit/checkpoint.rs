//! Signed checkpoints of the audit chain: (seq, head hash, time) signed with an Ed25519 key.
//!
//! Owns signing, checking against trusted keys, and judging a checkpoint against a chain: a
//! checkpoint kept elsewhere shows a cut tail, which the hash chain alone does not.

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::util::hex;

/// What a checkpoint signs, with its version in front.
fn message(seq: i64, head_hash: &str, time: &str) -> String {
    format!("runbook-audit-checkpoint-v1\n{seq}\n{head_hash}\n{time}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub head_hash: String,
    /// RFC 3339, UTC.
    pub time: String,
    /// Hex Ed25519 public key of the signer.
    pub public_key: String,
    /// Hex Ed25519 signature of the message above.
    pub signature: String,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A new key: (the private key file's text, the public key in hex).
pub fn generate() -> Result<(String, String), String> {
    let pkcs8 =
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| "cannot generate a key".to_string())?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| "cannot read the new key".to_string())?;
    Ok((
        format!("runbook-audit-key-v1 {}\n", hex(pkcs8.as_ref())),
        hex(pair.public_key().as_ref()),
    ))
}

/// A signing key from its file's text.
pub fn load(text: &str) -> Result<Ed25519KeyPair, String> {
    let body = text
        .trim()
        .strip_prefix("runbook-audit-key-v1 ")
        .ok_or("not a runbook audit key (made by `runbook audit keygen`)")?;
    let der = unhex(body.trim()).ok_or("the key is not hex")?;
    Ed25519KeyPair::from_pkcs8(&der).map_err(|_| "the key is damaged".to_string())
}

pub fn public_key(key: &Ed25519KeyPair) -> String {
    hex(key.public_key().as_ref())
}

pub fn sign(key: &Ed25519KeyPair, seq: i64, head_hash: &str, time: &str) -> Checkpoint {
    Checkpoint {
        seq,
        head_hash: head_hash.to_string(),
        time: time.to_string(),
        public_key: public_key(key),
        signature: hex(key.sign(message(seq, head_hash, time).as_bytes()).as_ref()),
    }
}

/// Checks the signature. With `trusted` keys given, the signer must be one of them (a
/// checkpoint signed by any other key proves nothing: whoever can edit the log can make one).
pub fn check(cp: &Checkpoint, trusted: &[String]) -> Result<(), String> {
    if !trusted.is_empty() && !trusted.iter().any(|k| k.eq_ignore_ascii_case(&cp.public_key)) {
        return Err(format!(
            "signed by {}, which is not a trusted key",
            short(&cp.public_key)
        ));
    }
    let pk = unhex(&cp.public_key).ok_or("the public key is not hex")?;
    let sig = unhex(&cp.signature).ok_or("the signature is not hex")?;
    UnparsedPublicKey::new(&ED25519, pk)
        .verify(message(cp.seq, &cp.head_hash, &cp.time).as_bytes(), &sig)
        .map_err(|_| "the signature does not match (the checkpoint was altered or forged)".to_string())
}

pub fn short(key: &str) -> String {
    key.chars().take(16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_checkpoint_verifies_and_any_change_breaks_it() {
        let (text, public) = generate().unwrap();
        let key = load(&text).unwrap();
        assert_eq!(public_key(&key), public);
        let cp = sign(&key, 42, "abc123", "2026-11-28T00:00:00Z");
        assert_eq!(check(&cp, &[]), Ok(()));
        assert_eq!(check(&cp, std::slice::from_ref(&public)), Ok(()));
        assert!(
            check(&cp, &["00".repeat(32)])
                .unwrap_err()
                .contains("not a trusted key")
        );
        for changed in [
            Checkpoint { seq: 41, ..cp.clone() },
            Checkpoint {
                head_hash: "abc124".into(),
                ..cp.clone()
            },
            Checkpoint {
                time: "2026-11-28T00:00:01Z".into(),
                ..cp.clone()
            },
        ] {
            assert!(check(&changed, &[]).is_err());
        }
        // Another key's checkpoint passes its own signature but not a trust list.
        let (other, _) = generate().unwrap();
        let forged = sign(&load(&other).unwrap(), 42, "abc123", "2026-11-28T00:00:00Z");
        assert_eq!(check(&forged, &[]), Ok(()));
        assert!(check(&forged, &[public]).is_err());
        assert!(load("garbage").is_err());
    }
}

/// A checkpoint held against the chain.
#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    pub checkpoint: Checkpoint,
    /// Where it came from: `state file`, or the file or URL given.
    pub from: String,
    pub ok: bool,
    pub detail: String,
}

/// Holds each checkpoint against the chain as scanned: `hash_at` gives the hash of an event
/// that verified (`None` past the head or past a break), `head` the last verified seq.
pub fn judge(
    cp: &Checkpoint,
    from: &str,
    trusted: &[String],
    head: i64,
    archived_to: Option<(i64, String)>,
    hash_at: &dyn Fn(i64) -> Option<String>,
) -> Judged {
    let verdict = check(cp, trusted).and_then(|()| {
        if let Some((anchor, anchor_hash)) = archived_to.filter(|(a, _)| cp.seq <= *a) {
            if cp.seq == anchor && cp.head_hash != anchor_hash {
                Err(format!("event {} is not the one signed at {}: the archive anchor differs", cp.seq, cp.time))
            } else {
                Ok(format!("seq {} is archived (the archive files carry it; signed {})", cp.seq, cp.time))
            }
        } else if cp.seq > head {
            Err(format!(
                "the log ends at seq {head}, but this checkpoint of {} says it reached seq {}: events after {head} were cut",
                cp.time, cp.seq
            ))
        } else {
            match hash_at(cp.seq) {
                Some(h) if h == cp.head_hash => Ok(format!("seq {} matches (signed {})", cp.seq, cp.time)),
                Some(_) => Err(format!(
                    "event {} is not the one signed at {}: the log was rewritten from there",
                    cp.seq, cp.time
                )),
                None => Err(format!("event {} cannot be checked (the chain breaks before it)", cp.seq)),
            }
        }
    });
    Judged {
        checkpoint: cp.clone(),
        from: from.to_string(),
        ok: verdict.is_ok(),
        detail: verdict.unwrap_or_else(|e| e),
    }
}
