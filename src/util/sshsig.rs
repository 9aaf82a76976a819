//! Approvals signed with an SSH key: the `ssh-keygen -Y sign` format (OpenSSH's
//! PROTOCOL.sshsig), verified against the public keys of `sessions.approvers`.
//!
//! Invariant: only Ed25519, ECDSA P-256/P-384 and RSA (rsa-sha2-256/512) signatures verify;
//! `ssh-rsa` SHA-1 signatures and hardware (`sk-`) keys are refused.

use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use sha2::{Digest, Sha256, Sha512};

/// The namespace every change approval is signed in (`ssh-keygen -Y sign -n runbook-change`).
pub const NAMESPACE: &str = "runbook-change";

const MAGIC: &[u8] = b"SSHSIG";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigError {
    #[error("not an SSH signature: {0}")]
    Malformed(String),
    #[error("the signature is for namespace `{0}`, not `{NAMESPACE}`")]
    Namespace(String),
    #[error("the signing key ({0}) is not one of sessions.approvers")]
    UnknownKey(String),
    #[error("{0} keys are not supported for approvals")]
    Unsupported(String),
    #[error("the signature does not match this request (signed by {0}'s key, but over other text)")]
    Mismatch(String),
}

/// A public key from an `authorized_keys`-style line: `TYPE BASE64 [comment]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kind: String,
    pub blob: Vec<u8>,
}

impl PublicKey {
    pub fn parse(line: &str) -> Result<PublicKey, String> {
        let mut parts = line.split_whitespace();
        let (Some(kind), Some(b64)) = (parts.next(), parts.next()) else {
            return Err("expected `TYPE BASE64 [comment]`, as in ~/.ssh/id_ed25519.pub".into());
        };
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("the key's base64 does not decode: {e}"))?;
        let mut r = Reader(&blob);
        let inner = r.string().map_err(|e| format!("the key blob is cut short: {e}"))?;
        if inner != kind.as_bytes() {
            return Err(format!(
                "the line says {kind} but the key inside is {}",
                String::from_utf8_lossy(inner)
            ));
        }
        let key = PublicKey {
            kind: kind.to_string(),
            blob,
        };
        key.check_supported()?;
        Ok(key)
    }

    fn check_supported(&self) -> Result<(), String> {
        match self.kind.as_str() {
            "ssh-ed25519" | "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ssh-rsa" => Ok(()),
            k => Err(format!(
                "{k} keys are not supported (use ssh-ed25519, ecdsa-sha2-nistp256/384 or ssh-rsa)"
            )),
        }
    }

    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        let d = Sha256::digest(&self.blob);
        format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(d))
    }

    /// Checks `sig` (an SSH signature blob: format name, then bytes) over `data`.
    fn verify(&self, sig: &[u8], data: &[u8]) -> Result<bool, SigError> {
        let bad = |e: String| SigError::Malformed(e);
        let mut k = Reader(&self.blob);
        k.string().map_err(bad)?;
        let mut s = Reader(sig);
        let format = s.string().map_err(bad)?;
        let bytes = s.string().map_err(bad)?;
        s.end().map_err(bad)?;
        let ok = match (self.kind.as_str(), format) {
            ("ssh-ed25519", b"ssh-ed25519") => {
                let point = k.string().map_err(bad)?;
                UnparsedPublicKey::new(&signature::ED25519, point)
                    .verify(data, bytes)
                    .is_ok()
            }
            ("ecdsa-sha2-nistp256", b"ecdsa-sha2-nistp256") | ("ecdsa-sha2-nistp384", b"ecdsa-sha2-nistp384") => {
                let (alg, width): (&signature::EcdsaVerificationAlgorithm, usize) = if self.kind.ends_with("256") {
                    (&signature::ECDSA_P256_SHA256_FIXED, 32)
                } else {
                    (&signature::ECDSA_P384_SHA384_FIXED, 48)
                };
                k.string().map_err(bad)?; // curve name
                let point = k.string().map_err(bad)?;
                let mut rs = Reader(bytes);
                let mut fixed = Vec::with_capacity(2 * width);
                for _ in 0..2 {
                    let n = strip_zeros(rs.string().map_err(bad)?);
                    if n.len() > width {
                        return Err(bad("ECDSA signature integer too long".into()));
                    }
                    fixed.extend(std::iter::repeat_n(0, width - n.len()));
                    fixed.extend_from_slice(n);
                }
                rs.end().map_err(bad)?;
                UnparsedPublicKey::new(alg, point).verify(data, &fixed).is_ok()
            }
            ("ssh-rsa", b"rsa-sha2-256") | ("ssh-rsa", b"rsa-sha2-512") => {
                let e = strip_zeros(k.string().map_err(bad)?);
                let n = strip_zeros(k.string().map_err(bad)?);
                let alg = if format == b"rsa-sha2-256" {
                    &signature::RSA_PKCS1_2048_8192_SHA256
                } else {
                    &signature::RSA_PKCS1_2048_8192_SHA512
                };
                RsaPublicKeyComponents { n, e }.verify(alg, data, bytes).is_ok()
            }
            (_, f) => return Err(SigError::Unsupported(String::from_utf8_lossy(f).into_owned())),
        };
        Ok(ok)
    }
}

fn strip_zeros(mut b: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = b {
        b = rest;
    }
    b
}

/// Verifies an armored `ssh-keygen -Y sign` signature over `message` in `namespace`, made by
/// one of `approvers` (name, key). Returns the approver's name.
pub fn verify<'a>(
    armored: &str,
    namespace: &str,
    message: &[u8],
    approvers: &'a [(String, PublicKey)],
) -> Result<&'a str, SigError> {
    let body: String = armored
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN SSH SIGNATURE-----")
        .skip(1)
        .take_while(|l| *l != "-----END SSH SIGNATURE-----")
        .collect();
    if body.is_empty() {
        return Err(SigError::Malformed(
            "no -----BEGIN SSH SIGNATURE----- block (make one with ssh-keygen -Y sign)".into(),
        ));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| SigError::Malformed(format!("base64: {e}")))?;
    let bad = |e: String| SigError::Malformed(e);
    let mut r = Reader(&raw);
    if r.take(MAGIC.len()).map_err(bad)? != MAGIC {
        return Err(bad("missing the SSHSIG preamble".into()));
    }
    let version = r.u32().map_err(bad)?;
    if version != 1 {
        return Err(bad(format!("signature version {version}, expected 1")));
    }
    let key_blob = r.string().map_err(bad)?;
    let ns = r.string().map_err(bad)?;
    let _reserved = r.string().map_err(bad)?;
    let hash_alg = r.string().map_err(bad)?;
    let sig = r.string().map_err(bad)?;
    r.end().map_err(bad)?;
    if ns != namespace.as_bytes() {
        return Err(SigError::Namespace(String::from_utf8_lossy(ns).into_owned()));
    }
    let (name, key) = approvers.iter().find(|(_, k)| k.blob == key_blob).ok_or_else(|| {
        let kind = Reader(key_blob)
            .string()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_else(|_| "unknown".into());
        let fp = PublicKey {
            kind: kind.clone(),
            blob: key_blob.to_vec(),
        }
        .fingerprint();
        SigError::UnknownKey(format!("{kind} {fp}"))
    })?;
    let digest: Vec<u8> = match hash_alg {
        b"sha512" => Sha512::digest(message).to_vec(),
        b"sha256" => Sha256::digest(message).to_vec(),
        other => {
            return Err(bad(format!("hash algorithm {}", String::from_utf8_lossy(other))));
        }
    };
    let mut signed = MAGIC.to_vec();
    for field in [namespace.as_bytes(), b"", hash_alg, &digest] {
        put_string(&mut signed, field);
    }
    if key.verify(sig, &signed)? {
        Ok(name)
    } else {
        Err(SigError::Mismatch(name.clone()))
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// The SSH wire format: big-endian u32 lengths before byte strings.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("{n} bytes wanted, {} left", self.0.len()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// Nothing may follow the last field (as OpenSSH checks): one encoding per signature.
    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("{} bytes of trailing data", self.0.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lines_are_checked() {
        assert!(PublicKey::parse("ssh-ed25519").is_err());
        assert!(PublicKey::parse("ssh-ed25519 !!!").is_err());
        // A valid blob whose inner type differs from the line's.
        let mut blob = Vec::new();
        put_string(&mut blob, b"ssh-ed25519");
        put_string(&mut blob, &[7; 32]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&blob);
        assert!(PublicKey::parse(&format!("ssh-ed25519 {b64} me@host")).is_ok());
        let e = PublicKey::parse(&format!("ecdsa-sha2-nistp256 {b64}")).unwrap_err();
        assert!(e.contains("inside is ssh-ed25519"), "{e}");
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let keys = vec![];
        for s in [
            "",
            "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----",
            "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----",
        ] {
            assert!(matches!(verify(s, NAMESPACE, b"x", &keys), Err(SigError::Malformed(_))));
        }
    }
}
