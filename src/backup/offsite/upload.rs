//! One archive uploaded so that an interrupted upload continues: S3 multipart parts (or a
//! partial file in a directory) recorded as they are stored, and when to give an upload up.

use std::path::Path;
use std::sync::Arc;

use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;

use super::remote::{PART, Remote, Resume, err, mismatch};
use crate::backup::{BackupError, Progress};
use crate::store::Store;

/// One archive to upload so that an interrupted upload can continue.
pub(super) struct Upload<'a> {
    pub(super) db: &'a Store,
    pub(super) url: &'a str,
    pub(super) to: ObjectPath,
    pub(super) file: &'a str,
    pub(super) from: &'a Path,
    pub(super) sha256: &'a str,
    pub(super) max_rate: Option<u64>,
}

/// Uploads one archive part by part, recording each stored part in the state file: a push
/// that was interrupted continues from the next part, unless the archive changed. Returns the
/// bytes sent now and whether an earlier upload was continued; or, inside, why the archive
/// was not pushed: the local file does not match its sidecar (checked over every byte, those
/// of an earlier push included, before the upload is completed).
pub(super) async fn upload_resumable(
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
    let mut local = crate::backup::sha2x::Lane::new();
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
                crate::util::file::fsync_dir(dir);
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
pub(super) fn copy_is_whole(resume: &Resume, to: &ObjectPath, copy: &Remote, path: &Path, sha: &str) -> bool {
    use md5::Digest;
    let Ok(size) = std::fs::metadata(path).map(|m| m.len()) else {
        return false;
    };
    if copy.size != size {
        return false;
    }
    match resume {
        Resume::Dir(root) => crate::util::digest::hash_file(&root.join(to.as_ref())).is_ok_and(|(_, h)| h == sha),
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
pub(super) fn hash_parts(file: &Path, part: &mut dyn FnMut(&[u8])) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(file).ok()?;
    let mut whole = crate::backup::sha2x::Lane::new();
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
pub(super) const FAILED_STARTS: i64 = 3;

/// What a failed request says of the upload it was for.
#[derive(Debug, PartialEq)]
pub(super) enum Failure {
    /// The store has no such upload (S3's `NoSuchUpload`, a 404).
    Gone,
    /// Nothing of the upload: the link (no answer, a timeout), or the store refusing this
    /// client (401, 403) for a while, as with credentials mid-rotation.
    Passing,
    /// The store erring on it (a 5xx after the client's retries, another 4xx): some servers
    /// answer a vanished upload so.
    Erring,
}

pub(super) fn failure(e: &object_store::Error) -> Failure {
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
pub(super) async fn give_up(
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
