//! `backup push`: every local archive not yet offsite is copied, sidecar last, each copy
//! checked; encrypted on the way when the target says `encrypt_to`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use serde::Serialize;
use serde_json::json;

use super::pull::download;
use super::remote::{
    CHECK_PREFIX, OFFSITE_MARK, PART, Remote, bucket, child, err, mismatch, not_whole, offsite_of, remote_list,
};
use super::upload::{Upload, copy_is_whole, upload_resumable};
use crate::audit::Draft;
use crate::backup::{BackupError, Progress, archive};
use crate::config::Config;
use crate::config::backups::Offsite;
use crate::store::Store;

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
    let t = crate::backup::target(config, name)?;
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
                .any(|f| dir.join(f).is_file() || dir.join(format!("{f}{}", crate::backup::crypt::SUFFIX)).is_file());
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
    let mut local: Vec<PathBuf> = crate::backup::records_in_dest(db, t, name)?
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
                crate::backup::crypt::identities(f)
                    .map(|ids| (f.clone(), ids))
                    .map_err(|e| format!("offsite.identity_file: {e}"))
            })
            .transpose();
        // Copies encrypted on the way are decrypted from scratch space next to the archives,
        // made at the first one and removed after (a killed check's goes with the next create).
        let scratch: std::cell::OnceCell<crate::backup::scratch::Scratch> = std::cell::OnceCell::new();
        let scratch_dir = || -> Result<PathBuf, BackupError> {
            if scratch.get().is_none() {
                let made =
                    crate::backup::scratch::create(&t.dest, CHECK_PREFIX).map_err(|e| BackupError::io(&t.dest, e))?;
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
        let seal = encrypt && !crate::backup::crypt::is_encrypted(&path);
        // The copy itself may be whole already, its sidecar missing: an earlier push stopped
        // (killed, or the store refusing the sidecar) between the two.
        let unsealed = remote.get(&file).filter(|r| !r.encrypted && r.sha256.is_none());
        let sent = if seal {
            let to = child(&prefix, &format!("{file}{}", crate::backup::crypt::SUFFIX));
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
                            &format!("{file}{}", if sealed { crate::backup::crypt::SUFFIX } else { "" }),
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

/// The archives pushes of target `name` have stored at the offsite `url` (by the audit log's
/// `backup.pushed` events), each once.
pub(super) fn pushed_before(
    db: &Store,
    name: &str,
    url: &str,
) -> Result<std::collections::BTreeSet<String>, BackupError> {
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

/// `offsite.identity_file` and its identities, when it is set; why not, when it cannot be
/// read.
pub(super) type Identities = Result<Option<(PathBuf, Vec<Box<dyn age::Identity + Send + Sync>>)>, String>;

/// Reads the offsite copy `r` back and hashes the archive it holds (decrypting a copy
/// encrypted on the way with `ids`, in scratch space): `Ok(Err(why))` when it is damaged,
/// not the archive of hash `sha`; `Err` when it cannot be read back or decrypted at all (the
/// store, no identity, the wrong one).
pub(super) fn check_copy(
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
            let mut hash = crate::backup::sha2x::Lane::new();
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
    let cipher = scratch()?.join(format!("{}{}", r.name, crate::backup::crypt::SUFFIX));
    let outcome = rt
        .block_on(download(
            store,
            &child(prefix, &format!("{}{}", r.name, crate::backup::crypt::SUFFIX)),
            &cipher,
            None,
            progress,
        ))
        .and_then(|()| {
            let input = std::fs::File::open(&cipher).map_err(|e| BackupError::io(&cipher, e))?;
            let damaged = |e: std::io::Error| format!("the offsite copy does not decrypt whole ({e}): it is damaged");
            let mut reader = match crate::backup::crypt::decrypting_with(input, ids, from) {
                Ok(reader) => reader,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Ok(Err(damaged(e))),
                // Not a word on the copy: the identity is not among its recipients.
                Err(e) => return Err(err(format!("{}: {e}", r.name))),
            };
            let mut hash = crate::backup::sha2x::Lane::new();
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

pub(super) fn recipients(o: &Offsite) -> Result<Vec<age::x25519::Recipient>, BackupError> {
    crate::backup::crypt::recipients(&o.encrypt_to).map_err(err)
}

/// Where the encryptor writes: taken out in chunks and handed to the upload.
#[derive(Clone, Default)]
pub(super) struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);

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
pub(super) async fn upload_sealed(
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
        let mut read = crate::backup::sha2x::Lane::new();
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
