//! age encryption of archives: local archives of a target with `encrypt_to` are stored as
//! `<name>.tar.zst.age`, and offsite copies as `<name>.age` when `offsite.encrypt_to` is set.
//!
//! Owns the recipients and identities, the one-pass encryption of a finished archive (the
//! ciphertext hashed as it is written, for the sidecar) and the decrypting reader that
//! verify, drill, restore and the manifest reader put under the zstd decoder.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::util::hex;

/// The suffix of an encrypted archive.
pub const SUFFIX: &str = ".age";

pub fn is_encrypted(path: &Path) -> bool {
    path.as_os_str().to_string_lossy().ends_with(".tar.zst.age")
}

/// Parses `age1…` recipients (validated at config load; an error here names the bad one).
pub fn recipients(list: &[String]) -> io::Result<Vec<age::x25519::Recipient>> {
    list.iter()
        .map(|r| {
            r.parse()
                .map_err(|e| io::Error::other(format!("encrypt_to `{r}`: {e}")))
        })
        .collect()
}

/// A new age identity: the text of its identity file, in the format `age-keygen` writes,
/// and its recipient (`age1…`).
pub fn generate_identity() -> (String, String) {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let text = format!(
        "# created: {}\n# public key: {recipient}\n{}\n",
        crate::clock::to_text(crate::clock::now()),
        identity.to_string().expose_secret()
    );
    (text, recipient)
}

/// Why an archive could not be decrypted that says nothing of the archive: no identity, an
/// identity file that cannot be read, or no identity in it that the archive was encrypted to.
#[derive(Debug)]
pub struct KeyError(pub String);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

/// An I/O error of kind `kind` that is a [`KeyError`].
pub fn key_error(kind: io::ErrorKind, message: String) -> io::Error {
    io::Error::new(kind, KeyError(message))
}

/// Whether `e` is a [`KeyError`]: the key, not the archive.
pub fn is_key_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<KeyError>())
}

/// The identities of an age identity file (`age-keygen -o FILE`).
pub fn identities(path: &Path) -> io::Result<Vec<Box<dyn age::Identity + Send + Sync>>> {
    age::IdentityFile::from_file(path.display().to_string())
        .map_err(|e| key_error(e.kind(), format!("{}: {e}", path.display())))?
        .into_identities()
        .map_err(|e| key_error(io::ErrorKind::Other, format!("{}: {e}", path.display())))
}

/// A reader of the plaintext of `input`, encrypted to one of the identities in `identity`.
/// A file that is not whole (its header unreadable, its MAC wrong: the key was right) fails
/// with [`io::ErrorKind::InvalidData`]; the identity file, or an identity that is not among
/// the file's recipients, with another kind.
pub fn decrypting<R: Read + Send + 'static>(input: R, identity: &Path) -> io::Result<Box<dyn Read + Send>> {
    let ids = identities(identity)?;
    decrypting_with(input, &ids, identity)
}

/// [`decrypting`] with the identities read already (`from` names their file).
pub fn decrypting_with<R: Read + Send + 'static>(
    input: R,
    ids: &[Box<dyn age::Identity + Send + Sync>],
    from: &Path,
) -> io::Result<Box<dyn Read + Send>> {
    let reader = age::Decryptor::new_buffered(BufReader::with_capacity(256 * 1024, input))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("not an age file: {e}")))?
        .decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| {
            let message = format!("cannot decrypt with {}: {e}", from.display());
            match e {
                age::DecryptError::NoMatchingKeys => key_error(io::ErrorKind::Other, message),
                age::DecryptError::Io(ref io) => io::Error::new(io.kind(), message),
                _ => io::Error::new(io::ErrorKind::InvalidData, message),
            }
        })?;
    Ok(Box::new(reader))
}

/// Encrypts the file `plain` into the new file `out` (fsynced); returns the ciphertext's
/// (size, SHA-256), taken as it is written.
pub fn encrypt_file(plain: &Path, out: &Path, recipients: &[age::x25519::Recipient]) -> io::Result<(u64, String)> {
    struct Hashing<W> {
        inner: W,
        hasher: Sha256,
        size: u64,
    }
    impl<W: Write> Write for Hashing<W> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.hasher.update(&buf[..n]);
            self.size += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }
    let file = OpenOptions::new().write(true).create_new(true).open(out)?;
    let sink = Hashing {
        inner: BufWriter::with_capacity(1 << 20, &file),
        hasher: Sha256::new(),
        size: 0,
    };
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| io::Error::other(format!("age: {e}")))?;
    let mut w = encryptor.wrap_output(sink)?;
    io::copy(&mut BufReader::with_capacity(1 << 20, File::open(plain)?), &mut w)?;
    let mut sink = w.finish()?;
    sink.flush()?;
    let Hashing { hasher, size, .. } = sink;
    file.sync_all()?;
    Ok((size, hex(&hasher.finalize())))
}

/// The identity file that decrypts the archive at `path`: the one of the target it belongs
/// to (by its directory and name), else the only one configured. `None` for a plain archive.
pub fn identity_for(config: &Config, path: &Path) -> Option<PathBuf> {
    if !is_encrypted(path) {
        return None;
    }
    let file = path.file_name()?.to_string_lossy().into_owned();
    let dir = path.parent().unwrap_or(Path::new(""));
    let owner = config
        .backups
        .iter()
        .find(|(name, t)| super::is_archive_of(&file, name) && same_dir(&t.dest, dir));
    if let Some((_, t)) = owner {
        return t.identity_file.clone();
    }
    let mut all = config.backups.values().filter_map(|t| t.identity_file.clone());
    let first = all.next();
    if all.next().is_none() { first } else { None }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// The zstd stream of an archive: `raw` itself, or its decryption for an encrypted one.
pub fn plaintext<R: io::BufRead + Send + 'static>(
    raw: R,
    path: &Path,
    identity: Option<&Path>,
) -> io::Result<Box<dyn io::BufRead + Send>> {
    if !is_encrypted(path) {
        return Ok(Box::new(raw));
    }
    let identity = identity.ok_or_else(|| {
        key_error(
            io::ErrorKind::Other,
            "the archive is encrypted and no identity_file is set for its target to decrypt it".into(),
        )
    })?;
    Ok(Box::new(BufReader::with_capacity(
        256 * 1024,
        decrypting(raw, identity)?,
    )))
}
