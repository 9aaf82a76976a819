//! Offsite copies: `backup push` and `backup pull` to an S3-compatible bucket or another
//! directory, through `object_store` (one code path for both).
//!
//! An archive counts as offsite when its sidecar is there and names the same SHA-256 as the
//! local one: the sidecar is uploaded last, so an interrupted push is resumed by the next
//! one. The archive it was on continues from its last stored part (recorded in the state
//! file), unless it is encrypted on the way, which starts over. A pull writes to a
//! temporary name, hashes what it receives, and renames only when the hash matches the
//! remote sidecar.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{BackupError, Progress, archive};
use crate::audit::Draft;
use crate::config::Config;
use crate::config::backups::{BackupTarget, Offsite};
use crate::store::{NewBackup, Store};
use crate::util::hex;

/// Upload part size: S3 wants at least 5 MiB per part.
const PART: usize = 16 * 1024 * 1024;

fn err(what: impl std::fmt::Display) -> BackupError {
    BackupError::Offsite(what.to_string())
}

/// Where the target's archives go offsite.
struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// How an upload is resumed: S3's multipart API, or a partial file in the directory.
    resume: Resume,
}

enum Resume {
    S3(Arc<dyn MultipartStore>),
    Dir(PathBuf),
}

/// The object store and the prefix under which the target's archives go.
fn open(o: &Offsite) -> Result<(Arc<dyn ObjectStore>, ObjectPath), BackupError> {
    bucket(o).map(|b| (b.store, b.prefix))
}

fn bucket(o: &Offsite) -> Result<Bucket, BackupError> {
    if let Some(rest) = o.url.strip_prefix("s3://") {
        // TLS through ring, as everywhere else in runbook (a no-op when already installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&o.region);
        if let Some(e) = &o.endpoint {
            b = b
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(k) = &o.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &o.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        let s3 = Arc::new(b.build().map_err(err)?);
        Ok(Bucket {
            store: s3.clone(),
            prefix: ObjectPath::from(prefix.trim_matches('/')),
            resume: Resume::S3(s3),
        })
    } else {
        std::fs::create_dir_all(&o.url).map_err(|e| BackupError::io(Path::new(&o.url), e))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(&o.url).map_err(err)?;
        Ok(Bucket {
            store: Arc::new(fs),
            prefix: ObjectPath::from(""),
            resume: Resume::Dir(PathBuf::from(&o.url)),
        })
    }
}

fn offsite_of<'t>(t: &'t BackupTarget, name: &str) -> Result<&'t Offsite, BackupError> {
    t.offsite
        .as_ref()
        .ok_or_else(|| BackupError::NoOffsite(name.to_string()))
}

fn child(prefix: &ObjectPath, name: &str) -> ObjectPath {
    if prefix.as_ref().is_empty() {
        ObjectPath::from(name)
    } else {
        prefix.clone().join(name)
    }
}

/// An archive in the offsite store.
#[derive(Debug, Clone, Serialize)]
pub struct Remote {
    /// The archive's name (`main-….tar.zst`), also when it is stored encrypted.
    pub name: String,
    /// Stored as `<name>.age`, encrypted to the target's `encrypt_to`.
    pub encrypted: bool,
    pub size: u64,
    /// From its sidecar; `None` while the sidecar is missing (an interrupted push).
    pub sha256: Option<String>,
    /// The store's entity tag of the object, when it gives one.
    #[serde(skip)]
    pub e_tag: Option<String>,
}

async fn remote_list(store: &dyn ObjectStore, prefix: &ObjectPath, target: &str) -> Result<Vec<Remote>, BackupError> {
    let mut objects = Vec::new();
    let mut sidecars = Vec::new();
    let mut listing = store.list(Some(prefix));
    // Only what is directly under the prefix: another host's `prefix/vps-2/…`, or archives
    // moved into a folder, are not this target's copies.
    let depth = prefix.parts().count() + 1;
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(err)?;
        if meta.location.parts().count() != depth {
            continue;
        }
        let Some(name) = meta.location.filename().map(str::to_string) else {
            continue;
        };
        // `main-db-…` is not an archive of `main`.
        if !super::is_archive_of(&name, target) {
            continue;
        }
        if name.ends_with(".tar.zst.sha256") || name.ends_with(".tar.zst.age.sha256") {
            sidecars.push((name, meta.location));
        } else if name.ends_with(".tar.zst") || name.ends_with(".tar.zst.age") {
            objects.push((name, meta.size, meta.e_tag));
        }
    }
    let mut sizes = HashMap::new();
    for (name, size, e_tag) in objects {
        // `X.tar.zst.age` with a sidecar of its own is an archive encrypted where it was
        // made, copied as it is; without one, the offsite copy of `X.tar.zst`, encrypted here.
        let own_sidecar = sidecars.iter().any(|(s, _)| *s == format!("{name}.sha256"));
        match name.strip_suffix(super::crypt::SUFFIX) {
            Some(plain) if !own_sidecar => sizes.insert(plain.to_string(), (size, true, e_tag)),
            _ => sizes.insert(name, (size, false, e_tag)),
        };
    }
    let mut hashes = HashMap::new();
    for (name, location) in sidecars {
        let bytes = store.get(&location).await.map_err(err)?.bytes().await.map_err(err)?;
        let text = String::from_utf8_lossy(&bytes);
        if let Some(h) = text.split_whitespace().next().filter(|h| h.len() == 64) {
            hashes.insert(name.trim_end_matches(".sha256").to_string(), h.to_ascii_lowercase());
        }
    }
    let mut out: Vec<Remote> = sizes
        .into_iter()
        .map(|(name, (size, encrypted, e_tag))| Remote {
            sha256: hashes.get(&name).cloned(),
            name,
            encrypted,
            size,
            e_tag,
        })
        .collect();
    out.sort_by(|a, b| newest_first(&b.name).cmp(&newest_first(&a.name)));
    Ok(out)
}

/// The order of archive names in time: `main-20261123T033000Z.tar.zst`, then the second one
/// of that second, `main-20261123T033000Z-2.tar.zst` (by name alone it would come first).
fn newest_first(name: &str) -> (&str, u32) {
    let base = name.split(".tar.zst").next().unwrap_or(name);
    match base.rsplit_once('-') {
        Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => (head, n.parse().unwrap_or(0)),
        _ => (base, 1),
    }
}

pub fn list(config: &Config, name: &str) -> Result<Vec<Remote>, BackupError> {
    let t = super::target(config, name)?;
    let (store, prefix) = open(offsite_of(t, name)?)?;
    crate::util::runtime::runtime().block_on(remote_list(store.as_ref(), &prefix, name))
}

#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    pub target: String,
    pub url: String,
    pub pushed: Vec<String>,
    /// Already offsite with the same hash.
    pub skipped: Vec<String>,
    /// Pushed by continuing an upload that an earlier push left unfinished.
    pub resumed: Vec<String>,
    /// Offsite under the same hash, but not the archive (its size says so, or `--check` read
    /// it back), and why: pushed again over it.
    pub replaced: Vec<(String, String)>,
    /// With `--check`: copies read back and found to be their archive.
    pub checked: Vec<String>,
    /// With `--check`: copies that could not be read back or decrypted, and why.
    pub unchecked: Vec<(String, String)>,
    /// With `--check`: copies of archives no longer here found damaged, and why (nothing
    /// here can replace them).
    pub damaged: Vec<(String, String)>,
    /// Not pushed, and why: no readable sidecar, or the file no longer matches it (a copy
    /// of a damaged archive would go offsite under the good hash).
    pub refused: Vec<(String, String)>,
    pub bytes: u64,
}

/// Copies every local archive of the target that is not offsite (by hash) yet. With `check`,
/// the copies already there are read back and hashed too, and one that is not its archive
/// any more is pushed again.
pub fn push(
    config: &Config,
    db: &Store,
    name: &str,
    check: bool,
    progress: &dyn Fn(Progress),
) -> Result<PushReport, BackupError> {
    let t = super::target(config, name)?;
    let o = offsite_of(t, name)?;
    // An offsite directory carries a mark once pushed to. One that archives went to before
    // and has neither the mark nor any of them (or is not there at all) is a mount point
    // with its disk not mounted: the copies would fill the disk under it.
    let mark = (!o.url.starts_with("s3://")).then(|| Path::new(&o.url).join(OFFSITE_MARK));
    if let Some(mark) = mark.as_ref().filter(|m| !m.exists()) {
        let dir = Path::new(&o.url);
        let before = pushed_before(db, name, &o.url)?;
        let none_there = !before.is_empty()
            && !before
                .iter()
                .any(|f| dir.join(f).is_file() || dir.join(format!("{f}{}", super::crypt::SUFFIX)).is_file());
        if none_there {
            return Err(BackupError::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "none of the {} archives pushed to this offsite directory is there, nor its {OFFSITE_MARK} (is its disk mounted?): \
                         nothing pushed; if this is the right place, `mkdir -p {d} && touch {m}` and push again",
                        before.len(),
                        d = dir.display(),
                        m = mark.display()
                    ),
                ),
            ));
        }
    }
    let bucket = bucket(o)?;
    if let Some(mark) = mark.filter(|m| !m.exists()) {
        std::fs::write(&mark, format!("runbook's offsite copies (target `{name}`)\n"))
            .map_err(|e| BackupError::io(&mark, e))?;
    }
    let (store, prefix) = (bucket.store.clone(), bucket.prefix.clone());
    let rt = crate::util::runtime::runtime();
    let recipients = recipients(o)?;
    let encrypt = !recipients.is_empty();
    let remote: HashMap<String, Remote> = rt
        .block_on(remote_list(store.as_ref(), &prefix, name))?
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
    let mut report = PushReport {
        target: name.to_string(),
        url: o.url.clone(),
        pushed: Vec::new(),
        skipped: Vec::new(),
        resumed: Vec::new(),
        replaced: Vec::new(),
        checked: Vec::new(),
        unchecked: Vec::new(),
        damaged: Vec::new(),
        refused: Vec::new(),
        bytes: 0,
    };
    // Copies offsite that cannot be whole: (why, stored encrypted on the way).
    let mut replacing: HashMap<String, (String, bool)> = HashMap::new();
    // Offsite already by hash and size: (local path, file, sha, stored encrypted on the way).
    let mut there: Vec<(PathBuf, String, String, bool)> = Vec::new();
    let mut local: Vec<PathBuf> = super::records_in_dest(db, t, name)?
        .into_iter()
        .map(|r| PathBuf::from(r.path))
        .filter(|p| p.is_file())
        .collect();
    local.reverse(); // oldest first: an interrupted push leaves the newest to the next one
    let here: std::collections::HashSet<String> = local
        .iter()
        .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .collect();
    let mut todo: Vec<(PathBuf, String, String)> = local
        .into_iter()
        .filter_map(|p| {
            let file = p.file_name()?.to_string_lossy().into_owned();
            match archive::read_sidecar(&p) {
                Ok(sha) => Some((p, file, sha)),
                Err(e) => {
                    report.refused.push((file, format!("no readable sidecar: {e}")));
                    None
                }
            }
        })
        .filter(|(path, file, sha)| {
            let Some(copy) = remote.get(file).filter(|r| r.sha256.as_deref() == Some(sha.as_str())) else {
                return true;
            };
            let size = std::fs::metadata(path).map_or(0, |m| m.len());
            match not_whole(copy, size) {
                None => {
                    there.push((path.clone(), file.clone(), sha.clone(), copy.encrypted));
                    false
                }
                Some(why) => {
                    replacing.insert(file.clone(), (why, copy.encrypted));
                    true
                }
            }
        })
        .collect();
    // Copies offsite of archives no longer here (pruned here, kept there): read back with
    // `check` too, though nothing here can replace one that is damaged.
    let mut elsewhere: Vec<&Remote> = if check {
        remote
            .values()
            .filter(|r| r.sha256.is_some() && !here.contains(&r.name))
            .collect()
    } else {
        Vec::new()
    };
    elsewhere.sort_by(|a, b| a.name.cmp(&b.name));
    if check && !(there.is_empty() && elsewhere.is_empty()) {
        // The identities read once: a wrong or unreadable file downloads nothing.
        let ids: Identities = o
            .identity_file
            .as_ref()
            .map(|f| {
                super::crypt::identities(f)
                    .map(|ids| (f.clone(), ids))
                    .map_err(|e| format!("offsite.identity_file: {e}"))
            })
            .transpose();
        // Copies encrypted on the way are decrypted from scratch space next to the archives,
        // made at the first one and removed after (a killed check's goes with the next create).
        let scratch: std::cell::OnceCell<super::scratch::Scratch> = std::cell::OnceCell::new();
        let scratch_dir = || -> Result<PathBuf, BackupError> {
            if scratch.get().is_none() {
                let made = super::scratch::create(&t.dest, CHECK_PREFIX).map_err(|e| BackupError::io(&t.dest, e))?;
                let _ = scratch.set(made);
            }
            Ok(scratch.get().map(|s| s.path().to_path_buf()).unwrap_or_default())
        };
        progress(Progress::Phase("reading offsite copies back"));
        progress(Progress::Total(
            there.iter().map(|(_, file, _, _)| remote[file].size).sum::<u64>()
                + elsewhere.iter().map(|r| r.size).sum::<u64>(),
        ));
        for (path, file, sha, sealed) in std::mem::take(&mut there) {
            let copy = &remote[&file];
            match check_copy(store.as_ref(), &prefix, copy, &sha, &ids, &scratch_dir, progress) {
                Ok(Ok(())) => {
                    report.checked.push(file.clone());
                    there.push((path, file, sha, sealed));
                }
                Ok(Err(why)) => {
                    replacing.insert(file.clone(), (why, sealed));
                    todo.push((path, file, sha));
                }
                Err(e) => {
                    report.unchecked.push((file.clone(), e.to_string()));
                    there.push((path, file, sha, sealed));
                }
            }
        }
        for copy in elsewhere {
            let sha = copy.sha256.as_deref().unwrap_or_default();
            match check_copy(store.as_ref(), &prefix, copy, sha, &ids, &scratch_dir, progress) {
                Ok(Ok(())) => report.checked.push(copy.name.clone()),
                Ok(Err(why)) => report.damaged.push((copy.name.clone(), why)),
                Err(e) => report.unchecked.push((copy.name.clone(), e.to_string())),
            }
        }
    }
    report.skipped = there.into_iter().map(|(_, file, _, _)| file).collect();
    progress(Progress::Phase("uploading"));
    progress(Progress::Total(
        todo.iter()
            .filter_map(|(p, _, _)| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum(),
    ));
    for (path, file, sha) in todo {
        // An archive encrypted where it was made goes as it is. An archive encrypted on the
        // way cannot be resumed (each encryption differs); a plain copy continues from the
        // last part stored. Either way, its bytes must hash to its sidecar.
        let seal = encrypt && !super::crypt::is_encrypted(&path);
        // The copy itself may be whole already, its sidecar missing: an earlier push stopped
        // (killed, or the store refusing the sidecar) between the two.
        let unsealed = remote.get(&file).filter(|r| !r.encrypted && r.sha256.is_none());
        let sent = if seal {
            let to = child(&prefix, &format!("{file}{}", super::crypt::SUFFIX));
            rt.block_on(upload_sealed(store.as_ref(), &to, &path, &recipients, &sha, progress))
                .map(|r| r.map(|sent| (sent, false)))
        } else if let Some(copy) = unsealed
            && copy_is_whole(&bucket.resume, &child(&prefix, &file), copy, &path, &sha)
        {
            db.forget_offsite_upload(&o.url, &file)?;
            Ok(Ok((0, true)))
        } else {
            let job = Upload {
                db,
                url: &o.url,
                to: child(&prefix, &file),
                file: &file,
                from: &path,
                sha256: &sha,
                max_rate: o.max_rate.map(|r| r.0),
            };
            rt.block_on(upload_resumable(&bucket.resume, &job, progress))
        };
        // One archive that cannot go (damaged, or the store refusing it) does not keep the
        // newer ones from going: it is listed with the reason, and the push exits 1.
        let sidecar = format!("{sha}  {file}\n");
        let sent = match sent {
            Ok(Ok(done)) => rt
                .block_on(store.put(&child(&prefix, &format!("{file}.sha256")), sidecar.into_bytes().into()))
                .map_err(err)
                .map(|_| Ok(done)),
            other => other,
        };
        let sent = match sent {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(why)) => Err(why),
            Err(e) => Err(e.to_string()),
        };
        match sent {
            Ok((bytes, resumed)) => {
                if resumed {
                    report.resumed.push(file.clone());
                }
                if let Some((why, sealed)) = replacing.remove(&file) {
                    // The copy cut short was the other form (`encrypt_to` changed since): it
                    // goes, or every later push would find it and send the archive again.
                    if sealed != seal {
                        let old = child(
                            &prefix,
                            &format!("{file}{}", if sealed { super::crypt::SUFFIX } else { "" }),
                        );
                        let _ = rt.block_on(store.delete(&old));
                    }
                    report.replaced.push((file.clone(), why));
                }
                report.bytes += bytes;
                report.pushed.push(file);
            }
            Err(why) => {
                // What was found of the offsite copy is not lost with the upload.
                let why = match replacing.remove(&file) {
                    Some((damage, _)) => {
                        format!("the offsite copy is not whole ({damage}) and was not replaced: {why}")
                    }
                    None => why,
                };
                report.refused.push((file, why));
            }
        }
    }
    db.audit_append(&Draft::new(
        "backup.pushed",
        name,
        json!({ "url": o.url, "pushed": report.pushed, "skipped": report.skipped.len(), "bytes": report.bytes,
                "refused": report.refused, "replaced": report.replaced, "checked": report.checked.len(),
                "unchecked": report.unchecked, "damaged": report.damaged }),
        &config.redactor,
    ))?;
    Ok(report)
}

/// The file that marks a directory as runbook's offsite copies (see [`push`]).
pub(crate) const OFFSITE_MARK: &str = ".runbook-offsite";

/// The archives pushes of target `name` have stored at the offsite `url` (by the audit log's
/// `backup.pushed` events), each once.
fn pushed_before(db: &Store, name: &str, url: &str) -> Result<std::collections::BTreeSet<String>, BackupError> {
    let events = db.audit_list(&crate::store::AuditFilter {
        kind: Some("backup.pushed".into()),
        ..Default::default()
    })?;
    Ok(events
        .iter()
        .filter(|e| e.subject == name)
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(&e.data).ok())
        .filter(|d| d["url"] == url)
        .flat_map(|d| {
            d["pushed"]
                .as_array()
                .map(|p| {
                    p.iter()
                        .filter_map(|f| f.as_str().map(str::to_string))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect())
}

/// Scratch directories of `backup push --check` in `dest`.
pub(crate) const CHECK_PREFIX: &str = ".offsite-check-";

/// `offsite.identity_file` and its identities, when it is set; why not, when it cannot be
/// read.
type Identities = Result<Option<(PathBuf, Vec<Box<dyn age::Identity + Send + Sync>>)>, String>;

/// Reads the offsite copy `r` back and hashes the archive it holds (decrypting a copy
/// encrypted on the way with `ids`, in scratch space): `Ok(Err(why))` when it is damaged,
/// not the archive of hash `sha`; `Err` when it cannot be read back or decrypted at all (the
/// store, no identity, the wrong one).
fn check_copy(
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    r: &Remote,
    sha: &str,
    ids: &Identities,
    scratch: &dyn Fn() -> Result<PathBuf, BackupError>,
    progress: &dyn Fn(Progress),
) -> Result<Result<(), String>, BackupError> {
    use std::io::Read;
    let rt = crate::util::runtime::runtime();
    let differs = |got: &str| format!("the offsite copy holds SHA-256 {got}, its sidecar says {sha}: it is damaged");
    if !r.encrypted {
        let got = rt.block_on(async {
            let mut hash = super::sha2x::Lane::new();
            let mut stream = store.get(&child(prefix, &r.name)).await.map_err(err)?.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(err)?;
                hash.update(&chunk);
                progress(Progress::Advance(chunk.len() as u64));
            }
            Ok::<_, BackupError>(crate::util::hex(&hash.finalize()))
        })?;
        return Ok(if got == sha { Ok(()) } else { Err(differs(&got)) });
    }
    let (from, ids) = match ids {
        Ok(Some(ids)) => ids,
        Ok(None) => {
            return Err(err(format!(
                "{} is encrypted: reading it back needs offsite.identity_file",
                r.name
            )));
        }
        Err(why) => return Err(err(why)),
    };
    let cipher = scratch()?.join(format!("{}{}", r.name, super::crypt::SUFFIX));
    let outcome = rt
        .block_on(download(
            store,
            &child(prefix, &format!("{}{}", r.name, super::crypt::SUFFIX)),
            &cipher,
            None,
            progress,
        ))
        .and_then(|()| {
            let input = std::fs::File::open(&cipher).map_err(|e| BackupError::io(&cipher, e))?;
            let damaged = |e: std::io::Error| format!("the offsite copy does not decrypt whole ({e}): it is damaged");
            let mut reader = match super::crypt::decrypting_with(input, ids, from) {
                Ok(reader) => reader,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Ok(Err(damaged(e))),
                // Not a word on the copy: the identity is not among its recipients.
                Err(e) => return Err(err(format!("{}: {e}", r.name))),
            };
            let mut hash = super::sha2x::Lane::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => {
                        let got = crate::util::hex(&hash.finalize());
                        return Ok(if got == sha { Ok(()) } else { Err(differs(&got)) });
                    }
                    Ok(n) => hash.update(&buf[..n]),
                    Err(e)
                        if e.kind() == std::io::ErrorKind::InvalidData
                            || e.kind() == std::io::ErrorKind::UnexpectedEof =>
                    {
                        return Ok(Err(damaged(e)));
                    }
                    Err(e) => return Err(BackupError::io(&cipher, e)),
                }
            }
        });
    let _ = std::fs::remove_file(&cipher);
    outcome
}

/// Why the offsite copy `r` of a local archive of `size` bytes cannot be that archive, if
/// its size says so. A copy as it is has the archive's size; one encrypted on the way has at
/// least the archive's bytes and age's framing: a header, a nonce and a 16-byte tag for each
/// 64 KiB chunk. (A copy damaged without a change of size is found by `pull` and
/// `drill --from-offsite`, which check every byte against the hash.)
fn not_whole(r: &Remote, size: u64) -> Option<String> {
    if !r.encrypted {
        return (r.size != size).then(|| format!("the offsite copy has {} bytes, the archive {size}", r.size));
    }
    // "age-encryption.org/v1\n" (22 bytes) and the "--- <mac>\n" line (48) at the least.
    let least = size + 16 * size.div_ceil(64 << 10).max(1) + 16 + 70;
    (r.size < least).then(|| {
        format!(
            "the offsite copy has {} bytes, fewer than the {size}-byte archive takes encrypted",
            r.size
        )
    })
}

fn recipients(o: &Offsite) -> Result<Vec<age::x25519::Recipient>, BackupError> {
    super::crypt::recipients(&o.encrypt_to).map_err(err)
}

/// Where the encryptor writes: taken out in chunks and handed to the upload.
#[derive(Clone, Default)]
struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Uploads a file in parts, encrypted on the way to `recipients` (age's streaming format).
/// What is read is hashed, and the upload is only completed when that is `expect` (the
/// sidecar's); otherwise it is aborted, and the inner error says why.
async fn upload_sealed(
    store: &dyn ObjectStore,
    to: &ObjectPath,
    from: &Path,
    recipients: &[age::x25519::Recipient],
    expect: &str,
    progress: &dyn Fn(Progress),
) -> Result<Result<u64, String>, BackupError> {
    use std::io::Read;
    let io = |e| BackupError::io(from, e);
    let mut file = std::fs::File::open(from).map_err(io)?;
    let shared = Shared::default();
    let mut encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(err)?
        .wrap_output(shared.clone())
        .map_err(io)?;
    let upload = store.put_multipart(to).await.map_err(err)?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
    let pumped = async {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let mut read = super::sha2x::Lane::new();
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            read.update(&buf[..n]);
            w.wait_for_capacity(4).await.map_err(err)?;
            encryptor.write_all(&buf[..n]).map_err(io)?;
            w.write(&shared.take());
            total += n as u64;
            progress(Progress::Advance(n as u64));
        }
        encryptor.finish().map_err(io)?;
        w.write(&shared.take());
        Ok::<_, BackupError>((total, crate::util::hex(&read.finalize())))
    }
    .await;
    // An upload that cannot go on is aborted, so its parts do not stay on the store (nothing
    // continues an encrypted upload: each encryption differs).
    let (total, got) = match pumped {
        Ok(done) => done,
        Err(e) => {
            let _ = w.abort().await;
            return Err(e);
        }
    };
    if got != expect {
        let _ = w.abort().await;
        return Ok(Err(mismatch(&got, expect)));
    }
    w.finish().await.map_err(err)?;
    Ok(Ok(total))
}

/// Why an archive whose bytes do not hash to its sidecar is not pushed.
fn mismatch(got: &str, want: &str) -> String {
    format!("its SHA-256 is {got}, its sidecar says {want}: the archive changed or is damaged (`backup verify` it)")
}

/// One archive to upload so that an interrupted upload can continue.
struct Upload<'a> {
    db: &'a Store,
    url: &'a str,
    to: ObjectPath,
    file: &'a str,
    from: &'a Path,
    sha256: &'a str,
    max_rate: Option<u64>,
}

/// Uploads one archive part by part, recording each stored part in the state file: a push
/// that was interrupted continues from the next part, unless the archive changed. Returns the
/// bytes sent now and whether an earlier upload was continued; or, inside, why the archive
/// was not pushed: the local file does not match its sidecar (checked over every byte, those
/// of an earlier push included, before the upload is completed).
async fn upload_resumable(
    resume: &Resume,
    job: &Upload<'_>,
    progress: &dyn Fn(Progress),
) -> Result<Result<(u64, bool), String>, BackupError> {
    use std::io::{Read, Seek, SeekFrom};
    let io = |e| BackupError::io(job.from, e);
    let size = std::fs::metadata(job.from).map_err(io)?.len();
    let parts_total = size.div_ceil(PART as u64).max(1) as usize;
    let mut state = job.db.offsite_upload(job.url, job.file)?;
    if state
        .as_ref()
        .is_some_and(|u| u.sha256 != job.sha256 || u.part_size != PART as i64)
    {
        // Another file under the same name, or another part size: start over.
        if let (Some(u), Resume::S3(mp)) = (&state, resume) {
            let _ = mp.abort_multipart(&job.to, &u.upload_id).await;
        }
        job.db.forget_offsite_upload(job.url, job.file)?;
        state = None;
    }
    let resumed = state.as_ref().is_some_and(|u| !u.parts.is_empty());
    // An upload an earlier push began (with or without parts stored) may be gone from the
    // store; once this push has stored a part in it, it is known to be there.
    let continued = state.is_some();
    let mut confirmed = false;
    let mut state = match state {
        Some(u) => u,
        None => {
            let upload_id = match resume {
                Resume::S3(mp) => mp.create_multipart(&job.to).await.map_err(err)?,
                Resume::Dir(_) => "dir".to_string(),
            };
            let u = crate::store::OffsiteUpload {
                url: job.url.to_string(),
                archive: job.file.to_string(),
                sha256: job.sha256.to_string(),
                upload_id,
                part_size: PART as i64,
                parts: Vec::new(),
                started_at: crate::clock::to_text(crate::clock::now()),
                failed_starts: 0,
            };
            job.db.save_offsite_upload(&u)?;
            u
        }
    };
    // A directory copy is written to a partial file next to where it goes, cut back to the
    // parts recorded as stored (anything after them may not have reached the disk).
    let partial = match resume {
        Resume::Dir(root) => {
            let dest = root.join(job.to.as_ref());
            let partial = dest.with_file_name(format!(".{}.partial", job.file));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&partial)
                .map_err(|e| BackupError::io(&partial, e))?;
            let have = f.metadata().map_err(|e| BackupError::io(&partial, e))?.len();
            let stored = (state.parts.len() as u64 * PART as u64).min(size);
            if have < stored {
                // The partial file lost what the state file says was stored (removed, or
                // cut short): those parts are sent again rather than taken as zeros.
                state.parts.clear();
                job.db.save_offsite_upload(&state)?;
            }
            f.set_len((state.parts.len() as u64 * PART as u64).min(size))
                .map_err(|e| BackupError::io(&partial, e))?;
            Some((f, partial, dest))
        }
        Resume::S3(_) => None,
    };
    let done = state.parts.len().min(parts_total);
    progress(Progress::Advance((done * PART) as u64));
    let mut file = std::fs::File::open(job.from).map_err(io)?;
    // What is sent is hashed, and what an earlier push sent is read again for it.
    let mut local = super::sha2x::Lane::new();
    let mut before = (&mut file).take((done * PART) as u64);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = before.read(&mut chunk).map_err(io)?;
        if n == 0 {
            break;
        }
        local.update(&chunk[..n]);
    }
    let started = std::time::Instant::now();
    let mut sent = 0u64;
    for idx in done..parts_total {
        let offset = idx as u64 * PART as u64;
        let len = (size - offset).min(PART as u64) as usize;
        let mut buf = vec![0u8; len];
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.read_exact(&mut buf).map_err(io)?;
        local.update(&buf);
        let id = match (resume, &partial) {
            (Resume::S3(mp), _) => match mp.put_part(&job.to, &state.upload_id, idx, buf.into()).await {
                Ok(part) => {
                    confirmed = true;
                    part.content_id
                }
                Err(e) => return Err(give_up(job, mp, &mut state, continued && !confirmed, e).await),
            },
            (Resume::Dir(_), Some((f, p, _))) => {
                use std::os::unix::fs::FileExt;
                f.write_all_at(&buf, offset).map_err(|e| BackupError::io(p, e))?;
                f.sync_data().map_err(|e| BackupError::io(p, e))?;
                String::new()
            }
            (Resume::Dir(_), None) => unreachable!("a directory upload has its partial file"),
        };
        state.parts.push(id);
        state.failed_starts = 0;
        job.db.save_offsite_upload(&state)?;
        sent += len as u64;
        progress(Progress::Advance(len as u64));
        if let Some(rate) = job.max_rate.filter(|r| *r > 0) {
            let due = std::time::Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    // Every byte of the copy, this push's and an earlier one's, came from the file just
    // hashed: it is only completed (or renamed into place) when that is the sidecar's hash.
    let sent_sha = crate::util::hex(&local.finalize());
    if sent_sha != job.sha256 {
        if let Resume::S3(mp) = resume {
            let _ = mp.abort_multipart(&job.to, &state.upload_id).await;
        }
        if let Some((_, partial, _)) = &partial {
            let _ = std::fs::remove_file(partial);
        }
        job.db.forget_offsite_upload(job.url, job.file)?;
        return Ok(Err(mismatch(&sent_sha, job.sha256)));
    }
    match (resume, partial) {
        (Resume::S3(mp), _) => {
            let parts = state.parts.iter().map(|c| PartId { content_id: c.clone() }).collect();
            if let Err(e) = mp.complete_multipart(&job.to, &state.upload_id, parts).await {
                return Err(give_up(job, mp, &mut state, continued && !confirmed, e).await);
            }
        }
        (Resume::Dir(_), Some((f, partial, dest))) => {
            f.sync_all().map_err(|e| BackupError::io(&partial, e))?;
            drop(f);
            std::fs::rename(&partial, &dest).map_err(|e| BackupError::io(&dest, e))?;
            if let Some(dir) = dest.parent() {
                super::fsync_dir(dir);
            }
        }
        (Resume::Dir(_), None) => {}
    }
    job.db.forget_offsite_upload(job.url, job.file)?;
    Ok(Ok((sent, resumed)))
}

/// Whether `copy`, offsite without its sidecar, is the archive at `path` of hash `sha`
/// already. In a directory, the copy is hashed where it is. On S3 it is not read back: its
/// entity tag is that of the parts the archive makes (the MD5 of their MD5s, the way S3
/// and the stores that speak its API tag a multipart upload), and the archive's own bytes
/// hash to `sha`. Anything else (another tag scheme, a read that fails) says no, and the
/// archive is sent again.
fn copy_is_whole(resume: &Resume, to: &ObjectPath, copy: &Remote, path: &Path, sha: &str) -> bool {
    use md5::Digest;
    let Ok(size) = std::fs::metadata(path).map(|m| m.len()) else {
        return false;
    };
    if copy.size != size {
        return false;
    }
    match resume {
        Resume::Dir(root) => super::fsutil::hash_file(&root.join(to.as_ref())).is_ok_and(|(_, h)| h == sha),
        Resume::S3(_) => {
            let Some(tag) = copy.e_tag.as_deref().map(|t| t.trim_matches('"').to_ascii_lowercase()) else {
                return false;
            };
            let (mut parts, mut count) = (md5::Md5::new(), 0usize);
            let mut each = |bytes: &[u8]| {
                parts.update(md5::Md5::digest(bytes));
                count += 1;
            };
            let local = hash_parts(path, &mut each);
            let want = format!("{}-{}", crate::util::hex(&parts.finalize()), count.max(1));
            local.is_some_and(|h| h == sha) && tag == want
        }
    }
}

/// The SHA-256 of `file` (`None` when it cannot be read), read in upload parts, each handed
/// to `part` too.
fn hash_parts(file: &Path, part: &mut dyn FnMut(&[u8])) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(file).ok()?;
    let mut whole = super::sha2x::Lane::new();
    let mut buf = Vec::with_capacity(PART);
    loop {
        buf.clear();
        (&mut f).take(PART as u64).read_to_end(&mut buf).ok()?;
        if buf.is_empty() {
            break;
        }
        whole.update(&buf);
        part(&buf);
    }
    Some(crate::util::hex(&whole.finalize()))
}

/// Pushes in a row that may fail on their first request to an upload an earlier push began
/// (with an error of the store's, see [`Failure`]) before it is started over.
const FAILED_STARTS: i64 = 3;

/// What a failed request says of the upload it was for.
#[derive(Debug, PartialEq)]
enum Failure {
    /// The store has no such upload (S3's `NoSuchUpload`, a 404).
    Gone,
    /// Nothing of the upload: the link (no answer, a timeout), or the store refusing this
    /// client (401, 403) for a while, as with credentials mid-rotation.
    Passing,
    /// The store erring on it (a 5xx after the client's retries, another 4xx): some servers
    /// answer a vanished upload so.
    Erring,
}

fn failure(e: &object_store::Error) -> Failure {
    use object_store::Error as E;
    match e {
        // A 404 from something in between (a proxy's page) is not the store's word.
        E::NotFound { .. } if e.to_string().contains("NoSuchUpload") => Failure::Gone,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => Failure::Passing,
        _ => {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
            while let Some(c) = cause {
                if c.downcast_ref::<object_store::client::HttpError>().is_some() {
                    return Failure::Passing;
                }
                cause = c.source();
            }
            Failure::Erring
        }
    }
}

/// An S3 request of an upload failed. An upload an earlier push began, that no request of
/// this push has reached yet (`unconfirmed`), may be gone from the store (aborted by a
/// lifecycle rule, or completed by a push killed before it could say so). When the store
/// answers that it has no such upload, or when this is the third push in a row whose first
/// request to it the store answered with an error, its state is dropped so the next push
/// starts over instead of failing on it for ever. A failure of the link, or the store
/// refusing this client for a while, costs nothing: the state and the parts stored so far
/// stay for the next push. So does any failure of a new upload, or of one this push has
/// stored a part in.
async fn give_up(
    job: &Upload<'_>,
    mp: &Arc<dyn MultipartStore>,
    state: &mut crate::store::OffsiteUpload,
    unconfirmed: bool,
    e: object_store::Error,
) -> BackupError {
    if !unconfirmed {
        return err(e);
    }
    let kind = failure(&e);
    let kept = |state: &crate::store::OffsiteUpload, more: &str| {
        err(format!(
            "{e} (the {} parts stored so far are kept for the next push{more})",
            state.parts.len()
        ))
    };
    if kind == Failure::Passing {
        return kept(state, "");
    }
    state.failed_starts += 1;
    if kind == Failure::Gone || state.failed_starts >= FAILED_STARTS {
        // Parts of an upload that cannot be aborted stay on the store until its own rule for
        // unfinished uploads removes them: its id is named so it can be removed by hand.
        let aborted = match mp.abort_multipart(&job.to, &state.upload_id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => String::new(),
            Err(abort) => format!("; aborting upload {} failed too ({abort})", state.upload_id),
        };
        if let Err(forget) = job.db.forget_offsite_upload(job.url, job.file) {
            return forget.into();
        }
        return err(format!(
            "{e} (the upload an earlier push began is dropped: the next push starts this archive over{aborted})"
        ));
    }
    if let Err(save) = job.db.save_offsite_upload(state) {
        return save.into();
    }
    kept(
        state,
        &format!("; after {FAILED_STARTS} pushes in a row fail like this, the upload starts over"),
    )
}

#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    pub target: String,
    pub pulled: Vec<PathBuf>,
    pub skipped: Vec<String>,
    /// (archive, why) for each that could not be pulled; the others still were (exit 1).
    pub failed: Vec<(String, String)>,
}

/// Copies offsite archives that are not here (all, or the one named) into `into` (default:
/// the target's `dest`), each checked against its offsite sidecar.
pub fn pull(
    config: &Config,
    db: &Store,
    name: &str,
    only: Option<&str>,
    into: Option<&Path>,
    progress: &dyn Fn(Progress),
) -> Result<PullReport, BackupError> {
    let t = super::target(config, name)?;
    let o = offsite_of(t, name)?;
    let (store, prefix) = open(o)?;
    let rt = crate::util::runtime::runtime();
    let remote = rt.block_on(remote_list(store.as_ref(), &prefix, name))?;
    let dest = into.unwrap_or(&t.dest).to_path_buf();
    std::fs::create_dir_all(&dest).map_err(|e| BackupError::io(&dest, e))?;
    // Into `dest`, under the target's lock: a create that finds a download's `.part` file
    // then knows it is what a killed pull left.
    let _lock = match into {
        None => Some(super::fsutil::lock(&dest, name)?),
        Some(_) => None,
    };
    let mut report = PullReport {
        target: name.to_string(),
        pulled: Vec::new(),
        skipped: Vec::new(),
        failed: Vec::new(),
    };
    let wanted: Vec<&Remote> = remote.iter().filter(|r| only.is_none_or(|o| o == r.name)).collect();
    if let Some(o) = only
        && wanted.is_empty()
    {
        return Err(err(format!("no archive `{o}` offsite")));
    }
    for r in wanted {
        let Some(sha) = &r.sha256 else {
            report
                .skipped
                .push(format!("{} (no sidecar: an interrupted push)", r.name));
            continue;
        };
        let local = dest.join(&r.name);
        if archive::read_sidecar(&local).is_ok_and(|h| &h == sha) && local.is_file() {
            // Here already; recorded now if an earlier pull could not record it.
            if into.is_none() && super::record_of(db, &local)?.is_none() {
                if let Err(e) = record(config, db, name, &local, sha) {
                    report.failed.push((r.name.clone(), e.to_string()));
                    continue;
                }
                report.pulled.push(local);
                continue;
            }
            report.skipped.push(r.name.clone());
            continue;
        }
        // A file of this name here already (its sidecar lost) is replaced only by the same
        // bytes, and is not removed if recording fails.
        let was_here = local.exists();
        let kept = fetch(o, store.as_ref(), &prefix, r, sha, &local, progress)
            .and_then(|()| archive::write_sidecar(&local, sha).map_err(|e| BackupError::io(&local, e)))
            .and_then(|_| match into {
                None => record(config, db, name, &local, sha),
                Some(_) => Ok(()),
            });
        match kept {
            Ok(()) => report.pulled.push(local),
            // One archive that cannot be had (damaged offsite, no identity) does not keep
            // the older ones from coming back. It is not left half there: a file the state
            // file does not know would never be pulled again.
            Err(e) => {
                if !was_here {
                    let _ = std::fs::remove_file(archive::sidecar_path(&local));
                    let _ = std::fs::remove_file(&local);
                }
                report.failed.push((r.name.clone(), e.to_string()));
            }
        }
    }
    Ok(report)
}

/// Downloads one archive (decrypting it if it is stored encrypted) to `local`, checked
/// against `sha`; nothing of it is left if that fails.
fn fetch(
    o: &Offsite,
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    r: &Remote,
    sha: &str,
    local: &Path,
    progress: &dyn Fn(Progress),
) -> Result<(), BackupError> {
    let rt = crate::util::runtime::runtime();
    progress(Progress::Phase("downloading"));
    progress(Progress::Total(r.size));
    if r.encrypted {
        let identity = o.identity_file.as_deref().ok_or_else(|| {
            err(format!(
                "{} is encrypted: set offsite.identity_file to the age identity that decrypts it",
                r.name
            ))
        })?;
        let mut cipher = local.as_os_str().to_owned();
        cipher.push(".age.part");
        let cipher = PathBuf::from(cipher);
        let fetched = rt.block_on(download(
            store,
            &child(prefix, &format!("{}.age", r.name)),
            &cipher,
            None,
            progress,
        ));
        let result = fetched.and_then(|()| decrypt(&cipher, local, identity, sha));
        let _ = std::fs::remove_file(&cipher);
        result
    } else {
        rt.block_on(download(store, &child(prefix, &r.name), local, Some(sha), progress))
    }
}

/// A file arriving under `<to>.part`, hashed as it is written; it takes its real name only
/// when complete, fsynced and (if asked) of the expected hash. Dropped unfinished, it is removed.
struct Landing {
    tmp: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
    hasher: Sha256,
}

impl Landing {
    fn new(to: &Path) -> Result<Landing, BackupError> {
        let mut tmp = to.as_os_str().to_owned();
        tmp.push(".part");
        let tmp = PathBuf::from(tmp);
        let f = std::fs::File::create(&tmp).map_err(|e| BackupError::io(&tmp, e))?;
        Ok(Landing {
            out: Some(std::io::BufWriter::new(f)),
            tmp,
            hasher: Sha256::new(),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        self.hasher.update(bytes);
        match self.out.as_mut() {
            Some(out) => out.write_all(bytes).map_err(|e| BackupError::io(&self.tmp, e)),
            None => Ok(()),
        }
    }

    /// `what` names the content in a mismatch (`downloaded`, `decrypted`).
    fn finish(
        mut self,
        to: &Path,
        expected: Option<&str>,
        what: &str,
        from: &dyn std::fmt::Display,
    ) -> Result<(), BackupError> {
        let out = self.out.take().expect("finished once");
        let f = out
            .into_inner()
            .map_err(|e| BackupError::io(&self.tmp, e.into_error()))?;
        f.sync_all().map_err(|e| BackupError::io(&self.tmp, e))?;
        let got = hex(&std::mem::take(&mut self.hasher).finalize());
        if let Some(expected) = expected
            && got != expected
        {
            return Err(err(format!(
                "{from}: {what} SHA-256 {got} does not match the offsite sidecar {expected}"
            )));
        }
        std::fs::rename(&self.tmp, to).map_err(|e| BackupError::io(to, e))?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Streams an object to `to`, renamed into place only if what came has the SHA-256
/// `expected` (when one is given).
async fn download(
    store: &dyn ObjectStore,
    from: &ObjectPath,
    to: &Path,
    expected: Option<&str>,
    progress: &dyn Fn(Progress),
) -> Result<(), BackupError> {
    let mut landing = Landing::new(to)?;
    let mut stream = store.get(from).await.map_err(err)?.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(err)?;
        landing.write(&chunk)?;
        progress(Progress::Advance(chunk.len() as u64));
    }
    landing.finish(to, expected, "downloaded", from)
}

/// Decrypts `cipher` into `plain`, checking the plaintext's hash.
fn decrypt(cipher: &Path, plain: &Path, identity: &Path, expected: &str) -> Result<(), BackupError> {
    use std::io::Read;
    let input = std::fs::File::open(cipher).map_err(|e| BackupError::io(cipher, e))?;
    let mut reader =
        super::crypt::decrypting(input, identity).map_err(|e| err(format!("{}: {e}", cipher.display())))?;
    let mut landing = Landing::new(plain)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| err(format!("decrypting {}: {e}", cipher.display())))?;
        if n == 0 {
            break;
        }
        landing.write(&buf[..n])?;
    }
    landing.finish(plain, Some(expected), "decrypted", &cipher.display())
}

/// A pulled archive is recorded like a created one (its manifest says when and where).
fn record(config: &Config, db: &Store, name: &str, path: &Path, sha: &str) -> Result<(), BackupError> {
    let identity = super::crypt::identity_for(config, path);
    let m = archive::read_manifest(path, identity.as_deref()).map_err(|e| BackupError::io(path, e))?;
    let size = std::fs::metadata(path).map_err(|e| BackupError::io(path, e))?.len();
    let created = m
        .created
        .parse::<jiff::Timestamp>()
        .map(crate::clock::to_text)
        .unwrap_or_else(|_| m.created.clone());
    db.record_backup(
        &NewBackup {
            target: name.to_string(),
            path: path.display().to_string(),
            created_at: created,
            host: m.host.clone(),
            size: size as i64,
            sha256: sha.to_string(),
            files: m.files().count() as i64,
            data_bytes: m.data_bytes() as i64,
            duration_ms: 0,
        },
        &Draft::new(
            "backup.pulled",
            name,
            json!({ "archive": path, "sha256": sha, "from": m.host }),
            &config.redactor,
        ),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::newest_first;

    #[test]
    fn archives_of_the_same_second_keep_their_order() {
        let mut names = vec![
            "main-20261123T033000Z-2.tar.zst",
            "main-20261123T033000Z.tar.zst",
            "main-20261124T033000Z.tar.zst.age",
            "main-20261123T033000Z-10.tar.zst",
        ];
        names.sort_by(|a, b| newest_first(b).cmp(&newest_first(a)));
        assert_eq!(
            names,
            [
                "main-20261124T033000Z.tar.zst.age",
                "main-20261123T033000Z-10.tar.zst",
                "main-20261123T033000Z-2.tar.zst",
                "main-20261123T033000Z.tar.zst",
            ]
        );
    }
}
